"""docs/configuration.md, written from the settings models so that it cannot drift from them.

    python -m stepstream.cli.settings_doc > docs/configuration.md

tests/cli/test_settings_doc.py fails when the file differs from what this prints.
"""

from __future__ import annotations

from stepstream.cli.settings import Settings, default_text, describe, env_var, flag_names
from stepstream.ratelimiter.config import LimiterSettings
from stepstream.server.cluster import ClusterSettings
from stepstream.server.settings import ServerSettings

# Each command, the model of its settings, and where that model lives.
COMMANDS: tuple[tuple[str, type[Settings], str], ...] = (
    ("stepstream serve", ServerSettings, "server/settings.py"),
    ("stepstream ratelimiter", LimiterSettings, "ratelimiter/config.py"),
    ("stepstream up", ClusterSettings, "server/cluster.py"),
)

INTRO = """\
# Configuration

Every option of `stepstream serve`, `stepstream ratelimiter` and `stepstream up` is a
field of that command's settings object, and can be set two ways: by its flag, or by
the environment variable named after the flag (`--foo-bar` is `STEPSTREAM_FOO_BAR`).
A flag wins over the variable, and the variable over the default. Kubernetes and
Compose users can configure everything by environment.

```sh
STEPSTREAM_PORT=6000 STEPSTREAM_DB=postgresql+asyncpg://db/stepstream stepstream serve --config graphs.json
```

A variable applies to whichever command reads it, so give each process its own
environment (a server container and its sidecar container do not share one). The
processes that `stepstream up` and `stepstream serve --workers` start get their own
replica name and port: they do not inherit `STEPSTREAM_REPLICA` or `STEPSTREAM_PORT`.
A sidecar started by a server inherits of the server's variables only those of who may
call (`STEPSTREAM_AUTH_FILE`, `STEPSTREAM_JWT_KEYS`, `STEPSTREAM_JWT_ISSUER`,
`STEPSTREAM_JWT_AUDIENCE`). A value a field refuses stops the command with exit code 2
and names the variable or flag, e.g. `error: STEPSTREAM_PORT='abc': Input should be a
valid integer`.

Booleans take `true`/`false` (or `1`/`0`, `yes`/`no`, `on`/`off`); an empty variable
counts as unset. `stepstream db
upgrade` reads `STEPSTREAM_DB` as well. The sidecar's settings may also come from its
file (`--config`); flags and variables win over the file. The client commands (`stepstream
run`, `join`, `graphs`, `sessions`) read `STEPSTREAM_ADDRESS`, `STEPSTREAM_API_KEY`, `STEPSTREAM_TOKEN`
and `STEPSTREAM_TLS_CA`. Telemetry is configured by the standard `OTEL_*` variables
(telemetry/setup.py).

This file is generated: `python -m stepstream.cli.settings_doc > docs/configuration.md`.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _default(model: type[Settings], name: str) -> str:
    text = default_text(model, name)
    if text is None:
        return "required"
    return text if text in ("none", "off") else f"`{text}`"


def table(model: type[Settings]) -> list[str]:
    lines = ["| Variable | Flag | Default | Meaning |", "|---|---|---|---|"]
    for name in model.model_fields:
        flags = ", ".join(f"`{flag}`" for flag in flag_names(model, name))
        meaning = _cell(describe(model, name))
        lines.append(f"| `{env_var(model, name)}` | {flags} | {_default(model, name)} | {meaning} |")
    return lines


def document() -> str:
    parts = [INTRO]
    for command, model, source in COMMANDS:
        parts.append(f"## `{command}`\n\nFields of `{model.__name__}` ({source}).\n")
        parts.append("\n".join(table(model)) + "\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(document(), end="")
