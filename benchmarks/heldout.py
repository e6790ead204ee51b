"""Held-out recognition sets the synthetic generator did not make, degraded like real inputs.

Text: Faker (addresses, companies, invoices, phone numbers; zh_CN for Chinese) and digit
strings shaped like card numbers, meter readings, amounts and dates. Fonts: Liberation and
AR PL (the generator renders DejaVu / Noto / WenQuanYi). Degradations, drawn per line, as
photographs and scans show them: Gaussian or motion blur, JPEG at quality 30-75, sensor noise,
low contrast, a slight rotation, uneven lighting. Every set is written in PaddleOCR's rec
format (``label.txt`` + images) and never changes once written (same seed, same files).

Document sets (``doc-en``, ``doc-zh``, ``codes``, ``doc-det``), harder and further from the
generator: text from this machine's license texts and zh_CN message catalogs, plates, amounts,
dates and card numbers; 27 fonts the generator never renders with (Liberation, FreeFont, URW
base35, AR PL, LXGW WenKai, Droid Sans Fallback); text 16-40 px high; the "hard" degradations
(fainter ink, resolution loss, stronger blur and noise, JPEG 20-60); pages with half their
lines rotated up to 20 degrees.

Example:
    python benchmarks/heldout.py runs/heldout   # en, zh, digits, doc-en, doc-zh, codes (200
                                                # lines each), doc-det (40 pages)
"""

from __future__ import annotations

import argparse
import datetime
import random
import sys
from pathlib import Path

import numpy as np

FONTS_EN = [
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSerif-Italic.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationMono-Regular.ttf",
]
FONTS_ZH = [
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/truetype/arphic/ukai.ttc",
]


# --- held-out data ------------------------------------------------------------------------------
#: Faker draws dates up to "now" by default, so a set rendered on another day had other dates
#: (renderings a day apart differed by a day on a few lines): pinned to the day the published
#: sets were first rendered
_DATES_END = datetime.datetime(2026, 12, 2)


def _texts(lang: str, n: int, seed: int, charset: set[str]) -> list[str]:
    from faker import Faker

    fk = Faker("zh_CN" if lang == "zh" else "en_US")
    fk.seed_instance(seed)
    rng = random.Random(seed)
    if lang == "zh":
        makers = [fk.address, fk.company, fk.job, fk.name, lambda: fk.sentence(nb_words=6),
                  lambda: f"{fk.city()}{fk.street_name()}{rng.randint(1, 300)}号",
                  lambda: f"电话：{fk.phone_number()}"]
    else:
        makers = [lambda: fk.address().replace("\n", ", "), fk.company, fk.catch_phrase,
                  fk.phone_number,
                  lambda: fk.date(pattern="%d %B %Y", end_datetime=_DATES_END), fk.job,
                  lambda: f"Invoice {fk.bothify('??-#####').upper()} "
                          f"total ${rng.uniform(1, 999):.2f}",
                  fk.bs, fk.email]
    out: list[str] = []
    while len(out) < n:
        t = rng.choice(makers)().strip()
        t = t[: rng.randint(8, 28)].strip() if lang == "zh" else t[: rng.randint(10, 42)].strip()
        if t and all(c in charset for c in t):
            out.append(t)
    return out


def _render_line(text: str, font_path: str, size: int, rng: random.Random):
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    font = ImageFont.truetype(font_path, size)
    x0, y0, x1, y1 = font.getbbox(text)
    pad_x, pad_y = rng.randint(3, 12), rng.randint(3, 9)
    bg = rng.randint(185, 255)
    size = (x1 - x0 + 2 * pad_x, y1 - y0 + 2 * pad_y)
    img = Image.new("RGB", size, (bg, bg - rng.randint(0, 15), bg))
    ink = rng.randint(0, 70)
    ImageDraw.Draw(img).text((pad_x - x0, pad_y - y0), text, font=font, fill=(ink, ink, ink))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    return img


def make_rec_heldout(out: Path, lang: str, n: int, seed: int, charset: set[str]) -> Path:
    """Render ``n`` held-out text lines (PaddleOCR rec format) into ``out``."""
    from xcompress.data import RecSample, write_rec_labels

    if (out / "label.txt").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    fonts = FONTS_ZH if lang == "zh" else FONTS_EN
    samples = []
    for i, text in enumerate(_texts(lang, n, seed, charset)):
        img = _render_line(text, rng.choice(fonts), rng.randint(22, 40), rng)
        path = out / f"{i:04d}.jpg"
        img.save(path, quality=rng.randint(80, 95))
        samples.append(RecSample(path, text))
    write_rec_labels(out / "label.txt", samples)
    return out


