"""Text sources for synthetic lines: phrase corpora plus generated numbers, dates and codes.

Each source is a function ``rng -> str`` registered under a name; a language (``en``, ``zh``,
``mix``) is a weighted choice of sources. Strings are then fitted to what the model can output
and the font can draw by :func:`fit_text`.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> text = draw_text(rng, "en")
    >>> isinstance(text, str) and len(text) > 0
    True
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable
from importlib import resources

import numpy as np

Source = Callable[[np.random.Generator], str]
SOURCES: dict[str, Source] = {}


def register_source(name: str) -> Callable[[Source], Source]:
    """Decorator adding a text source to :data:`SOURCES`."""

    def deco(fn: Source) -> Source:
        SOURCES[name] = fn
        return fn

    return deco


@functools.cache
def corpus(lang: str) -> tuple[str, ...]:
    """The phrases of the packaged corpus ``corpus_<lang>.txt`` (comments and blanks dropped)."""
    text = resources.files(__package__).joinpath(f"corpus_{lang}.txt").read_text("utf-8")
    return tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def _pick(rng: np.random.Generator, items: tuple[str, ...] | list[str] | str) -> str:
    return items[int(rng.integers(len(items)))]


def _digits(rng: np.random.Generator, n: int) -> str:
    return "".join(str(d) for d in rng.integers(0, 10, size=n))


def _upper(rng: np.random.Generator, n: int, alphabet: str = string.ascii_uppercase) -> str:
    return "".join(_pick(rng, alphabet) for _ in range(n))


@register_source("en_phrase")
def en_phrase(rng: np.random.Generator) -> str:
    phrases = corpus("en")
    text = _pick(rng, phrases)
    # Real lines are sometimes two short phrases joined, or shouted in capitals.
    if rng.random() < 0.15:
        text = f"{text} {_pick(rng, phrases)}"
    r = rng.random()
    if r < 0.12:
        text = text.upper()
    elif r < 0.18:
        text = text.lower()
    return text


@register_source("zh_phrase")
def zh_phrase(rng: np.random.Generator) -> str:
    phrases = corpus("zh")
    text = _pick(rng, phrases)
    if rng.random() < 0.2:
        text = f"{text}{_pick(rng, '，、 ：')}{_pick(rng, phrases)}"
    return text


@functools.cache
def _zh_lexicon() -> tuple[tuple[str, ...], np.ndarray]:
    """jieba's word list (349 k words with counts from Chinese text), cumulative draw weights.

    The packaged phrase corpus covers only ~420 characters, so a model distilled or calibrated on
    it never sees half the characters of ordinary Chinese text (measured: 199 of the 385 that
    Faker's zh_CN sentences use). jieba's dictionary covers 5,888 of the 6,402 CJK characters of
    the PP-OCR charset; words are drawn with probability ~ count**0.5 so rarer characters appear
    too. jieba is used only as a data file: its tokenizer is never loaded.
    """
    words: list[str] = []
    counts: list[float] = []
    with resources.files("jieba").joinpath("dict.txt").open(encoding="utf-8") as f:
        for line in f:
            parts = line.split(" ")
            if len(parts) >= 2 and parts[1].isdigit():
                words.append(parts[0])
                counts.append(float(parts[1]))
    cdf = np.cumsum(np.sqrt(np.asarray(counts)))
    return tuple(words), cdf / cdf[-1]


@register_source("zh_words")
def zh_words(rng: np.random.Generator) -> str:
    """A line of 2-16 characters of Chinese words, now and then with a comma or a full stop."""
    words, cdf = _zh_lexicon()
    target = int(rng.integers(2, 17))
    out = ""
    while len(out) < target:
        out += words[min(int(np.searchsorted(cdf, rng.random())), len(words) - 1)]
        if len(out) < target and rng.random() < 0.08:
            out += _pick(rng, "，、。：")
    return out


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@register_source("date")
def date(rng: np.random.Generator) -> str:
    y, m, d = int(rng.integers(1990, 2036)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    hh, mm = int(rng.integers(0, 24)), int(rng.integers(0, 60))
    formats = (
        f"{y}-{m:02d}-{d:02d}",
        f"{d:02d}/{m:02d}/{y}",
        f"{m}/{d}/{y % 100:02d}",
        f"{d} {_MONTHS[m - 1]} {y}",
        f"{_MONTHS[m - 1]} {d}, {y}",
        f"{y}.{m:02d}.{d:02d}",
        f"{y}-{m:02d}-{d:02d} {hh:02d}:{mm:02d}",
        f"{hh:02d}:{mm:02d}",
    )
    return _pick(rng, formats)


@register_source("date_zh")
def date_zh(rng: np.random.Generator) -> str:
    y, m, d = int(rng.integers(1990, 2036)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    hh, mm = int(rng.integers(0, 24)), int(rng.integers(0, 60))
    return _pick(rng, (f"{y}年{m}月{d}日", f"{m}月{d}日 {hh:02d}:{mm:02d}", f"{y}年{m:02d}月"))


@register_source("amount")
def amount(rng: np.random.Generator) -> str:
    value = float(np.round(rng.lognormal(3.0, 1.3), 2))
    sym = _pick(rng, ("$", "€", "£", "¥", "", "USD ", "EUR "))
    num = f"{value:,.2f}" if rng.random() < 0.7 else f"{value:.2f}"
    if rng.random() < 0.3:
        label = _pick(rng, ("Total", "Subtotal", "Tax", "Cash", "Change", "Amount due", "TOTAL"))
        return f"{label} {sym}{num}"
    return f"{sym}{num}"


@register_source("amount_zh")
def amount_zh(rng: np.random.Generator) -> str:
    value = float(np.round(rng.lognormal(3.0, 1.3), 2))
    label = _pick(rng, ("合计", "小计", "实收", "找零", "单价", "金额"))
    return _pick(rng, (f"{label}：¥{value:.2f}", f"{label} {value:.2f}元", f"￥{value:,.2f}"))


@register_source("receipt_item")
def receipt_item(rng: np.random.Generator) -> str:
    item = _pick(rng, corpus("en"))
    if len(item) > 22:  # receipts abbreviate long names; cut at a word boundary
        item = item[:22].rsplit(" ", 1)[0]
    qty = int(rng.integers(1, 6))
    price = float(np.round(rng.lognormal(1.5, 0.8), 2))
    return _pick(
        rng, (f"{qty} x {item} {price:.2f}", f"{item}  {qty * price:.2f}", f"{qty}x {price:.2f}")
    )


@register_source("phone")
def phone(rng: np.random.Generator) -> str:
    return _pick(
        rng,
        (
            f"+{int(rng.integers(1, 99))} {_digits(rng, 3)} {_digits(rng, 3)} {_digits(rng, 4)}",
            f"({_digits(rng, 3)}) {_digits(rng, 3)}-{_digits(rng, 4)}",
            f"Tel: {_digits(rng, 4)} {_digits(rng, 6)}",
            f"1{_digits(rng, 2)}-{_digits(rng, 4)}-{_digits(rng, 4)}",
            f"0{_digits(rng, 2)}-{_digits(rng, 8)}",
        ),
    )


@register_source("code")
def code(rng: np.random.Generator) -> str:
    alnum = string.ascii_uppercase + string.digits
    return _pick(
        rng,
        (
            f"No. {_digits(rng, int(rng.integers(4, 9)))}",
            f"INV-{int(rng.integers(2015, 2031))}-{_digits(rng, 5)}",
            f"SN {_upper(rng, 2)}{_digits(rng, 8)}",
            f"{_upper(rng, 3)}{_digits(rng, 6)}",
            f"Order #{_digits(rng, 7)}",
            f"ID: {_upper(rng, 10, alnum)}",
            # ID-card-like: region, birth year, serial, check character
            f"{_digits(rng, 6)}{int(rng.integers(1950, 2010))}{_digits(rng, 7)}"
            f"{_pick(rng, '0123456789X')}",
            f"Ref {_upper(rng, 4, alnum)}-{_upper(rng, 4, alnum)}",
            f"{_digits(rng, 13)}",
        ),
    )


@register_source("plate")
def plate(rng: np.random.Generator) -> str:
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"  # plates avoid I/O/Q
    return _pick(
        rng,
        (
            f"{_upper(rng, 2, letters)}{_digits(rng, 2)} {_upper(rng, 3, letters)}",
            f"{_upper(rng, 3, letters)}-{_digits(rng, 4)}",
            f"{_digits(rng, 1)}{_upper(rng, 3, letters)}{_digits(rng, 3)}",
            f"{_upper(rng, 1, letters)}·{_upper(rng, 5, letters + '0123456789')}",
        ),
    )


@register_source("plate_zh")
def plate_zh(rng: np.random.Generator) -> str:
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    prov = _pick(rng, "京沪津渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤川青藏琼宁")
    return f"{prov}{_upper(rng, 1, letters)}·{_upper(rng, 5, letters + '0123456789')}"


@register_source("card")
def card(rng: np.random.Generator) -> str:
    groups = " ".join(_digits(rng, 4) for _ in range(4))
    expiry = f"EXP {int(rng.integers(1, 13)):02d}/{int(rng.integers(24, 35))}"
    return _pick(rng, (groups, f"**** **** **** {_digits(rng, 4)}", expiry))


@register_source("number")
def number(rng: np.random.Generator) -> str:
    return _pick(
        rng,
        (
            str(int(rng.integers(0, 100000))),
            f"{rng.uniform(0, 1000):.{int(rng.integers(1, 4))}f}",
            f"{int(rng.integers(1, 100))}%",
            f"{int(rng.integers(1, 500))} {_pick(rng, ('kg', 'g', 'ml', 'L', 'km', 'cm', 'pcs'))}",
            f"{int(rng.integers(1, 60))}-{int(rng.integers(60, 200))}",
        ),
    )


#: Weighted mix of sources per language.
LANGS: dict[str, dict[str, float]] = {
    "en": {
        "en_phrase": 0.5,
        "date": 0.08,
        "amount": 0.1,
        "receipt_item": 0.07,
        "phone": 0.06,
        "code": 0.08,
        "plate": 0.04,
        "card": 0.03,
        "number": 0.04,
    },
    "zh": {
        "zh_phrase": 0.6,
        "date_zh": 0.1,
        "amount_zh": 0.1,
        "plate_zh": 0.05,
        "phone": 0.05,
        "code": 0.05,
        "number": 0.05,
    },
}


def _mix_weights() -> dict[str, float]:
    w: dict[str, float] = {}
    for lang in ("en", "zh"):
        for k, v in LANGS[lang].items():
            w[k] = w.get(k, 0.0) + v / 2
    return w


LANGS["mix"] = _mix_weights()
#: Chinese whose lines also come from jieba's words (:func:`zh_words`): thousands of characters
#: instead of the phrase list's ~420. Training data for distillation (prune, QAT: see
#: ``train.tasks.expand_synth``); the calibration and budget-check defaults stay on ``zh`` /
#: ``mix`` until the int8 budget is re-measured on it (on it ppocr-v4-rec int8 drops 1.5 pt).
LANGS["zh-wide"] = {**LANGS["zh"], "zh_phrase": 0.3, "zh_words": 0.3}


def draw_text(rng: np.random.Generator, lang: str) -> str:
    """One raw string for ``lang`` (before fitting to a charset)."""
    weights = LANGS[lang]
    names = sorted(weights)
    p = np.array([weights[n] for n in names])
    return SOURCES[names[int(rng.choice(len(names), p=p / p.sum()))]](rng)


def _tokens(text: str) -> list[str]:
    """Words and spaces for Latin text; single characters for CJK (no spaces between words)."""
    out: list[str] = []
    for ch in text:
        if ch == " " or ord(ch) > 0x2E7F or not out or out[-1] == " " or ord(out[-1][-1]) > 0x2E7F:
            out.append(ch)
        else:
            out[-1] += ch
    return out


def fit_text(text: str, allowed: set[str] | frozenset[str], max_len: int = 40) -> str:
    """Keep the whole tokens of ``text`` made only of ``allowed`` characters.

    Dropping a whole word (rather than single letters) keeps the line made of real words;
    spaces are collapsed and trimmed, and the result is cut to ``max_len`` characters at a
    token boundary. Returns ``""`` when nothing usable is left (the caller draws again).
    """
    kept = [t for t in _tokens(text) if all(c in allowed for c in t)]
    out = " ".join("".join(kept).split())
    if len(out) > max_len:
        cut = out[:max_len]
        out = cut.rsplit(" ", 1)[0] if " " in cut[max_len // 2 :] else cut
    return out.strip()


def random_text(rng: np.random.Generator, allowed: list[str], max_len: int = 12) -> str:
    """A random string over ``allowed`` (fallback when no corpus text fits a tiny charset)."""
    chars = [c for c in allowed if not c.isspace()]
    n = int(rng.integers(1, max_len + 1))
    return "".join(chars[int(i)] for i in rng.integers(0, len(chars), size=n))
