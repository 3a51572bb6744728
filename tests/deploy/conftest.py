"""The deploy/ manifests rendered once per session, by the pinned kustomize."""

from __future__ import annotations

import os
import pathlib

import pytest

from tests.deploy.manifests import KUBERNETES, Doc, kustomize_build


@pytest.fixture(scope="session")
def base() -> list[Doc]:
    return kustomize_build(KUBERNETES / "base")


@pytest.fixture(scope="session")
def dev() -> list[Doc]:
    return kustomize_build(KUBERNETES / "overlays" / "dev")


@pytest.fixture(scope="session")
def with_keda(tmp_path_factory: pytest.TempPathFactory) -> list[Doc]:
    """The base with the KEDA component, as an overlay that enables it would render."""
    folder = tmp_path_factory.mktemp("keda-overlay")

    def rel(target: pathlib.Path) -> str:
        return os.path.relpath(target, folder)  # kustomize takes no absolute roots

    (folder / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {rel(KUBERNETES / 'base')}\n"
        f"components:\n  - {rel(KUBERNETES / 'components' / 'keda')}\n"
    )
    return kustomize_build(folder)
