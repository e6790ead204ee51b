"""Held-out recognition sets the synthetic generator did not make, degraded like real inputs.

Text: Faker (addresses, companies, invoices, phone numbers; zh_CN for Chinese) and digit
strings shaped like card numbers, meter readings, amounts and dates. Fonts: Liberation and
AR PL (the generator renders DejaVu / Noto / WenQuanYi). Degradations, drawn per line, as
photographs and scans show them: Gaussian or motion blur, JPEG at quality 30-75, sensor noise,
low contrast, a slight rotation, uneven lighting. Every set is written in PaddleOCR's rec
format (``label.txt`` + images) and never changes once written (same seed, same files).

Example:
    python benchmarks/heldout.py runs/heldout          # en, zh, digits sets, 200 lines each
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quantize_bench import FONTS_EN, FONTS_ZH, _render_line, _texts  # noqa: E402


def degrade(img, rng: random.Random):
    """A photo/scan-like version of a clean PIL line image (returns a BGR uint8 array)."""
    import cv2

    a = np.asarray(img.convert("RGB"))[:, :, ::-1].astype(np.float32)
    h, w = a.shape[:2]
    if rng.random() < 0.5:  # low contrast: ink and paper pulled together
        c = rng.uniform(0.45, 0.8)
        a = a.mean() + (a - a.mean()) * c
    if rng.random() < 0.4:  # uneven lighting: a gradient across the line
        grad = np.linspace(rng.uniform(-40, 0), rng.uniform(0, 40), w, dtype=np.float32)
        a = a + grad[None, :, None]
    if rng.random() < 0.4:  # slight rotation (a hand-held photo)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-2.5, 2.5), 1.0)
        a = cv2.warpAffine(a, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    r = rng.random()
    if r < 0.35:
        a = cv2.GaussianBlur(a, (0, 0), rng.uniform(0.6, 1.3))
    elif r < 0.55:  # horizontal motion blur
        k = rng.randint(3, 5)
        a = cv2.filter2D(a, -1, np.full((1, k), 1.0 / k, np.float32))
    if rng.random() < 0.6:
        a = a + np.random.default_rng(rng.randint(0, 2**31)).normal(0, rng.uniform(4, 12), a.shape)
    a = np.clip(a, 0, 255).astype(np.uint8)
    q = rng.randint(30, 75)
    ok, buf = cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, q])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def digit_texts(n: int, seed: int) -> list[str]:
    """Card numbers, meter readings, amounts, dates and codes -- digits only."""
    rng = random.Random(seed)
    makers = [
        lambda: "".join(rng.choice("0123456789") for _ in range(16)),  # card number
        lambda: f"{rng.randint(0, 99999):05d}{rng.randint(0, 9)}",  # meter reading
        lambda: f"{rng.randint(1, 99999)}{rng.randint(0, 99):02d}",  # amount in cents
        lambda: f"{rng.randint(1990, 2030)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}",
        lambda: "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 12))),
    ]
    return [rng.choice(makers)() for _ in range(n)]


def make_set(out: Path, kind: str, n: int, seed: int, charset: set[str] | None = None,
             height: tuple[int, int] = (22, 40)) -> Path:  # fmt: skip
    """Write ``n`` degraded held-out lines of ``kind`` (en, zh, digits) into ``out``."""
    import cv2

    from xcompress.data import RecSample, write_rec_labels

    out = out.resolve()  # labels hold paths relative to their folder
    if (out / "label.txt").is_file():
        return out
    missing = [f for f in FONTS_EN + FONTS_ZH if not Path(f).is_file()]
    if missing:
        sys.exit(f"held-out fonts missing ({missing[0]} ...): apt-get install fonts-liberation2 "
                 "fonts-arphic-uming fonts-arphic-ukai")
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    if kind == "digits":
        texts, fonts = digit_texts(n, seed), FONTS_EN
    else:
        texts = _texts(kind, n, seed, charset or set())
        fonts = FONTS_ZH if kind == "zh" else FONTS_EN
    samples = []
    for i, text in enumerate(texts):
        img = degrade(_render_line(text, rng.choice(fonts), rng.randint(*height), rng), rng)
        path = out / f"{i:04d}.png"  # JPEG damage is in the pixels already; keep them exact
        cv2.imwrite(str(path), img)
        samples.append(RecSample(path, text))
    write_rec_labels(out / "label.txt", samples)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    from xcompress.artifact import resolve_model

    charset = set(resolve_model("ppocr-v4-rec").card.charset or [])
    for kind in ("en", "zh", "digits"):
        make_set(args.out / kind, kind, args.n, args.seed, charset)
        print(args.out / kind)


if __name__ == "__main__":
    main()
