"""The contract every :class:`~xcompress.export.Exporter` passes.

A new exporter is done when a test class for it inherits :class:`ExporterContract` and
passes (``tests/test_exporters.py`` checks that every registered exporter has one):

    class TestOnnxExporter(ExporterContract):
        exporter_name = "onnx"
        format = "onnx"

        @pytest.fixture
        def source(self):                  # a tiny native module and its card
            return ModelSource(tiny_crnn(), card, None, "tiny", "0" * 64)

What it checks: ``export`` writes ``out/model<suffix>`` and a card with ``format``, ``step``
and ``parent`` (the source's sha256), in one rename; bad settings are one-line errors; a
module that cannot be exported fails with a one-line error and writes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from xcompress.artifact import Artifact, resolve_model
from xcompress.card import CARD_NAME
from xcompress.errors import XCompressError
from xcompress.export import ExportConfig, Exporter, ModelSource, get_exporter


def broken_module() -> Any:
    """A torch module whose forward fails: no exporter can convert it."""
    import torch

    class Broken(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            raise RuntimeError("forward failed\nsecond line")

        def example_input(self, *args: Any) -> Any:
            return torch.zeros(1, 3, 16, 32)

    return Broken().eval()


class ExporterContract:
    """Base class of exporter tests; subclasses set ``exporter_name`` / ``format`` and
    provide ``source`` (and ``config`` when the defaults do not suit a tiny model)."""

    exporter_name: ClassVar[str]
    format: ClassVar[str]
    #: settings the exporter must refuse, besides an unknown key
    bad_configs: ClassVar[tuple[dict[str, Any], ...]] = ()

    @pytest.fixture
    def exporter(self) -> Exporter:
        return get_exporter(self.exporter_name)

    @pytest.fixture
    def source(self) -> ModelSource:
        raise NotImplementedError("an ExporterContract subclass must provide `source`")

    @pytest.fixture
    def config(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def exported(self, exporter, source, config, tmp_path) -> tuple[Artifact, Path]:
        out = tmp_path / "out"
        return exporter.export(source, config, out), out

    def test_registered_with_a_typed_config(self, exporter):
        assert type(exporter).name == self.exporter_name
        assert exporter.suffix.startswith(".")
        assert issubclass(exporter.config_cls, ExportConfig)
        assert exporter.config_cls.model_config.get("frozen") is True

    def test_writes_model_and_card(self, exported, exporter, source):
        art, out = exported
        assert art.path == out / f"model{exporter.suffix}" and art.path.is_file()
        assert (out / CARD_NAME).is_file()
        assert art.card.format == self.format
        assert art.card.step and art.card.step.startswith("export")
        assert art.card.parent == source.parent_sha256
        assert art.card.task == source.card.task and art.card.charset == source.card.charset
        again = resolve_model(out)
        assert again.path == art.path and again.card.parent == source.parent_sha256
        assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]

    def test_config_saved_or_derivable(self, exported, exporter, config):
        art, _ = exported
        assert art.card.step_config  # which settings made it
        assert exporter.make_config(config) == exporter.make_config(exporter.make_config(config))

    @pytest.mark.parametrize("extra", [{"no_such_setting": 1}])
    def test_unknown_setting_is_one_line(self, exporter, config, extra):
        with pytest.raises(XCompressError) as e:
            exporter.make_config({**config, **extra})
        assert "\n" not in str(e.value)

    def test_bad_configs_are_one_line(self, exporter, config):
        for bad in self.bad_configs:
            with pytest.raises(XCompressError) as e:
                exporter.make_config({**config, **bad})
            assert "\n" not in str(e.value), bad

    def test_another_exporters_config_is_refused(self, exporter):
        class Other(ExportConfig):
            pass

        with pytest.raises(XCompressError, match=exporter.config_cls.__name__):
            exporter.make_config(Other())

    def test_unexportable_module_writes_nothing(self, exporter, source, config, tmp_path):
        broken = ModelSource(broken_module(), source.card, None, "broken", source.parent_sha256)
        out = tmp_path / "broken"
        with pytest.raises(XCompressError) as e:
            exporter.export(broken, config, out)
        assert "\n" not in str(e.value)
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".broken.")]
