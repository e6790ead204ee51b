"""ONNX exporter: a native module back to ONNX with its parent's input/output contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from xcompress.artifact import Artifact, resolve_model
from xcompress.errors import ModelError, XCompressError
from xcompress.export import ExportConfig, Exporter, ModelSource, register_exporter


class OnnxExportConfig(ExportConfig):
    """Settings of :class:`OnnxExporter`."""

    opset: int = Field(17, ge=13, le=21)  # >= 13: per-channel int8 QDQ needs it


@register_exporter
class OnnxExporter(Exporter):
    """Wraps :func:`xcompress.models.export.export_onnx` (checked against torch within 1e-4)."""

    name = "onnx"
    suffix = ".onnx"
    config_cls = OnnxExportConfig

    def export(self, source: ModelSource, config: Any, out_dir: str | Path) -> Artifact:
        from xcompress.models.export import export_onnx

        config = self.make_config(config)
        assert isinstance(config, OnnxExportConfig)
        # the new card names the file it was made from (the exporter contract), as TFLite's
        card = source.card.derive(parent=source.parent_sha256 or source.card.parent)
        try:
            folder = export_onnx(source.module, card, out_dir, opset=config.opset)
        except XCompressError:
            raise
        except Exception as e:  # torch.onnx raises many types; keep the first line
            text = str(e).strip()
            first = text.splitlines()[0][:300] if text else type(e).__name__
            raise ModelError(
                f"torch.onnx cannot export {type(source.module).__name__}: {first}") from e
        return resolve_model(folder)
