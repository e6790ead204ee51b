"""Recognition batches: PP-OCR preprocessing, CTC label encoding, and sample sources.

Sources yield ``(bgr_uint8_image, text)``. Two kinds:

* :class:`FolderSource` -- a PaddleOCR-format set (``label.txt``), shuffled per epoch;
* :class:`SynthSource` -- the synthetic generator (:mod:`xcompress.data.synth`) streamed on
  the fly: sample ``i`` of seed ``s`` is always the same image, so a resumed run sees the
  same stream it would have seen without the interruption.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from xcompress.errors import DataError


class CTCCodec:
    """Text <-> class ids. Class 0 is the CTC blank; class ``i >= 1`` is ``charset[i-1]``.

    Example:
        >>> codec = CTCCodec(list("0123456789"))
        >>> codec.encode("2026")
        [3, 1, 3, 7]
        >>> codec.decode_greedy(np.array([0, 3, 3, 0, 1, 3, 0, 7]))
        '2026'
    """

    def __init__(self, charset: Sequence[str]) -> None:
        self.charset = list(charset)
        self.index = {c: i + 1 for i, c in enumerate(self.charset)}

    @property
    def num_classes(self) -> int:
        return len(self.charset) + 1

    def encode(self, text: str) -> list[int]:
        """Class ids of ``text``; characters outside the charset are dropped."""
        return [self.index[c] for c in text if c in self.index]

    def covers(self, text: str) -> bool:
        return all(c in self.index for c in text)

    def decode_greedy(self, ids: np.ndarray) -> str:
        """Collapse repeats, drop blanks."""
        out, prev = [], 0
        for i in ids.tolist():
            if i != prev and i != 0:
                out.append(self.charset[i - 1])
            prev = i
        return "".join(out)


@dataclass(frozen=True)
class RecBatchSpec:
    """How lines become tensors: height, width rounding and cap (PP-OCR normalization)."""

    height: int = 48
    max_width: int = 320
    width_multiple: int = 8
    fixed_width: bool = False  # pad every batch to max_width (PaddleOCR's 48×320 training)


def preprocess_line(img: np.ndarray, spec: RecBatchSpec) -> np.ndarray:
    """BGR uint8 line -> float32 CHW at ``spec.height``, ratio kept, ``(x/255-0.5)/0.5``."""
    h, w = img.shape[:2]
    tw = min(spec.max_width, max(1, math.ceil(spec.height * w / max(h, 1))))
    resized = cv2.resize(img, (tw, spec.height), interpolation=cv2.INTER_LINEAR)
    x = resized.astype(np.float32).transpose(2, 0, 1) / 255.0
    return (x - 0.5) / 0.5


def collate(images: Sequence[np.ndarray], spec: RecBatchSpec) -> tuple[torch.Tensor, list[int]]:
    """Preprocess and right-pad (with 0, as PaddleOCR) to one width; returns (batch, widths)."""
    xs = [preprocess_line(im, spec) for im in images]
    if spec.fixed_width:
        width = spec.max_width
    else:
        m = spec.width_multiple
        width = min(spec.max_width, max(-(-x.shape[2] // m) * m for x in xs))
    batch = np.zeros((len(xs), 3, spec.height, width), dtype=np.float32)
    for i, x in enumerate(xs):
        batch[i, :, :, : x.shape[2]] = x
    return torch.from_numpy(batch), [x.shape[2] for x in xs]


class FolderSource:
    """Lines of a PaddleOCR recognition set; an endless shuffled stream for training."""

    def __init__(self, path: str, codec: CTCCodec | None = None) -> None:
        from xcompress.data.labels import load_dataset

        ds = load_dataset(path, "rec")
        self.name = ds.name or str(path)
        self.samples = [(s.image, s.text) for s in ds.samples]  # type: ignore[union-attr]
        if codec is not None:
            kept = [(p, t) for p, t in self.samples if codec.covers(t) and t]
            if not kept:
                raise DataError(f"no line of {path} uses only the model's charset")
            self.samples = kept

    def __len__(self) -> int:
        return len(self.samples)

    def items(self) -> list[tuple[np.ndarray, str]]:
        from xcompress.data.labels import read_image

        return [(read_image(p), t) for p, t in self.samples]

    def stream(self, seed: int, start: int = 0) -> Iterator[tuple[np.ndarray, str]]:
        from xcompress.data.labels import read_image

        n = len(self.samples)
        i = start
        while True:
            epoch, k = divmod(i, n)
            order = np.random.default_rng([seed, epoch]).permutation(n)
            path, text = self.samples[int(order[k])]
            yield read_image(path), text
            i += 1


class SynthSource:
    """Synthetic lines drawn only from ``charset`` (see :mod:`xcompress.data.synth`)."""

    def __init__(
        self, charset: Sequence[str], lang: str = "en", augment: str = "default",
        height: tuple[int, int] = (24, 64),
    ) -> None:
        from xcompress.data.synth import SynthConfig, TextPicker
        from xcompress.data.synth.augment import augment_preset
        from xcompress.data.synth.generator import _fonts

        chars = tuple(c for c in charset if c != " ") + ((" ",) if " " in charset else ())
        self.cfg = SynthConfig(task="rec", count=1, lang=lang, charset=chars, rec_height=height,
                               augment=augment_preset(augment))
        self.picker = TextPicker(_fonts(self.cfg), lang, chars)
        self.name = f"synth-{lang}" + ("" if augment == "default" else f"-{augment}")

    def sample(self, seed: int, index: int) -> tuple[np.ndarray, str]:
        from xcompress.data.synth import make_rec_sample

        rng = np.random.default_rng([seed, 1, index])
        rgb, text = make_rec_sample(rng, self.picker, self.cfg)
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), text

    def items(self, seed: int, count: int) -> list[tuple[np.ndarray, str]]:
        return [self.sample(seed, i) for i in range(count)]

    def stream(self, seed: int, start: int = 0) -> Iterator[tuple[np.ndarray, str]]:
        i = start
        while True:
            yield self.sample(seed, i)
            i += 1
