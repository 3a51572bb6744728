"""Settings files: good ones load, each bad one is refused with its file, key and reason."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from stepstream.ratelimiter.config import (
    ConfigError,
    LimiterSettings,
    Shape,
    load_settings,
    parse_duration,
)

pytestmark = pytest.mark.process

BAD = sorted((pathlib.Path(__file__).parent / "bad_configs").iterdir())


def test_limits_in_every_form_load(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "limits.toml"
    path.write_text(
        """
redis_url = "redis://127.0.0.1:6379/0"
expected_replicas = 3
on_store_failure = "closed"
store_timeout_ms = 40
[limits]
wikipedia = "200/s burst 20"
arxiv = "1 per 3s"
llm-tokens = { rate = 90000, period = "1m", burst = 9000, unit = "tokens" }
slow = { rate = 0.5, burst = 1 }
github = "5000 per 1h fixed"
minute = { rate = 500, period = "1m", window = "fixed", phase = "0s", margin = "20ms" }
tpm = { rate = 90000, period = "1m", window = "sliding", unit = "tokens" }
"""
    )
    s = load_settings(path)
    assert (s.redis_url, s.expected_replicas, s.on_store_failure, s.store_timeout_ms) == (
        "redis://127.0.0.1:6379/0",
        3,
        "closed",
        40.0,
    )
    wiki, arxiv, llm, slow = (s.limits[k] for k in ("wikipedia", "arxiv", "llm-tokens", "slow"))
    assert (wiki.rate, wiki.period_s, wiki.burst) == (200, 1.0, 20)
    assert (arxiv.rate, arxiv.period_s, arxiv.burst) == (1, 3.0, 1)
    assert (llm.rate, llm.period_s, llm.burst, llm.unit) == (90000, 60.0, 9000, "tokens")
    assert (slow.tokens_per_second, slow.burst) == (0.5, 1)
    assert wiki.shape is Shape.GCRA and llm.shape is Shape.GCRA
    # Without a burst a limit is a window: never more than N in any window of W.
    assert (arxiv.shape, arxiv.margin_s, arxiv.phase_s) == (Shape.SLIDING, 0.1, None)
    github, minute, tpm = (s.limits[k] for k in ("github", "minute", "tpm"))
    assert (github.shape, github.rate, github.period_s, github.burst, github.aligned) == (
        Shape.FIXED,
        5000,
        3600.0,
        5000,
        False,
    )
    assert (minute.shape, minute.phase_s, minute.margin_s, minute.aligned) == (Shape.FIXED, 0.0, 0.02, True)
    assert (tpm.shape, tpm.unit, tpm.burst) == (Shape.SLIDING, "tokens", 90000)
    assert github.scaled(3).rate == 1666 and github.scaled(3).burst == 1666
    # The local budget while cut off from Redis: a third each, never below one token at once.
    assert wiki.scaled(3).rate == pytest.approx(200 / 3) and wiki.scaled(3).burst == 6
    assert arxiv.scaled(3).burst == 1


def test_yaml_and_command_line_overrides(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "limits.yaml"
    path.write_text("port: 7000\nwindow_margin_ms: 25\nlimits:\n  arxiv: 1 per 3s\n")
    s = load_settings(path, {"wikipedia": "200/s"}, port=7001, redis_url=None)
    assert s.port == 7001 and set(s.limits) == {"arxiv", "wikipedia"}
    # No burst: a sliding window of 200 per second, with the file's margin.
    assert (s.limits["wikipedia"].burst, s.limits["wikipedia"].shape) == (200, Shape.SLIDING)
    assert s.limits["arxiv"].margin_s == 0.025
    assert load_settings(None, {"a": "5/s"}).limits["a"].rate == 5


def test_durations() -> None:
    assert [parse_duration(t, "f", "k") for t in ("500ms", "3s", "1m", "min", "2h", 1.5)] == [
        0.5,
        3.0,
        60.0,
        60.0,
        7200.0,
        1.5,
    ]


def test_settings_object_validates_itself() -> None:
    with pytest.raises(ConfigError, match="max_batch"):
        LimiterSettings(max_batch=0)


@pytest.mark.parametrize("path", BAD, ids=[p.name for p in BAD])
def test_bad_config_is_refused(path: pathlib.Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    key, _, reason = expected.partition(": ")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.source == str(path)
    assert info.value.key == key
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{path}: {key}: ")


def test_sidecar_refuses_bad_config_at_start() -> None:
    path = next(p for p in BAD if p.name == "zero_burst.toml")
    proc = subprocess.run(
        [sys.executable, "-m", "stepstream.ratelimiter", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"config error: {path}: limits.wikipedia.burst: must be a whole number >= 1" in proc.stderr


def test_the_example_file_loads() -> None:
    example = pathlib.Path(__file__).parents[2] / "ratelimiter" / "limits.example.toml"
    settings = load_settings(example)
    assert set(settings.limits) == {
        "wikipedia",
        "arxiv",
        "github-search",
        "openai-rpm",
        "openai-tpm",
        "internal",
    }
    shapes = {key: spec.shape for key, spec in settings.limits.items()}
    assert shapes["github-search"] is Shape.FIXED and shapes["internal"] is Shape.GCRA
    assert settings.limits["openai-tpm"].unit == "tokens" and shapes["openai-tpm"] is Shape.SLIDING
    assert settings == LimiterSettings(limits=settings.limits)  # it shows the defaults
