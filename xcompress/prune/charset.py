"""CTC charset slimming: cut a recognizer's classifier down to the characters a deployment needs.

A CTC recognizer ends in ``head = Linear(dims, 1 + len(charset))``: row 0 is the blank, row
``i >= 1`` decodes to ``charset[i - 1]``. Keeping only some rows of ``head`` gives a smaller
model whose logits are the parent's logits at those rows (the same weights; equal up to the
last bit the matrix product rounds), so its softmax is the parent's restricted to the kept
classes and renormalised. Greedy CTC decoding changes only where the parent's best class was
a dropped one. The blank is always kept, and so is the space when the model has one
(PaddleOCR appends it to every dict).

Example::

    keep = resolve_keep("digits")                   # or a PaddleOCR dict file
    slim = plan_slim(card.charset, keep)
    small = slim_classifier(model, card.charset, slim)
    small_card = slim_card(card, slim)              # charset = slim.kept
    print(f"{slim.dropped} classes dropped, missing: {slim.missing}")

:func:`resolve_keep` and :func:`plan_slim` do not import torch; :func:`slim_classifier` does.
"""

from __future__ import annotations

import copy
import string
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xcompress.card import ModelCard
from xcompress.errors import DataError, ModelError

if TYPE_CHECKING:
    from xcompress.models.base import OCRModel

SPACE = " "
BLANK = 0

#: the named character sets ``--keep-charset`` accepts besides a dict file
KEEP_SETS: dict[str, str] = {
    # printable ASCII 0x20-0x7E (string.printable also holds tabs and line ends)
    "ascii": string.digits + string.ascii_letters + string.punctuation + " ",
    "alnum": string.digits + string.ascii_letters,
    "digits": string.digits,
}

_MAX_SHOWN = 5


def _dedup(chars: list[str]) -> list[str]:
    return list(dict.fromkeys(chars))


def resolve_keep(spec: str) -> list[str]:
    """The characters to keep: a name from :data:`KEEP_SETS` or a dict file.

    A dict file is PaddleOCR's format: UTF-8, one character per line. Only the line end
    (``\\n`` or ``\\r\\n``) is removed, so a line holding a space or U+3000 keeps it; empty
    lines are skipped.

    Args:
        spec: ``"ascii"``, ``"alnum"``, ``"digits"`` or the path of a dict file.

    Returns:
        The characters, duplicates removed, in first-seen order.

    Raises:
        DataError: ``spec`` is neither a known name nor a file, the file is not UTF-8, has
            a line of more than one character (file and line number in the message), or
            holds no character.
    """
    if spec in KEEP_SETS:
        return _dedup(list(KEEP_SETS[spec]))
    path = Path(spec)
    if not path.is_file():
        raise DataError(f"--keep-charset {spec}: not a file and not one of {', '.join(KEEP_SETS)}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(
            f"charset file {path} is not UTF-8 text: write one character per line, UTF-8"
        ) from None
    except OSError as e:
        raise DataError(f"cannot read charset file {path}: {e.strerror or e}") from None
    chars: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line:
            continue
        if len(line) > 1:
            raise DataError(
                f"charset file {path} line {number} holds {len(line)} characters ({line[:20]!r}):"
                " write one character per line"
            )
        chars.append(line)
    if not chars:
        raise DataError(f"charset file {path} holds no character: write one per line")
    return _dedup(chars)


@dataclass(frozen=True)
class CharsetSlim:
    """What :func:`plan_slim` decided.

    Attributes:
        kept: the slimmed model's charset (the card's new ``charset``), in the parent's order.
        rows: the parent classifier rows kept, ascending; ``rows[0] == 0`` (the blank) and
            ``rows[j] - 1`` indexes the parent charset for ``j >= 1``.
        missing: requested characters the parent charset lacks, in request order.
        dropped: number of parent classes removed.
    """

    kept: list[str]
    rows: list[int]
    missing: list[str]
    dropped: int

    @property
    def num_classes(self) -> int:
        """Classes of the slimmed model (blank + ``kept``)."""
        return len(self.rows)


def _shown(chars: list[str]) -> str:
    head = ", ".join(repr(c) for c in chars[:_MAX_SHOWN])
    return head + (", ..." if len(chars) > _MAX_SHOWN else "")


