"""``xcompress export``: native module -> ONNX with the original model's contract.

The exported model keeps the input name (``x``), the output name of the imported original
(recorded at import in ``card.notes["onnx_output_name"]``), dynamic batch and width
(recognizers) or batch, height and width (detectors), and the recognizer charset in the
``character`` metadata key, one character per line, without the trailing space -- the layout
PaddleOCR's exporter uses, so tools that read PP-OCR models read these too.

Example:
    >>> folder = export_onnx(model, card, "out/rec_onnx")       # doctest: +SKIP
    >>> sorted(p.name for p in folder.iterdir())                 # doctest: +SKIP
    ['model.onnx', 'xcompress.json']
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from xcompress.card import InputSpec, ModelCard
from xcompress.errors import ModelError
from xcompress.fsutil import atomic_dir, sha256_file
from xcompress.models.base import OCRModel

DEFAULT_OPSET = 17
EXPORT_TOLERANCE = 1e-4


def _dynamic_axes(task: str) -> dict[int, str]:
    if task == "rec":
        return {0: "batch", 3: "width"}
    return {0: "batch", 2: "height", 3: "width"}


def export_onnx(
    model: OCRModel,
    card: ModelCard,
    out_dir: str | Path,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
) -> Path:
    """Export ``model`` to ``out_dir/model.onnx`` with a card beside it.

    Args:
        model: a native module (its ``forward`` is what gets exported).
        card: the card of the checkpoint (task, charset, preprocessing, output name).
        out_dir: folder to write (as ``xcompress export``'s output: nothing else in it is
            removed; check it first with :func:`xcompress.fsutil.prepare_output_dir`).
        opset: ONNX opset (17 default: per-channel int8 QDQ needs >= 13).
        check: run onnxruntime on the export at two shapes and require the outputs to equal
            the torch module's within 1e-4 (recorded as ``notes.export_max_abs_diff``).

    Returns:
        ``out_dir`` as a Path.
    """
    import onnx

    model = model.eval()
    in_name = card.input.name or "x"
    out_name = card.output_name or card.notes.get("onnx_output_name") or "output"
    axes = _dynamic_axes(card.task)
    example = model.example_input(1, 320)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, command="export") as tmp:
        path = tmp / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                model, (example,), str(path), input_names=[in_name], output_names=[out_name],
                dynamic_axes={in_name: axes, out_name: {0: "batch"} | (
                    {1: "time"} if card.task == "rec" else {2: "height", 3: "width"})},
                opset_version=opset, dynamo=False, do_constant_folding=True,
            )  # fmt: skip
        proto = onnx.load(str(path))
        if card.charset is not None:
            chars = card.charset[:-1] if card.charset and card.charset[-1] == " " else card.charset
            meta = proto.metadata_props.add()
            meta.key, meta.value = "character", "\n".join(chars)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(path))
        diff = max_abs_diff(model, path, card.task) if check else None
        if diff is not None and diff > EXPORT_TOLERANCE:
            raise ModelError(f"exported ONNX differs from the torch module by {diff:.2e}")
        h = model.input_height if card.task == "rec" else None
        new_card = card.derive(
            file="model.onnx", format="onnx", sha256=sha256_file(path), output_name=out_name,
            input=InputSpec(name=in_name, height=h, dynamic_axes=axes),
            step="export", step_config={"to": "onnx", "opset": opset},
            notes={**card.notes, "export_max_abs_diff": diff, "arch": model.arch,
                   "arch_config": model.config_dict()},
        )  # fmt: skip
        new_card.save(tmp)
    return out_dir


def max_abs_diff(model: OCRModel, onnx_path: str | Path, task: str, seed: int = 0) -> float:
    """Max abs difference between onnxruntime on ``onnx_path`` and ``model``, two shapes."""
    from xcompress.models.onnx_import import compare_with_onnx

    rng = np.random.default_rng(seed)
    if task == "rec":
        h = model.input_height or 48
        shapes = [(2, 3, h, 160), (1, 3, h, 400)]
    else:
        shapes = [(1, 3, 256, 320), (2, 3, 192, 128)]
    inputs = [rng.uniform(-1, 1, s).astype(np.float32) for s in shapes]
    return compare_with_onnx(model, onnx_path, inputs)
