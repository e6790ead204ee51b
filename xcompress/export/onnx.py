"""ONNX exporter: a native module back to ONNX with its parent's input/output contract."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from xcompress.artifact import Artifact, resolve_model
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

    def export(self, source: ModelSource, config: ExportConfig, out_dir: str | Path) -> Artifact:
        from xcompress.models.export import export_onnx

        assert isinstance(config, OnnxExportConfig)
        folder = export_onnx(source.module, source.card, out_dir, opset=config.opset)
        return resolve_model(folder)
