"""docs/configuration.md lists every variable as the settings models define it."""

from __future__ import annotations

import pathlib

from stepstream.cli.settings import env_var
from stepstream.cli.settings_doc import COMMANDS, document

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_configuration_doc_is_what_the_models_say() -> None:
    assert DOC.read_text() == document(), (
        "docs/configuration.md is stale: python -m stepstream.cli.settings_doc > docs/configuration.md"
    )


def test_it_names_every_variable() -> None:
    text = DOC.read_text()
    for _, model, _ in COMMANDS:
        for name in model.model_fields:
            assert f"| `{env_var(model, name)}` |" in text