def make_det_heldout(out: Path, n: int, seed: int, charset: set[str],
                     texts: tuple[list[str], list[str]] | None = None,
                     fonts: tuple[list[str], list[str]] = (FONTS_EN, FONTS_ZH),
                     max_angle: float = 12.0, p_rotate: float = 0.4,
                     hard: bool = False) -> Path:
    """Render ``n`` held-out pages (PaddleOCR det format): 5-12 lines each, some small, some
    low-contrast, some rotated up to ``max_angle`` degrees, on textured backgrounds with clutter.

    ``texts`` (English, Chinese lines; popped from the end) replaces the Faker text, ``fonts``
    the Latin / CJK fonts; ``hard`` degrades the whole page as a photo or scan (low contrast,
    uneven light, blur, noise, JPEG 25-65) instead of the light blur + JPEG 75-92 of the
    defaults, which keep the quantize benchmark's original pages unchanged."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    from xcompress.data import DetSample, TextBox, write_det_labels

    if (out / "label.txt").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    en, zh = (list(texts[0]), list(texts[1])) if texts else (
        _texts("en", n * 14, seed, charset), _texts("zh", n * 14, seed + 1, charset))
    samples = []
    for i in range(n):
        w, h = rng.choice([(960, 720), (800, 600), (720, 960), (1280, 720)])
        g = np.random.default_rng(seed + i)
        base = np.full((h, w, 3), rng.randint(150, 250), np.float32)
        base += np.linspace(0, rng.uniform(-60, 60), w, dtype=np.float32)[None, :, None]
        base += g.normal(0, rng.uniform(2, 12), (h, w, 1)).astype(np.float32)
        page = Image.fromarray(base.clip(0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(page)
        for _ in range(rng.randint(3, 10)):  # clutter: lines and boxes that are not text
            x0, y0 = rng.randint(0, w), rng.randint(0, h)
            c = rng.randint(60, 200)
            draw.line((x0, y0, x0 + rng.randint(-300, 300), y0 + rng.randint(-40, 40)),
                      fill=(c, c, c), width=rng.randint(1, 4))
        boxes: list[TextBox] = []
        taken: list[tuple[float, float, float, float]] = []
        for _ in range(rng.randint(5, 12)):
            zh_line = rng.random() < 0.5
            text = (zh if zh_line else en).pop()
            font = ImageFont.truetype(rng.choice(fonts[1] if zh_line else fonts[0]),
                                      rng.randint(14, 48))
            x0, y0, x1, y1 = font.getbbox(text)
            tw, th = x1 - x0, y1 - y0
            pad = 4
            layer = Image.new("L", (tw + 2 * pad, th + 2 * pad), 0)
            ImageDraw.Draw(layer).text((pad - x0, pad - y0), text, font=font, fill=255)
            angle = rng.uniform(-max_angle, max_angle) if rng.random() < p_rotate else 0.0
            rot = layer.rotate(angle, resample=Image.BICUBIC, expand=True)
            if rot.width >= w - 20 or rot.height >= h - 20:
                continue
            for _try in range(30):
                px, py = rng.randint(10, w - rot.width - 10), rng.randint(10, h - rot.height - 10)
                rect = (px, py, px + rot.width, py + rot.height)
                if all(rect[2] < t[0] - 6 or rect[0] > t[2] + 6 or rect[3] < t[1] - 6
                       or rect[1] > t[3] + 6 for t in taken):
                    break
            else:
                continue
            taken.append(rect)
            bg = float(np.asarray(page.crop(rect)).mean())
            contrast = rng.uniform(50, 180)
            ink = int(bg - contrast) if bg > 128 else int(bg + contrast)
            ink = max(0, min(255, ink))
            page.paste(Image.new("RGB", rot.size, (ink, ink, ink)), (px, py), rot)
            # box: the text rectangle's corners through the same rotation
            cx, cy = layer.width / 2, layer.height / 2
            a = np.deg2rad(-angle)  # PIL rotates counter-clockwise in image coordinates
            corners = [(pad, pad), (pad + tw, pad), (pad + tw, pad + th), (pad, pad + th)]
            pts = []
            for x, y in corners:
                dx, dy = x - cx, y - cy
                rx = dx * np.cos(a) - dy * np.sin(a) + rot.width / 2 + px
                ry = dx * np.sin(a) + dy * np.cos(a) + rot.height / 2 + py
                pts.append((float(rx), float(ry)))
            boxes.append(TextBox(tuple(pts), text))
        if hard:  # boxes stay exact: photometric damage only, no geometry
            import cv2

            path = out / f"{i:04d}.png"
            cv2.imwrite(str(path), degrade(page, rng, level="hard", geometric=False))
            samples.append(DetSample(path, tuple(boxes)))
            continue
        if rng.random() < 0.3:
            page = page.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0)))
        path = out / f"{i:04d}.jpg"
        page.save(path, quality=rng.randint(75, 92))
        samples.append(DetSample(path, tuple(boxes)))
    write_det_labels(out / "label.txt", samples)
    return out



#: per level: (p low contrast, contrast range, p lighting, lighting +-, p resolution loss,
#: p gaussian, sigma range, p motion (cumulative), motion kernel, p noise, noise sigma, JPEG q)
LEVELS = {
    "default": (0.5, (0.45, 0.8), 0.4, 40, 0.0, 0.35, (0.6, 1.3), 0.55, (3, 5), 0.6, (4, 12),
                (30, 75)),
    # scans and phone photos at their worst still read by people: faint ink, a lamp's gradient,
    # text a few pixels high that was resampled, focus blur, shake, sensor noise, heavy JPEG
    "hard": (0.6, (0.3, 0.75), 0.5, 60, 0.35, 0.4, (0.7, 1.6), 0.6, (3, 7), 0.7, (5, 16),
             (20, 60)),
}


def degrade(img, rng: random.Random, level: str = "default", geometric: bool = True):
    """A photo/scan-like version of a clean PIL image (returns a BGR uint8 array).

    ``level`` picks the ranges (:data:`LEVELS`); ``geometric=False`` leaves out the slight
    rotation, for pages whose boxes must stay where they were drawn."""
    import cv2

    (p_con, con, p_light, light, p_res, p_gauss, sigma, p_motion, motion, p_noise, noise,
     jpeg) = LEVELS[level]
    a = np.asarray(img.convert("RGB"))[:, :, ::-1].astype(np.float32)
    h, w = a.shape[:2]
    if rng.random() < p_con:  # low contrast: ink and paper pulled together
        c = rng.uniform(*con)
        a = a.mean() + (a - a.mean()) * c
    if rng.random() < p_light:  # uneven lighting: a gradient across the line
        grad = np.linspace(rng.uniform(-light, 0), rng.uniform(0, light), w, dtype=np.float32)
        a = a + grad[None, :, None]
    if geometric and rng.random() < 0.4:  # slight rotation (a hand-held photo)
        m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-2.5, 2.5), 1.0)
        a = cv2.warpAffine(a, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    if p_res and rng.random() < p_res:  # captured at a lower resolution, then scaled up
        f = rng.uniform(0.45, 0.75)
        small = cv2.resize(a, (max(1, int(w * f)), max(1, int(h * f))),
                           interpolation=cv2.INTER_AREA)
        a = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    r = rng.random()
    if r < p_gauss:
        a = cv2.GaussianBlur(a, (0, 0), rng.uniform(*sigma))
    elif r < p_motion:  # horizontal motion blur
        k = rng.randint(*motion)
        a = cv2.filter2D(a, -1, np.full((1, k), 1.0 / k, np.float32))
    if rng.random() < p_noise:
        a = a + np.random.default_rng(rng.randint(0, 2**31)).normal(0, rng.uniform(*noise),
                                                                     a.shape)
    a = np.clip(a, 0, 255).astype(np.uint8)
    q = rng.randint(*jpeg)
    ok, buf = cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, q])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


#: fonts of the document sets: none of them is one the generator renders with (DejaVu,
#: the zoo's simfang, Noto CJK, WenQuanYi)
DOC_FONTS_EN = [
    *(f"/usr/share/fonts/truetype/liberation2/Liberation{f}.ttf" for f in (
        "Sans-Regular", "Sans-Bold", "Sans-Italic", "Serif-Regular", "Serif-Bold",
        "Serif-Italic", "Mono-Regular", "Mono-Bold")),
    *(f"/usr/share/fonts/truetype/freefont/{f}.ttf" for f in (
        "FreeSans", "FreeSansBold", "FreeSerif", "FreeSerifItalic", "FreeMono")),
    *(f"/usr/share/fonts/opentype/urw-base35/{f}.otf" for f in (
        "NimbusSans-Regular", "NimbusSansNarrow-Regular", "NimbusRoman-Regular",
        "NimbusRoman-Italic", "NimbusMonoPS-Regular", "C059-Roman", "P052-Roman",
        "URWGothic-Book", "URWBookman-Light")),
]
DOC_FONTS_ZH = [
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/truetype/arphic/ukai.ttc",
    "/usr/share/fonts/truetype/lxgw-wenkai/LXGWWenKai-Regular.ttf",
    "/usr/share/fonts/truetype/lxgw-wenkai/LXGWWenKai-Light.ttf",
    "/usr/share/fonts/truetype/lxgw-wenkai/LXGWWenKaiMono-Regular.ttf",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
]
DOC_FONT_PACKAGES = ("fonts-liberation2 fonts-arphic-uming fonts-arphic-ukai fonts-freefont-ttf "
                     "fonts-urw-base35 fonts-lxgw-wenkai fonts-droid-fallback")


def _chunks(words: list[str], rng: random.Random, lo: int, hi: int, sep: str) -> str:
    """A run of consecutive ``words`` from a random start, cut to ``lo``..``hi`` characters."""
    i = rng.randrange(len(words))
    n = rng.randint(lo, hi)
    out = ""
    while i < len(words) and len(out) < n:
        out = (out + sep + words[i]) if out else words[i]
        i += 1
    return out[:n].strip()


def doc_texts(lang: str, n: int, seed: int, charset: set[str]) -> list[str]:
    """Real-document text from this machine, not the generator's corpus: English from the
    license texts in /usr/share/common-licenses, Chinese from the zh_CN message catalogs in
    /usr/share/locale (program messages as translators wrote them)."""
    import gettext
    import re

    rng = random.Random(seed)
    if lang == "en":
        words = []
        for f in sorted(Path("/usr/share/common-licenses").iterdir()):
            if f.is_file():
                words += f.read_text("utf-8", errors="ignore").split()
        if not words:
            sys.exit("no license texts in /usr/share/common-licenses (apt-get install base-files)")
        make = lambda: _chunks(words, rng, 10, 42, " ")  # noqa: E731
    else:
        msgs = []
        for f in sorted(Path("/usr/share/locale/zh_CN/LC_MESSAGES").glob("*.mo")):
            try:
                with f.open("rb") as fh:
                    cat = gettext.GNUTranslations(fh)._catalog  # the parsed msgid -> msgstr
            except Exception:  # a catalog gettext cannot read is skipped, not fatal
                continue
            for k, v in sorted(cat.items(), key=lambda kv: str(kv[0])):
                if isinstance(v, str) and k and "Project-Id" not in v:
                    msgs += [s.strip() for s in re.split(r"[\n\t]+", v) if len(s.strip()) >= 4]
        if not msgs:
            sys.exit("no zh_CN message catalogs in /usr/share/locale")
        make = lambda: rng.choice(msgs)[: rng.randint(6, 26)].strip()  # noqa: E731
    out: list[str] = []
    for _ in range(n * 200):
        t = make()
        if t and all(c in charset for c in t):
            out.append(t)
            if len(out) == n:
                return out
    sys.exit(f"only {len(out)} of {n} {lang} document lines fit the charset")


def code_texts(n: int, seed: int, charset: set[str]) -> list[str]:
    """What deployments read besides prose: plates, amounts, dates, card and phone numbers,
    invoice codes -- with their separators."""
    rng = random.Random(seed)
    d = lambda k: "".join(rng.choice("0123456789") for _ in range(k))  # noqa: E731
    up = lambda k: "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(k))  # noqa
    makers = [
        lambda: f"{rng.choice('京沪粤浙苏川鲁豫鄂湘闽皖')}{up(1)}{rng.choice(['', '·', ' '])}"
                f"{''.join(rng.choice('0123456789ABCDEFGHJKLMNPQRSTUVWXYZ') for _ in range(5))}",
        lambda: f"{rng.choice(['¥', '$', '€', 'RMB ', ''])}{rng.randint(1, 999):,}"
                f"{rng.choice([',', ''])}{d(3)}.{d(2)}",
        lambda: f"{rng.randint(1990, 2030)}{rng.choice(['-', '/', '.'])}{rng.randint(1, 12):02d}"
                f"{rng.choice(['-', '/', '.'])}{rng.randint(1, 28):02d}",
        lambda: f"{rng.randint(1990, 2030)}年{rng.randint(1, 12)}月{rng.randint(1, 28)}日",
        lambda: " ".join(d(4) for _ in range(4)),
        lambda: f"{rng.choice(['+86 ', '', '('])}{d(3)}{rng.choice(['-', ' ', ') '])}{d(4)}-{d(4)}",
        lambda: f"No.{up(2)}{d(rng.randint(6, 10))}",
        lambda: f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}",
        lambda: f"{d(2)}.{d(3)} kWh",
    ]
    out: list[str] = []
    while len(out) < n:
        t = rng.choice(makers)()
        if all(c in charset for c in t):
            out.append(t)
    return out


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


#: document sets: text, level and fonts apart from the generator (see the module docstring)
DOC_KINDS = ("doc-en", "doc-zh", "codes")


def _cjk(text: str) -> bool:
    return any("\u3000" <= c <= "\u9fff" or "\uff00" <= c <= "\uffef" for c in text)


def make_set(out: Path, kind: str, n: int, seed: int, charset: set[str] | None = None,
             height: tuple[int, int] = (22, 40)) -> Path:  # fmt: skip
    """Write ``n`` degraded held-out lines of ``kind`` into ``out``: ``en``, ``zh``,
    ``digits`` (Faker / digit text, Liberation and AR PL fonts, the default degradations) or
    one of :data:`DOC_KINDS` (license texts, message catalogs, codes; more fonts; text 16-40
    px high; the hard degradations)."""
    import cv2

    from xcompress.data import RecSample, write_rec_labels

    out = out.resolve()  # labels hold paths relative to their folder
    if (out / "label.txt").is_file():
        return out
    doc = kind in DOC_KINDS
    need = DOC_FONTS_EN + DOC_FONTS_ZH if doc else FONTS_EN + FONTS_ZH
    missing = [f for f in need if not Path(f).is_file()]
    if missing:
        sys.exit(f"held-out fonts missing ({missing[0]} ...): apt-get install "
                 + (DOC_FONT_PACKAGES if doc else
                    "fonts-liberation2 fonts-arphic-uming fonts-arphic-ukai"))
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    charset = charset or set()
    if kind == "digits":
        texts, fonts = digit_texts(n, seed), FONTS_EN
    elif kind == "codes":
        texts, fonts = code_texts(n, seed, charset), DOC_FONTS_EN
    elif doc:
        lang = kind.split("-")[1]
        texts, fonts = doc_texts(lang, n, seed, charset), (
            DOC_FONTS_ZH if lang == "zh" else DOC_FONTS_EN)
        height = (16, 40)
    else:
        texts = _texts(kind, n, seed, charset)
        fonts = FONTS_ZH if kind == "zh" else FONTS_EN
    samples = []
    for i, text in enumerate(texts):
        font = rng.choice(DOC_FONTS_ZH if doc and _cjk(text) else fonts)
        img = _render_line(text, font, rng.randint(*height), rng)
        img = degrade(img, rng, level="hard") if doc else degrade(img, rng)
        path = out / f"{i:04d}.png"  # JPEG damage is in the pixels already; keep them exact
        cv2.imwrite(str(path), img)
        samples.append(RecSample(path, text))
    write_rec_labels(out / "label.txt", samples)
    return out


def make_doc_pages(out: Path, n: int, seed: int, charset: set[str]) -> Path:
    """Detection pages of document text (license lines and message-catalog Chinese mixed),
    the document fonts, lines rotated up to 20 degrees on half the lines, degraded as photos."""
    en = doc_texts("en", n * 14, seed, charset)
    zh = doc_texts("zh", n * 14, seed + 1, charset)
    return make_det_heldout(out.resolve(), n, seed, charset, texts=(en, zh),
                            fonts=(DOC_FONTS_EN, DOC_FONTS_ZH), max_angle=20.0, p_rotate=0.5,
                            hard=True)


def det_sets(root: Path, charset: set[str]) -> dict[str, Path]:
    """The detection held-out sets every benchmark scores on (same seeds, same pages):
    ``doc-det`` (40 document pages) and ``det-mix`` (30 mixed English / Chinese pages)."""
    return {"doc-det": make_doc_pages(root / "doc-det", 40, 7, charset),
            "det-mix": make_det_heldout((root / "det-mix").resolve(), 30, 303, charset)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--pages", type=int, default=40, help="document detection pages")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    from xcompress.artifact import resolve_model

    charset = set(resolve_model("ppocr-v4-rec").card.charset or [])
    for kind in ("en", "zh", "digits", *DOC_KINDS):
        make_set(args.out / kind, kind, args.n, args.seed, charset)
        print(args.out / kind)
    print(make_doc_pages(args.out / "doc-det", args.pages, args.seed, charset))


if __name__ == "__main__":
    main()
