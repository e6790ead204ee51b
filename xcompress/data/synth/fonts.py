"""Fonts for synthetic text: discovery, glyph coverage and cached PIL font objects.

Latin fonts come from the system's DejaVu family (Sans, Serif, Mono, with bold and oblique
faces); the CJK font is the zoo asset ``simfang`` (``xcompress.zoo.ensure_asset``), plus any
Noto CJK / WenQuanYi fonts the system happens to have. Only what exists is used; a CJK font
is required only for ``zh`` / ``mix`` text.

Example:
    >>> fonts = discover_fonts(cjk=False)         # doctest: +SKIP
    >>> [f.name for f in fonts][:2]               # doctest: +SKIP
    ['DejaVuSans', 'DejaVuSans-Bold']
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from xcompress.errors import DataError, XCompressError

DEJAVU_DIRS = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/TTF",
    "/usr/share/fonts/dejavu",
)
#: DejaVu faces used; a mix of families, weights and slants, so a recognizer sees variety.
DEJAVU_FACES = (
    "DejaVuSans",
    "DejaVuSans-Bold",
    "DejaVuSans-Oblique",
    "DejaVuSansCondensed",
    "DejaVuSansCondensed-Bold",
    "DejaVuSerif",
    "DejaVuSerif-Bold",
    "DejaVuSerif-Italic",
    "DejaVuSerifCondensed",
    "DejaVuSansMono",
    "DejaVuSansMono-Bold",
)
#: System CJK fonts picked up when present (Debian fonts-noto-cjk, fonts-wqy-*); never required.
SYSTEM_CJK = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)


@dataclass(frozen=True)
class FontSpec:
    """A font file and whether it draws CJK."""

    path: Path
    cjk: bool = False

    @property
    def name(self) -> str:
        return self.path.stem


@functools.cache
def coverage(path: Path) -> frozenset[str]:
    """Characters the font has a glyph for (from its cmap; first face of a collection)."""
    from fontTools.ttLib import TTFont

    font_number = 0 if path.suffix.lower() == ".ttc" else -1
    with TTFont(str(path), fontNumber=font_number, lazy=True) as f:
        cmap = f.getBestCmap() or {}
    # Whitespace is always drawable (it is just advance); some fonts map it oddly.
    return frozenset(chr(c) for c in cmap) | {" "}


@functools.cache
def pil_font(path: Path, size: int):  # -> ImageFont.FreeTypeFont
    """A cached PIL font at ``size`` pixels (loading a TrueType file is the slow part)."""
    from PIL import ImageFont

    return ImageFont.truetype(str(path), size=size)


def _cjk_asset() -> tuple[Path | None, str]:
    """The zoo's CJK font, or None and the reason it could not be had."""
    from xcompress import zoo

    try:
        return Path(zoo.ensure_asset("simfang")), ""
    except XCompressError as e:  # offline / no PyPI: system CJK fonts may still do
        return None, str(e)


def discover_fonts(cjk: bool) -> tuple[FontSpec, ...]:
    """The fonts available here, in a fixed order (so generation is reproducible).

    Args:
        cjk: also find CJK fonts (fetches the ``simfang`` zoo asset if needed).

    Raises:
        DataError: no Latin font, or ``cjk`` requested and no CJK font is available.
    """
    fonts: list[FontSpec] = []
    for d in DEJAVU_DIRS:
        for face in DEJAVU_FACES:
            p = Path(d) / f"{face}.ttf"
            if p.is_file():
                fonts.append(FontSpec(p))
        if fonts:
            break
    if cjk:
        asset, why = _cjk_asset()
        cjk_fonts = [FontSpec(asset, cjk=True)] if asset is not None else []
        cjk_fonts += [FontSpec(Path(p), cjk=True) for p in SYSTEM_CJK if Path(p).is_file()]
        if not cjk_fonts:
            raise DataError(
                f"no CJK font for zh/mix text ({why}): install fonts-noto-cjk or use --lang en"
            )
        fonts += cjk_fonts
    if not fonts:
        raise DataError(
            "no fonts found: install the DejaVu fonts (Debian: apt-get install fonts-dejavu-core)"
        )
    return tuple(fonts)
