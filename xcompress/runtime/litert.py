"""LiteRT (TFLite) runner, with fixed-shape buckets chosen per batch.

The converter used here (litert-torch) writes fixed-shape graphs: PP-OCR's recognizer does not
convert with a symbolic width, and the int8 calibrator cannot allocate a graph with unknown
sizes. So an exported ``model.tflite`` holds one *signature* per input size (a bucket), e.g.
``w320``, ``w640``, ``w960`` for a recognizer or ``s960x960`` for a detector, all read from the
file itself. :meth:`LiteRTRunner.run` picks, for each batch, the smallest bucket that holds it
(:func:`choose_bucket`, a rule the board runner shares) and pads with zeros on the right /
bottom -- zero is what PaddleOCR pads normalized text lines with, so a recognizer sees the same
kind of input as in a wider batch. The output is cropped
back to the batch's own size where it is a spatial map (detectors). Inputs larger than every
bucket are first trimmed of their all-zero padding and, if still too large, scaled down to fit
(the probability map is scaled back up), so any width or page size runs.

int8 graphs with int8 input/output are quantized and dequantized here, so callers always pass
and get float32.

Example:
    >>> runner = open_runner("out/v4rec_tflite/model.tflite", threads=2)   # doctest: +SKIP
    >>> runner.run(np.zeros((1, 3, 48, 400), np.float32)).shape            # doctest: +SKIP
    (1, 60, 6625)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xcompress.errors import MissingDependencyError, ModelError
from xcompress.quiet import Captured, captured_stderr
from xcompress.runtime import Runner, Runtime

INSTALL_HINT = "install the TFLite extra: pip install 'xcompress[tflite]'"


def pick_bucket(buckets: Sequence[tuple[int, int]], h: int, w: int) -> int | None:
    """Index of the smallest bucket ``(H, W)`` with ``H >= h`` and ``W >= w``, or None.

    Example:
        >>> pick_bucket([(48, 320), (48, 640)], 48, 400)
        1
        >>> pick_bucket([(48, 320), (48, 640)], 48, 700) is None
        True
    """
    fits = [i for i, (bh, bw) in enumerate(buckets) if bh >= h and bw >= w]
    return min(fits, key=lambda i: (buckets[i][0] * buckets[i][1], i)) if fits else None


def choose_bucket(
    buckets: Sequence[tuple[int, int]],
    h: int,
    w: int,
    content: Callable[[], tuple[int, int]] | None = None,
) -> int:
    """Index of the bucket (signature) an ``h`` x ``w`` batch runs in.

    The smallest bucket that holds the batch; else the smallest that holds its content
    (``content()``: its size without trailing all-zero padding, asked only then); else, to
    scale into, the largest bucket of height ``h`` (text lines keep their height and are
    squeezed in width), else the largest. The board runner (:mod:`xcompress.boards.runner`)
    cannot import xcompress and holds a copy of this rule; a test checks that both choose
    alike, so a board times the graph that was evaluated here.

    Example:
        >>> choose_bucket([(48, 320), (48, 640)], 48, 400)
        1
        >>> choose_bucket([(48, 320), (48, 640)], 48, 700, content=lambda: (48, 300))
        0
        >>> choose_bucket([(48, 320), (48, 640), (96, 96)], 48, 700)
        1
    """
    idx = pick_bucket(buckets, h, w)
    if idx is None and content is not None:
        idx = pick_bucket(buckets, *content())
    if idx is None:
        same_h = [i for i, b in enumerate(buckets) if b[0] == h]
        pool = same_h or range(len(buckets))
        idx = max(pool, key=lambda i: buckets[i][0] * buckets[i][1])
    return idx


def content_size(batch: np.ndarray) -> tuple[int, int]:
    """(height, width) of a batch without its trailing all-zero rows / columns (min 1)."""
    nz = np.abs(batch).max(axis=(0, 1)) > 0  # [H, W]
    rows, cols = np.flatnonzero(nz.any(axis=1)), np.flatnonzero(nz.any(axis=0))
    return (int(rows[-1]) + 1 if rows.size else 1, int(cols[-1]) + 1 if cols.size else 1)


@dataclass(frozen=True)
class Fitted:
    """A batch fitted into a bucket: the padded array and how to map outputs back."""

    batch: np.ndarray  # [N, C, Hb, Wb]
    valid: tuple[int, int]  # the region of the bucket that holds the (maybe scaled) input
    scaled_from: tuple[int, int] | None  # the input's original (h, w) when it was scaled down


def fit_to_bucket(batch: np.ndarray, bucket: tuple[int, int]) -> Fitted:
    """Pad ``batch`` [N, C, h, w] with zeros to ``bucket`` (Hb, Wb); scale down if it is larger.

    A too-large input is first trimmed of trailing zero padding; if it still does not fit, it
    is resized (aspect kept for pages; text lines keep their height and are squeezed in
    width, as PaddleOCR does for lines wider than its maximum) with bilinear interpolation.

    Example:
        >>> f = fit_to_bucket(np.ones((1, 3, 48, 100), np.float32), (48, 320))
        >>> f.batch.shape, f.valid, float(f.batch[0, 0, 0, 100])
        ((1, 3, 48, 320), (48, 100), 0.0)
    """
    import cv2

    hb, wb = bucket
    n, c, h, w = batch.shape
    scaled_from = None
    if h > hb or w > wb:
        ch, cw = content_size(batch)
        batch, (h, w) = batch[:, :, :ch, :cw], (ch, cw)
    if h > hb or w > wb:
        scaled_from = (h, w)
        if h == hb:  # text lines: keep the height, squeeze the width
            nh, nw = hb, wb
        else:
            s = min(hb / h, wb / w)
            nh, nw = max(1, min(hb, round(h * s))), max(1, min(wb, round(w * s)))
        hwc = batch.transpose(0, 2, 3, 1)
        batch = np.stack(
            [cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR).reshape(nh, nw, c)
             for img in hwc]
        ).transpose(0, 3, 1, 2)  # fmt: skip
        h, w = nh, nw
    out = np.zeros((n, c, hb, wb), np.float32)
    out[:, :, :h, :w] = batch
    return Fitted(out, (h, w), scaled_from)


def _interpreter_cls():
    from xcompress.quiet import silence_third_party

    silence_third_party()  # before the import: TF_CPP_MIN_LOG_LEVEL is read at load
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as e:
        raise MissingDependencyError(
            f"running .tflite models needs ai-edge-litert: {INSTALL_HINT}"
        ) from e
    return Interpreter


@dataclass
class _Signature:
    key: str
    runner: object
    input_name: str
    output_name: str
    shape: tuple[int, ...]
    in_quant: tuple[float, int] | None  # (scale, zero point) when the input is int8
    out_quant: tuple[float, int] | None
    in_dtype: type


def _quant(detail: dict) -> tuple[float, int] | None:
    if np.dtype(detail["dtype"]) == np.float32:
        return None
    scale, zp = detail["quantization"]
    return float(scale), int(zp)


class LiteRTRunner(Runner):
    """A LiteRT interpreter over every signature (size bucket) of a ``.tflite`` file."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        Interpreter = _interpreter_cls()
        self.path = Path(path)
        self.threads = threads
        cap = Captured()
        try:
            # LiteRT's C++ code prints "INFO: Created TensorFlow Lite XNNPACK delegate" when
            # the delegate is applied, at the first allocation (done here, captured), and a
            # bad file's reasons before the Python error: those go into the message
            with captured_stderr() as cap:
                self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            native = cap.tail(2)
            raise ModelError(f"LiteRT cannot load {self.path}: {first}"
                             + (f" (native log: {native})" if native else "")) from e  # fmt: skip
        self.signatures: list[_Signature] = []
        for key in self.interpreter.get_signature_list():
            r = self.interpreter.get_signature_runner(key)
            ins, outs = r.get_input_details(), r.get_output_details()
            if len(ins) != 1:
                raise ModelError(f"{self.path.name}: signature {key} has {len(ins)} inputs, not 1")
            (in_name, ind), (out_name, outd) = next(iter(ins.items())), next(iter(outs.items()))
            shape = tuple(int(d) for d in ind["shape"])
            if len(shape) != 4 or shape[0] != 1:
                raise ModelError(f"{self.path.name}: signature {key} input is {shape}, not 1xCxHxW")
            self.signatures.append(_Signature(
                key, r, in_name, out_name, shape, _quant(ind), _quant(outd),
                np.dtype(ind["dtype"]).type,
            ))  # fmt: skip
        if not self.signatures:
            raise ModelError(f"{self.path.name} has no signatures: re-export it with xcompress")

    @property
    def buckets(self) -> list[tuple[int, int]]:
        """(H, W) of each signature's input, in file order."""
        return [s.shape[2:] for s in self.signatures]  # type: ignore[misc]

    @property
    def input_name(self) -> str:
        return self.signatures[0].input_name

    @property
    def output_name(self) -> str:
        return self.signatures[0].output_name

    def _invoke(self, sig: _Signature, x: np.ndarray) -> np.ndarray:
        if sig.in_quant is not None:
            s, z = sig.in_quant
            info = np.iinfo(sig.in_dtype)
            x = np.clip(np.round(x / s) + z, info.min, info.max).astype(sig.in_dtype)
        out = sig.runner(**{sig.input_name: np.ascontiguousarray(x)})[sig.output_name]
        if sig.out_quant is not None:
            s, z = sig.out_quant
            out = (out.astype(np.float32) - z) * s
        return np.asarray(out, np.float32)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run a float32 NCHW batch (any width / size) and return the first output."""
        import cv2

        batch = np.asarray(batch, np.float32)
        n, c, h, w = batch.shape
        if c != self.signatures[0].shape[1]:
            raise ModelError(
                f"{self.path.name} takes {self.signatures[0].shape[1]} channels, got {c}"
            )
        idx = choose_bucket(self.buckets, h, w, content=lambda: content_size(batch))
        sig = self.signatures[idx]
        fitted = fit_to_bucket(batch, self.buckets[idx])
        # Signatures have batch 1 (fixed shapes): run the lines / pages one by one.
        out = np.concatenate([self._invoke(sig, fitted.batch[i : i + 1]) for i in range(n)])
        if out.ndim == 4 and out.shape[2:] == tuple(self.buckets[idx]):
            vh, vw = fitted.valid
            out = out[:, :, :vh, :vw]
            if fitted.scaled_from is not None:
                oh, ow = fitted.scaled_from
                out = np.stack([
                    np.stack([cv2.resize(ch_map, (ow, oh), interpolation=cv2.INTER_LINEAR)
                              for ch_map in img]) for img in out
                ])  # fmt: skip
            if out.shape[2:] != (h, w):  # trimmed padding: give the caller its full size back
                full = np.zeros((n, out.shape[1], h, w), np.float32)
                full[:, :, : out.shape[2], : out.shape[3]] = out
                out = full
        return out


LITERT = Runtime(
    name="litert",
    format="tflite",
    suffixes=(".tflite",),
    package="ai-edge-litert",
    runner=LiteRTRunner,
)
