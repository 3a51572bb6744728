"""Every option is a field of one settings object, set by flag or by STEPSTREAM_* variable."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from stepstream.cli.main import app
from stepstream.cli.settings import env_var, flag_names, load
from stepstream.cli.settings_doc import COMMANDS
from stepstream.cli.settings_options import settings_command
from stepstream.ratelimiter.cli import limiter_settings
from stepstream.server.cluster import ClusterSettings
from stepstream.server.settings import Durability, ServerSettings

# The flags each command had before they were derived from its settings object, and the
# variables that were read then: all must keep working as they did.
FLAGS_BEFORE = {
    "serve": """--config --db --host --port --workers --max-connection-age --max-active-runs
        --max-queued-runs --grace --session-ttl --keep-checkpoints --durability --no-migrate
        --ratelimiter --limits --replica --ratelimiter-on-unavailable --ratelimiter-expected-replicas
        --log-level --auth-file --jwt-keys --jwt-issuer --jwt-audience --jwt-owner-claim
        --jwt-roles-claim --allow-unauthenticated --tls-cert --tls-key --tls-client-ca
        --ratelimiter-tls-ca --ratelimiter-tls-cert --ratelimiter-tls-key --ratelimiter-api-key
        --tenant-runs-per-second --tenant-runs-burst --tenant-max-runs-in-flight
        --max-payload-bytes --max-payload-depth""",
    "ratelimiter": """--config -c --redis --host --port --limit --auth-file --jwt-keys --tls-cert
        --tls-key --tls-client-ca --allow-unauthenticated""",
    "up": "--config --db --replicas --limits --redis --grace",
}
VARIABLES_BEFORE = {
    "serve": {
        "STEPSTREAM_AUTH_FILE": "auth_file",
        "STEPSTREAM_JWT_KEYS": "jwt_keys_file",
        "STEPSTREAM_JWT_ISSUER": "jwt_issuer",
        "STEPSTREAM_JWT_AUDIENCE": "jwt_audience",
        "STEPSTREAM_TLS_CERT": "tls_cert_file",
        "STEPSTREAM_TLS_KEY": "tls_key_file",
        "STEPSTREAM_TLS_CLIENT_CA": "tls_client_ca_file",
        "STEPSTREAM_RATELIMITER_API_KEY": "ratelimiter_api_key",
    },
    "ratelimiter": {"STEPSTREAM_AUTH_FILE": "auth_file", "STEPSTREAM_JWT_KEYS": "jwt_keys_file"},
    "up": {},
}
runner = CliRunner()


@pytest.fixture(autouse=True)
def no_inherited_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees only the STEPSTREAM_* variables it sets."""
    for name in [n for n in os.environ if n.startswith("STEPSTREAM_")]:
        monkeypatch.delenv(name)


def _options(command: str) -> dict[str, list[str]]:
    click_app: Any = get_command(app)
    params = click_app.commands[command].params
    return {p.name: list(p.opts) for p in params if p.name != "help"}


@pytest.mark.parametrize(("command", "model"), [(c.split()[1], m) for c, m, _ in COMMANDS])
def test_every_field_has_a_flag_and_a_variable(command: str, model: Any) -> None:
    options = _options(command)
    assert set(options) == set(model.model_fields), "every option is a field, every field an option"
    variables = {env_var(model, name) for name in model.model_fields}
    assert len(variables) == len(model.model_fields), "no two fields share a variable"
    for name, field in model.model_fields.items():
        assert options[name] == list(flag_names(model, name))
        long = next(flag for flag in options[name] if flag.startswith("--"))
        assert env_var(model, name) == "STEPSTREAM_" + long[2:].replace("-", "_").upper()
        assert field.description, f"{name} has no docstring (its help)"


@pytest.mark.parametrize("command", FLAGS_BEFORE)
def test_the_flags_and_variables_of_before_still_work(command: str) -> None:
    flags = {flag for opts in _options(command).values() for flag in opts}
    assert set(FLAGS_BEFORE[command].split()) <= flags
    model = next(m for c, m, _ in COMMANDS if c.split()[1] == command)
    for variable, field in VARIABLES_BEFORE[command].items():
        assert env_var(model, field) == variable


def test_a_variable_sets_a_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPSTREAM_PORT", "6001")
    monkeypatch.setenv("STEPSTREAM_DB", "sqlite+aiosqlite:///elsewhere.db")
    monkeypatch.setenv("STEPSTREAM_DURABILITY", "async")
    monkeypatch.setenv("STEPSTREAM_NO_MIGRATE", "true")
    monkeypatch.setenv("STEPSTREAM_ALLOW_UNAUTHENTICATED", "1")
    monkeypatch.setenv("STEPSTREAM_MAX_CONNECTION_AGE", "2.5")
    settings = load(ServerSettings, {})
    assert settings.port == 6001 and settings.db_url == "sqlite+aiosqlite:///elsewhere.db"
    assert settings.durability is Durability.ASYNC
    assert settings.migrate_on_start is False and settings.allow_unauthenticated is True
    assert settings.max_connection_age_seconds == 2.5
    assert settings.max_active_runs == ServerSettings().max_active_runs  # unset: the default
    # Building the object directly takes only its arguments, never the environment.
    assert ServerSettings().port == 50051 and ServerSettings().migrate_on_start is True


