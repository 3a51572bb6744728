"""The mock's config file: every shape as a string or a table, strict about mistakes."""

from __future__ import annotations

import pathlib

import pytest

from stepstream.mockapi import LLM, WIKIPEDIA, Limit, MockApiConfig, Window
from stepstream.mockapi.config import from_mapping, load_file, to_toml
from stepstream.mockapi.limits import UNLIMITED

EXAMPLE = """
latency_ms = "5-10"
arrival_jitter_ms = "0-50"
seed = 3

[endpoints.wikipedia]
requests = "50 per 1s"
[endpoints.arxiv]
requests = { limit = 500, window = "1m", kind = "fixed", offset = "0.3s" }
[endpoints.llm]
requests = "500 per 1m"
tokens = { limit = 30000, window = 60 }
[endpoints.search]
requests = { rate = 20, burst = 5 }
"""


def test_a_file_sets_every_shape(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "mock.toml"
    path.write_text(EXAMPLE)
    config = load_file(path)
    assert config.limits[WIKIPEDIA] == Window(50, 1.0)
    assert config.limits["arxiv"] == Window(500, 60.0, fixed=True, offset_s=0.3)
    assert config.limits[LLM] == Window(500, 60.0)
    assert config.token_limits[LLM] == Window(30000, 60.0)
    assert config.limits["search"] == Limit(20.0, 5)
    assert config.endpoints == ("wikipedia", "arxiv", "llm", "search")
    assert (config.latency_ms, config.arrival_jitter_ms, config.seed) == ((5.0, 10.0), (0.0, 50.0), 3)
    # What a child process is given reproduces the same config.
    again = tmp_path / "again.toml"
    again.write_text(to_toml(config))
    reread = load_file(again)
    assert reread.limits == config.limits
    assert {k: v for k, v in reread.token_limits.items() if v != UNLIMITED} == config.token_limits


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"latency": "1"}, "latency: unknown setting"),
        ({"endpoints": {"wikipedia": {"requests": "50 per"}}}, "endpoints.wikipedia: bad limit"),
        ({"endpoints": {"wikipedia": {"reqs": "50 per 1s"}}}, "endpoints.wikipedia"),
        ({"endpoints": {"x": {"requests": {"limit": 5, "kind": "rolling"}}}}, "kind must be"),
        ({"endpoints": {"x": {"requests": {"limit": 5, "windw": "1s"}}}}, "unknown field 'windw'"),
        ({"endpoints": {"x": {"requests": {"rate": 5, "burst": 1, "limit": 2}}}}, "unknown field 'limit'"),
        ({"endpoints": {"Bad Name": {"requests": "1 per 1s"}}}, "bad endpoint name"),
        ({"arrival_jitter_ms": "50-0"}, "arrival_jitter_ms"),
    ],
)
def test_mistakes_are_refused_with_the_key(data: dict[str, object], where: str) -> None:
    with pytest.raises(ValueError, match=where) as caught:
        from_mapping(data, "mock.toml")
    assert str(caught.value).startswith("mock.toml")


def test_an_unreadable_file_names_itself(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[endpoints\n")
    with pytest.raises(ValueError, match=r"broken\.toml"):
        load_file(path)


def test_the_default_config_is_what_the_demo_expects() -> None:
    config = MockApiConfig()
    assert config.endpoints == ("wikipedia", "arxiv", "llm")
    assert config.token_limits[LLM] == Window(90_000, 60.0)