def plan_slim(
    charset: list[str],
    keep: list[str],
    allow_missing: bool = False,
    source: str | None = None,
) -> CharsetSlim:
    """Which classifier rows to keep so the model outputs only ``keep`` (plus blank and space).

    Args:
        charset: the parent model's charset (its card's, space included).
        keep: the characters wanted (:func:`resolve_keep`).
        allow_missing: accept requested characters the model cannot output even when they
            come from a file (they are listed in ``missing`` either way).
        source: the dict file ``keep`` was read from, or None for a named set or a list made
            in code. Only a file's missing characters are an error: a named set such as
            ``ascii`` is a superset by intent.

    Returns:
        The plan. Every parent row whose character is wanted is kept, so a charset with a
        duplicated entry keeps each copy and the decoded text cannot change for it.

    Raises:
        DataError: ``source`` has characters the model lacks (and not ``allow_missing``), or
            nothing but the blank and the space would remain.
    """
    wanted = set(keep)
    have = set(charset)
    missing = [c for c in _dedup(keep) if c not in have]
    if missing and source is not None and not allow_missing:
        raise DataError(
            f"charset file {source} has {len(missing)} characters the model cannot output "
            f"(first: {_shown(missing)}): remove them or pass a model whose charset has them"
        )
    rows = [BLANK] + [i + 1 for i, c in enumerate(charset) if c in wanted or c == SPACE]
    kept = [charset[r - 1] for r in rows[1:]]
    if all(c == SPACE for c in kept):
        what = f"charset file {source}" if source is not None else "the requested charset"
        raise DataError(
            f"{what} has none of the model's {len(charset)} characters "
            f"(the model's first: {_shown(charset)}): nothing would be left to recognize"
        )
    return CharsetSlim(kept=kept, rows=rows, missing=missing, dropped=len(charset) - len(kept))


def _check_plan(charset: list[str], slim: CharsetSlim, what: str) -> None:
    rows = slim.rows
    if (
        not rows or rows[0] != BLANK or rows != sorted(set(rows)) or rows[-1] > len(charset)
        or [charset[r - 1] for r in rows[1:]] != list(slim.kept)
    ):  # fmt: skip
        raise ModelError(
            f"the charset slimming plan does not fit {what} ({len(charset)} characters): "
            "make it with plan_slim from that charset"
        )


def slim_classifier(model: OCRModel, charset: list[str], slim: CharsetSlim) -> OCRModel:
    """A copy of ``model`` whose CTC head outputs only the classes in ``slim.rows``.

    The input model is not changed. The copy's config has ``num_classes = len(slim.rows)``,
    so a checkpoint of it rebuilds the same module.

    Args:
        model: a native recognizer ending in ``head = nn.Linear(dims, 1 + len(charset))``.
        charset: the model's charset (the one ``slim`` was planned from).
        slim: the plan from :func:`plan_slim`.

    Returns:
        The slimmed model, in the same train/eval mode, device and dtype as ``model``.

    Raises:
        ModelError: the model has no Linear ``head``, its class count does not fit
            ``charset``, its config has no ``num_classes``, or ``slim`` was planned from
            another charset.
    """
    import torch
    from torch import nn

    head = getattr(model, "head", None)
    if not isinstance(head, nn.Linear):
        raise ModelError(
            f"{type(model).__name__} has no Linear CTC head (`head`): charset slimming needs one"
        )
    if head.out_features != len(charset) + 1:
        raise ModelError(
            f"the model has {head.out_features} classes but its charset {len(charset)} "
            f"characters (+1 blank = {len(charset) + 1}): pass the charset the model was "
            "trained with"
        )
    config = model.config
    if "num_classes" not in type(config).model_fields:
        raise ModelError(f"architecture {model.arch} has no num_classes in its config")
    _check_plan(charset, slim, "this model's charset")

    new = copy.deepcopy(model)
    w = head.weight
    small = nn.Linear(
        head.in_features, len(slim.rows), bias=head.bias is not None,
        device=w.device, dtype=w.dtype,
    )  # fmt: skip
    index = torch.tensor(slim.rows, dtype=torch.long, device=w.device)
    with torch.no_grad():
        small.weight.copy_(w.index_select(0, index))
        if head.bias is not None:
            small.bias.copy_(head.bias.index_select(0, index))
    small.weight.requires_grad_(w.requires_grad)
    if head.bias is not None:
        small.bias.requires_grad_(head.bias.requires_grad)
    small.train(head.training)
    new.head = small
    new.config = config.model_copy(update={"num_classes": len(slim.rows)})
    return new


def slim_card(card: ModelCard, slim: CharsetSlim) -> ModelCard:
    """``card`` with the slimmed charset (``slim.kept``); everything else unchanged.

    Raises:
        ModelError: the card has no charset, or ``slim`` was planned from another charset.
    """
    if card.charset is None:
        raise ModelError(f"{card.name}: the card has no charset to slim (is it a recognizer?)")
    _check_plan(card.charset, slim, f"the charset of {card.name}")
    return card.model_copy(update={"charset": list(slim.kept)})