def _parsed(model: Any, args: list[str]) -> Any:
    """What a command derived from `model` loads for `args` (it runs nothing else)."""
    seen: list[Any] = []
    probe = typer.Typer()
    probe.command("probe")(settings_command(model, lambda given: seen.append(load(model, given)), "probe"))
    probe.command("other")(lambda: None)  # two commands: typer keeps "probe" a subcommand
    result = runner.invoke(probe, ["probe", *args])
    assert result.exit_code == 0, result.output
    return seen[0]


def test_a_flag_beats_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPSTREAM_PORT", "6001")
    monkeypatch.setenv("STEPSTREAM_DB", "sqlite+aiosqlite:///from-env.db")
    monkeypatch.setenv("STEPSTREAM_GRACE", "3")
    monkeypatch.setenv("STEPSTREAM_REPLICA", "from-env")
    settings = _parsed(ServerSettings, ["--port", "7001", "--db", "sqlite+aiosqlite:///from-flag.db"])
    assert (settings.port, settings.db_url) == (7001, "sqlite+aiosqlite:///from-flag.db")
    assert (settings.shutdown_grace_seconds, settings.replica) == (3.0, "from-env")  # no flag given
    assert _parsed(ServerSettings, ["--replica", "from-flag"]).replica == "from-flag"
    monkeypatch.setenv("STEPSTREAM_NO_MIGRATE", "false")
    assert _parsed(ServerSettings, []).migrate_on_start is True
    assert _parsed(ServerSettings, ["--no-migrate"]).migrate_on_start is False


def test_up_reads_its_required_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPSTREAM_CONFIG", "graphs.json")
    monkeypatch.setenv("STEPSTREAM_DB", "postgresql+asyncpg://db/x")
    monkeypatch.setenv("STEPSTREAM_REPLICAS", "2")
    settings = _parsed(ClusterSettings, ["--replicas", "4"])
    assert (settings.config_path, settings.db_url, settings.replicas) == (
        "graphs.json",
        "postgresql+asyncpg://db/x",
        4,
    )


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["serve"], {"STEPSTREAM_PORT": "abc"}, "error: STEPSTREAM_PORT='abc': Input should be a valid int"),
        (["serve"], {"STEPSTREAM_WORKERS": "0"}, "STEPSTREAM_WORKERS='0': Input should be greater than"),
        (["serve"], {"STEPSTREAM_DURABILITY": "eventual"}, "STEPSTREAM_DURABILITY='eventual': Input should"),
        (["serve"], {"STEPSTREAM_NO_MIGRATE": "perhaps"}, "STEPSTREAM_NO_MIGRATE='perhaps': Input should be"),
        (["serve", "--port", "70000"], {}, "error: --port: Input should be less than or equal to 65535"),
        (["up"], {"STEPSTREAM_DB": "sqlite:///x"}, "error: --config (or STEPSTREAM_CONFIG) is required"),
        (["up", "--config", "g.json", "--db", "x"], {"STEPSTREAM_REPLICAS": "0"}, "STEPSTREAM_REPLICAS='0'"),
        (["ratelimiter"], {"STEPSTREAM_MAX_BATCH": "many"}, "STEPSTREAM_MAX_BATCH='many': Input should be"),
        (["ratelimiter"], {"STEPSTREAM_ON_STORE_FAILURE": "open"}, "'open': Input should be 'local' or"),
        (["ratelimiter"], {"STEPSTREAM_LIMIT": "arxiv=fast"}, "STEPSTREAM_LIMIT='arxiv=fast': limits.arxiv"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable_or_flag(
    args: list[str], env: dict[str, str], message: str
) -> None:
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 2
    assert message in result.stderr


def test_the_sidecar_takes_flags_then_variables_then_its_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    path = tmp_path / "limits.toml"
    path.write_text(
        "port = 7000\nmax_batch = 8\nexpected_replicas = 2\nwindow_margin_ms = 40\n"
        '[limits]\narxiv = "1 per 3s"\n'
    )
    monkeypatch.setenv("STEPSTREAM_CONFIG", str(path))
    monkeypatch.setenv("STEPSTREAM_PORT", "7001")
    monkeypatch.setenv("STEPSTREAM_MAX_BATCH", "16")
    monkeypatch.setenv("STEPSTREAM_LIMIT", "wikipedia=200/s burst 20; arxiv=2 per 3s")
    settings = limiter_settings({"port": 7002, "limits": ["llm=5/s", "search=10 per 1m"]})
    assert (settings.port, settings.max_batch, settings.expected_replicas) == (7002, 16, 2)
    assert set(settings.limits) == {"arxiv", "llm", "search"}  # a flag's limits replace the variable's
    assert settings.limits["search"].margin_s == 0.04  # the file's margin applies to a flag's window
    monkeypatch.delenv("STEPSTREAM_PORT")
    settings = limiter_settings({})
    assert settings.port == 7000  # the file's, with no flag or variable
    assert settings.limits["arxiv"].rate == 2 and settings.limits["wikipedia"].burst == 20
