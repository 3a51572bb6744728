"""OpenTelemetry for stepstream's processes (server replicas and the rate-limiter sidecar).

`configure_from_env` sets up tracing and metrics from the standard OTEL_*
variables (off when they are unset); components take their tracers and meters
from `current()` when they are built, so a process with telemetry off pays a
None check per hook.
"""

from stepstream.telemetry.setup import (
    Telemetry,
    TelemetryConfigError,
    configure_from_env,
    current,
    installed,
)

__all__ = ["Telemetry", "TelemetryConfigError", "configure_from_env", "current", "installed"]
