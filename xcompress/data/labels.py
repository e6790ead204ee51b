"""PaddleOCR-format data sets: typed samples, reading, writing and checks.

A data set is a folder with a ``label.txt`` whose lines name an image (relative to the
label file's folder) and its label, separated by one TAB:

* recognition: ``crops/000001.jpg<TAB>Total: $12.50``
* detection:   ``images/000001.jpg<TAB>[{"transcription": "EXIT", "points": [[x,y],...]}]``
  (a transcription of ``###`` marks a don't-care region, as in PaddleOCR)
* classification (direction): ``crops/000001.jpg<TAB>0`` or ``<TAB>180``

Example:
    >>> ds = load_dataset("data/rec_val")            # doctest: +SKIP
    >>> ds.task, len(ds), ds.samples[0].text          # doctest: +SKIP
    ('rec', 300, 'Total: $12.50')
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from xcompress.errors import DataError
from xcompress.fsutil import write_text

if TYPE_CHECKING:
    import numpy as np

Task = Literal["rec", "det", "cls"]

#: Label file names looked for, in order, when a folder is given. ``Label.txt`` and
#: ``rec_gt.txt`` are what PPOCRLabel writes for detection and recognition.
LABEL_FILE_NAMES = ("label.txt", "Label.txt", "rec_gt.txt")
#: Transcriptions PaddleOCR treats as "don't care" regions in detection labels.
IGNORE_TRANSCRIPTIONS = ("###", "*")
CLS_LABELS = ("0", "180")
#: A set asked for as rec whose labels all read ``0`` or ``180`` is refused as a cls set only
#: from this many samples on: one or two such lines could be a tiny set of digits, three or
#: more that never read anything else are a direction-classification set.
MIN_CLS_LOOKALIKE = 3
TASKS: tuple[Task, ...] = ("rec", "det", "cls")
#: File kinds that are often passed where a data set is expected, by suffix.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
MODEL_SUFFIXES = (".onnx", ".tflite", ".pt", ".pth", ".pdmodel", ".pdiparams", ".safetensors")
# Leading bytes of the same kinds (a renamed file is recognised too).
_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"II*\x00", b"MM\x00*")
_WHAT_SET = {
    "rec": "a recognition set (lines 'image<TAB>text')",
    "det": "a detection set (lines 'image<TAB>[{\"transcription\": ..., \"points\": ...}]')",
    "cls": "a direction-classification set (lines 'image<TAB>0' or 'image<TAB>180')",
}


@dataclass(frozen=True)
class TextBox:
    """One text region of a detection sample.

    Args:
        points: polygon corners ``((x, y), ...)`` in pixels, clockwise from top-left
            (4 for PaddleOCR boxes); any (N, 2) array-like is accepted and stored as tuples
            so samples stay hashable and comparable.
        text: transcription (``"###"`` for ignored regions).
        ignore: True for don't-care regions (not counted as misses or false positives).
    """

    points: tuple[tuple[float, float], ...]
    text: str = ""
    ignore: bool = False

    def __post_init__(self) -> None:
        pts = tuple((float(p[0]), float(p[1])) for p in self.points)
        if len(pts) < 3:
            raise ValueError(f"a text box needs at least 3 points, got {len(pts)}")
        object.__setattr__(self, "points", pts)

    @property
    def array(self) -> np.ndarray:
        """The points as a float32 (N, 2) array."""
        import numpy as np

        return np.asarray(self.points, dtype=np.float32)


@dataclass(frozen=True)
class RecSample:
    """A text-line image and its transcription."""

    image: Path
    text: str


@dataclass(frozen=True)
class DetSample:
    """A scene image and its text regions."""

    image: Path
    boxes: tuple[TextBox, ...]


@dataclass(frozen=True)
class ClsSample:
    """A text-line image and its direction label (``"0"`` or ``"180"``)."""

    image: Path
    label: str


Sample = RecSample | DetSample | ClsSample


@dataclass(frozen=True)
class Dataset:
    """A loaded data set: its task, the folder image paths are relative to, and its samples.

    ``samples[i].image`` are absolute (``root / relative path``).
    """

    task: Task
    root: Path
    samples: tuple[Sample, ...]
    name: str = ""
    label_file: Path | None = field(default=None, compare=False)

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def texts(self) -> list[str]:
        """Every transcription: line texts (rec) or non-ignored box texts (det)."""
        return list(_texts(self))


class TaskMismatchError(DataError):
    """A data set whose labels contradict the task it was asked for (e.g. a cls set as rec).

    Attributes:
        path: the data set as given.
        task: the task asked for.
        looks: the task the labels look like.
        evidence: why, e.g. ``"every label is 0 or 180"``.
    """

    def __init__(self, path: str, task: Task, looks: Task, evidence: str) -> None:
        self.path, self.task, self.looks, self.evidence = path, task, looks, evidence
        super().__init__(
            f"{path} looks like a {looks} set ({evidence}), not a {task} set: "
            f"pass {_WHAT_SET[task]}"
        )


# ----------------------------------------------------------------------------- reading


def _file_kind(p: Path) -> str | None:
    """``"image"`` / ``"model"`` when ``p`` is one (by suffix or leading bytes), else None."""
    suffix = p.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in MODEL_SUFFIXES:
        return "model"
    try:
        with open(p, "rb") as f:
            head = f.read(12)
    except OSError:
        return None
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return "image"
    if head[4:8] == b"TFL3" or head.startswith(b"PK\x03\x04"):  # TFLite, torch zip
        return "model"
    return None


def _not_a_data_set(p: Path, kind: str) -> DataError:
    return DataError(
        f"{p} is {'an' if kind == 'image' else 'a'} {kind} file, not a data set: "
        "pass the folder holding label.txt (or the label file)"
    )


def find_label_file(path: str | os.PathLike[str]) -> Path:
    """The label file of a data set given as a folder or as the label file itself.

    Raises:
        DataError: missing path, a folder without a label file, or an image / model file
            (or a model folder) given where a data set is expected.
    """
    p = Path(path)
    if p.is_file():
        kind = _file_kind(p)
        if kind is not None:
            raise _not_a_data_set(p, kind)
        return p
    if not p.exists():
        raise DataError(f"data set {p} does not exist: pass a folder holding label.txt")
    if not p.is_dir():
        raise DataError(f"{p} is not a file or folder: pass a folder holding label.txt")
    for name in LABEL_FILE_NAMES:
        if (p / name).is_file():
            return p / name
    if (p / "xcompress.json").is_file() or any(p.glob("*.onnx")) or any(p.glob("*.tflite")):
        raise DataError(
            f"{p} is a model folder, not a data set: pass the folder holding label.txt"
        )
    raise DataError(
        f"{p} has no label file ({', '.join(LABEL_FILE_NAMES)}): "
        "write one line per image as 'relative/path.jpg<TAB>label'"
    )


def _split_line(line: str, where: str) -> tuple[str, str]:
    rel, sep, label = line.partition("\t")
    if not sep or not rel.strip():
        raise DataError(
            f"{where}: expected 'relative/path.jpg<TAB>label', got {line[:60]!r}"
            " (fields must be separated by a TAB)"
        )
    return rel.strip(), label


def _infer_task(labels: Sequence[tuple[str, str]]) -> Task:
    first = labels[0][1].lstrip()
    if first.startswith("["):
        try:
            if isinstance(json.loads(first), list):
                return "det"
        except json.JSONDecodeError:
            pass
    if all(lab.strip() in CLS_LABELS for _, lab in labels):
        return "cls"
    return "rec"


def _is_det_label(label: str) -> bool:
    """A JSON list of objects (boxes), as det labels are; ``[]`` (a page without text) too."""
    text = label.strip()
    if not text.startswith("["):
        return False
    try:
        items = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(items, list) and all(isinstance(i, dict) for i in items)


def _check_task_fits(task: Task, labels: Sequence[str], where: str) -> None:
    """Refuse a set whose labels contradict ``task`` (asked for explicitly).

    Only clear cases are refused, so real sets with odd lines still get their per-line
    errors: det-looking means more than half the labels are JSON lists of boxes; cls-looking
    for rec means every label is ``0``/``180`` (from :data:`MIN_CLS_LOOKALIKE` samples on);
    rec-looking for det means no label starts with ``[``, for cls fewer than half are 0/180.
    """
    n = len(labels)
    det_like = sum(_is_det_label(lab) for lab in labels)
    cls_like = sum(lab.strip() in CLS_LABELS for lab in labels)
    looks: tuple[Task, str] | None = None
    if task != "det" and det_like * 2 > n:
        looks = ("det", "its labels are JSON lists of boxes")
    elif task == "rec" and cls_like == n and n >= MIN_CLS_LOOKALIKE:
        looks = ("cls", f"all {n} labels are 0 or 180")
    elif task == "det" and not any(lab.lstrip().startswith("[") for lab in labels):
        looks = (
            ("cls", "every label is 0 or 180")
            if cls_like == n
            else ("rec", "its labels are plain text, not JSON lists of boxes")
        )
    elif task == "cls" and cls_like * 2 < n:
        looks = ("rec", f"{n - cls_like} of {n} labels are text, not 0 or 180")
    if looks is not None:
        raise TaskMismatchError(where, task, *looks)


def _parse_points(raw: object, where: str) -> tuple[tuple[float, float], ...]:
    bad = DataError(f"{where}: 'points' must be a list of at least 3 [x, y] number pairs")
    if not isinstance(raw, list) or len(raw) < 3:
        raise bad
    pts = []
    for p in raw:
        if (
            not isinstance(p, list | tuple)
            or len(p) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in p)
        ):
            raise bad
        pts.append((float(p[0]), float(p[1])))
    return tuple(pts)


def _parse_det(label: str, where: str) -> tuple[TextBox, ...]:
    try:
        items = json.loads(label)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}: detection label is not valid JSON ({e.msg})") from None
    if not isinstance(items, list):
        raise DataError(f"{where}: detection label must be a JSON list of boxes")
    boxes = []
    for item in items:
        if not isinstance(item, dict) or "points" not in item:
            raise DataError(
                f"{where}: each box must be an object with 'points' and 'transcription'"
            )
        text = str(item.get("transcription", ""))
        boxes.append(
            TextBox(
                points=_parse_points(item["points"], where),
                text=text,
                ignore=text in IGNORE_TRANSCRIPTIONS,
            )
        )
    return tuple(boxes)


def _make_sample(task: Task, image: Path, label: str, where: str) -> Sample:
    if task == "det":
        return DetSample(image, _parse_det(label, where))
    if task == "cls":
        lab = label.strip()
        if lab not in CLS_LABELS:
            raise DataError(f"{where}: direction label must be 0 or 180, got {lab!r}")
        return ClsSample(image, lab)
    return RecSample(image, label.rstrip("\r\n"))


def load_dataset(
    path: str | os.PathLike[str],
    task: Task | None = None,
    *,
    image_root: str | os.PathLike[str] | None = None,
    check_images: bool = True,
) -> Dataset:
    """Read a PaddleOCR-format data set.

    Args:
        path: folder holding ``label.txt`` (or ``Label.txt`` / ``rec_gt.txt``), or a label file.
        task: ``"rec"``, ``"det"`` or ``"cls"``; inferred from the labels when None
            (a JSON list is det, only ``0``/``180`` is cls, anything else rec). When given,
            labels that clearly belong to another task are refused
            (:class:`TaskMismatchError`): a cls set asked for as rec would otherwise be scored.
        image_root: folder image paths are relative to; defaults to the label file's folder
            (or its parent, when that is where the first image is, as PPOCRLabel writes).
        check_images: check every image file exists (cheap: no decoding). Undecodable
            images are reported by :func:`read_image` when read.

    Returns:
        A :class:`Dataset` with absolute image paths.

    Raises:
        DataError: missing folder/label file, an image or model file instead of a data set,
            empty set, malformed line (``file:line``), bad JSON or points, missing images
            (the first one and how many), labels of another task than ``task``, a rec set
            whose labels are all empty.

    Example:
        >>> ds = load_dataset("data/det_val")   # doctest: +SKIP
        >>> ds.task, ds.samples[0].boxes[0].text  # doctest: +SKIP
        ('det', 'EXIT')
    """
    if task is not None and task not in TASKS:
        raise DataError(f"task must be rec, det or cls, not {task!r}")
    label_file = find_label_file(path)
    root = (Path(image_root) if image_root is not None else label_file.parent).absolute()
    text = _read_label_text(label_file)
    rows: list[tuple[int, str, str]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        rel, label = _split_line(line, f"{label_file}:{lineno}")
        rows.append((lineno, rel, label))
    if not rows:
        raise DataError(f"{label_file} has no samples: add lines 'relative/path.jpg<TAB>label'")
    first = rows[0][1]
    if image_root is None and not (root / first).exists() and (root.parent / first).exists():
        # PPOCRLabel keeps Label.txt inside the image folder but writes paths that start
        # with that folder's name, i.e. relative to its parent.
        root = root.parent
    if task is None:
        task = _infer_task([(r, lab) for _, r, lab in rows])
    else:
        _check_task_fits(task, [lab for _, _, lab in rows], str(path))
    samples = tuple(
        _make_sample(task, root / rel, label, f"{label_file}:{lineno}")
        for lineno, rel, label in rows
    )
    if task == "rec" and not any(s.text.strip() for s in samples):  # type: ignore[union-attr]
        raise DataError(
            f"every label in {label_file} is empty: write each image's text after the TAB"
        )
    if check_images:
        missing = [s.image for s in samples if not s.image.is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} of {len(samples)} images listed in {label_file} are missing, "
                f"first: {missing[0]} (paths are relative to {root})"
            )
    name = label_file.parent.name if label_file.name in LABEL_FILE_NAMES else label_file.stem
    return Dataset(task=task, root=root, samples=samples, name=name, label_file=label_file)


def _read_label_text(label_file: Path) -> str:
    try:
        return label_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{label_file}: not UTF-8 text (byte {e.start}); save it as UTF-8"
        ) from None
    except OSError as e:
        raise DataError(f"cannot read {label_file}: {e.strerror or e}") from None


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file to a BGR uint8 (H, W, 3) array.

    Reads the bytes with numpy and decodes them with ``cv2.imdecode``, because
    ``cv2.imread`` cannot open non-ASCII paths on every platform.

    Raises:
        DataError: the file is missing or cannot be decoded.
    """
    import cv2
    import numpy as np

    p = Path(path)
    try:
        buf = np.fromfile(p, dtype=np.uint8)
    except OSError as e:
        raise DataError(f"cannot read image {p}: {e.strerror}") from None
    if not buf.size:
        raise DataError(f"image {p} is empty (0 bytes); replace or remove it")
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(
            f"cannot decode image {p}: not a readable JPEG/PNG/BMP; replace or remove it"
        )
    return img


@dataclass(frozen=True)
class BadImage:
    """An image file that cannot be used, and why (``"missing"``, ``"truncated ..."``, ...)."""

    image: Path
    reason: str


def _pil_problem(data: bytes) -> str | None:
    """Why PIL cannot fully decode ``data``; None when it can or does not know the format.

    PIL is strict where OpenCV is not: OpenCV builds may return a truncated JPEG with its
    missing rows filled grey, PIL (with ``LOAD_TRUNCATED_IMAGES`` off, its default) raises.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning, EXIF warnings
            with Image.open(io.BytesIO(data)) as im:
                im.load()
    except (UnidentifiedImageError, Image.DecompressionBombError):
        return None  # OpenCV decides
    except Exception as e:  # noqa: BLE001  PIL raises OSError, SyntaxError, ValueError, ...
        msg = str(e).split("\n")[0]
        if isinstance(e, EOFError) or "truncated" in msg.lower():
            return "truncated (the file ends before the image data does)"
        return f"corrupt image data ({msg or type(e).__name__})"
    return None


def image_problem(path: str | os.PathLike[str]) -> str | None:
    """Why an image file cannot be used, or None when it decodes fully.

    Reasons: missing, a folder, unreadable, empty (0 bytes), not an image, truncated,
    corrupt. A file passes only if PIL decodes it strictly (when PIL knows the format) and
    OpenCV, which every command reads images with (:func:`read_image`), decodes it too.

    Example:
        >>> image_problem("data/rec_val/crops/000001.jpg")   # doctest: +SKIP
        'truncated (the file ends before the image data does)'
    """
    import cv2
    import numpy as np

    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        return "missing"
    except IsADirectoryError:
        return "a folder, not an image file"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if not data:
        return "empty file (0 bytes)"
    reason = _pil_problem(data)
    if reason is not None:
        return reason
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None:
        if data.startswith(_IMAGE_MAGIC) or data[:4] == b"RIFF":
            return "corrupt image data (OpenCV cannot decode it)"
        return "not an image file (no JPEG/PNG/BMP/WebP/TIFF data)"
    return None


def find_bad_images(
    images: Iterable[str | os.PathLike[str]],
    *,
    workers: int | None = None,
    advance: Callable[[int], None] | None = None,
) -> list[BadImage]:
    """Decode every image (in a thread pool) and return those that cannot be used, in order.

    Args:
        images: image paths.
        workers: decoding threads (default: the CPU count, at most 8). OpenCV and PIL
            release the GIL while decoding.
        advance: called with 1 after each image (e.g. a progress bar's advance).
    """
    from concurrent.futures import ThreadPoolExecutor

    paths = [Path(p) for p in images]
    pool = ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1))
    bad: list[BadImage] = []
    try:
        for p, reason in zip(paths, pool.map(image_problem, paths), strict=True):
            if reason is not None:
                bad.append(BadImage(p, reason))
            if advance is not None:
                advance(1)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: do not decode the rest
    return bad


# ----------------------------------------------------------------------------- writing


def _rel(image: Path, root: Path) -> str:
    """Image path as written in the label file: relative to ``root``, '/' separated."""
    p = Path(image)
    if p.is_absolute():
        try:
            p = p.relative_to(root.absolute())
        except ValueError:
            try:
                p = p.resolve().relative_to(root.resolve())
            except ValueError:
                raise DataError(f"image {image} is not inside the data set folder {root}") from None
    rel = p.as_posix()
    if "\t" in rel or "\n" in rel:
        raise DataError(f"image path {rel!r} contains a TAB or newline; rename the file")
    return rel


def _check_text(text: str, where: str) -> str:
    if "\n" in text or "\r" in text:
        raise DataError(f"label of {where} contains a newline; labels must be one line")
    return text


def _num(v: float) -> float | int:
    # Integral coordinates are written as ints (as PaddleOCR's own labels); others keep
    # two decimals, far below annotation precision, so files stay short and stable.
    r = round(float(v), 2)
    return int(r) if r.is_integer() else r


def _label_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p / "label.txt" if p.is_dir() or p.suffix == "" else p


def write_rec_labels(path: str | os.PathLike[str], samples: Iterable[RecSample]) -> Path:
    """Write a recognition ``label.txt`` atomically.

    Args:
        path: the label file, or a folder (``label.txt`` is written in it). Image paths are
            written relative to the label file's folder.
        samples: samples with absolute image paths inside that folder, or relative ones.

    Returns:
        The label file written.
    """
    dest = _label_path(path)
    root = dest.parent
    lines = [f"{_rel(s.image, root)}\t{_check_text(s.text, str(s.image))}\n" for s in samples]
    write_text(dest, "".join(lines))
    return dest


def write_det_labels(path: str | os.PathLike[str], samples: Iterable[DetSample]) -> Path:
    """Write a detection ``label.txt`` (PaddleOCR JSON boxes) atomically.

    See :func:`write_rec_labels` for ``path`` and image paths.

    Ignored boxes are written with the transcription ``###``.
    """
    dest = _label_path(path)
    root = dest.parent
    lines = []
    for s in samples:
        boxes = [
            {
                "transcription": "###" if b.ignore else _check_text(b.text, str(s.image)),
                "points": [[_num(x), _num(y)] for x, y in b.points],
            }
            for b in s.boxes
        ]
        lines.append(f"{_rel(s.image, root)}\t{json.dumps(boxes, ensure_ascii=False)}\n")
    write_text(dest, "".join(lines))
    return dest


def write_cls_labels(path: str | os.PathLike[str], samples: Iterable[ClsSample]) -> Path:
    """Write a direction-classification ``label.txt`` (``0`` / ``180``) atomically."""
    dest = _label_path(path)
    root = dest.parent
    lines = []
    for s in samples:
        if s.label not in CLS_LABELS:
            raise DataError(f"direction label of {s.image} must be 0 or 180, got {s.label!r}")
        lines.append(f"{_rel(s.image, root)}\t{s.label}\n")
    write_text(dest, "".join(lines))
    return dest


WRITERS = {"rec": write_rec_labels, "det": write_det_labels, "cls": write_cls_labels}


def write_labels(path: str | os.PathLike[str], task: Task, samples: Iterable[Sample]) -> Path:
    """Write labels of any task (dispatches to the per-task writer)."""
    return WRITERS[task](path, samples)  # type: ignore[operator]


# ----------------------------------------------------------------------------- charset


def _texts(dataset: Dataset) -> Iterator[str]:
    for s in dataset.samples:
        if isinstance(s, RecSample):
            yield s.text
        elif isinstance(s, DetSample):
            yield from (b.text for b in s.boxes if not b.ignore)


@dataclass(frozen=True)
class CharsetReport:
    """Characters in a data set's labels that a model's charset cannot output.

    Attributes:
        total_chars: characters in all checked labels.
        missing: character -> occurrences, most frequent first.
        lines_affected: labels containing at least one missing character.
        total_lines: labels checked.
        examples: up to 5 ``(image, label)`` pairs containing missing characters.
    """

    total_chars: int
    missing: dict[str, int]
    lines_affected: int
    total_lines: int
    examples: tuple[tuple[str, str], ...]

    @property
    def ok(self) -> bool:
        return not self.missing

    def summary(self) -> str:
        """One line naming the unsupported characters, e.g. for an error message."""
        if self.ok:
            return f"all {self.total_chars} label characters are in the charset"
        shown = " ".join(repr(c) for c in list(self.missing)[:12])
        more = f" and {len(self.missing) - 12} more" if len(self.missing) > 12 else ""
        return (
            f"{len(self.missing)} distinct characters ({sum(self.missing.values())} occurrences, "
            f"{self.lines_affected} of {self.total_lines} labels) are not in the model's charset: "
            f"{shown}{more}"
        )

    def raise_if_missing(self, what: str = "the model") -> None:
        """Raise a :class:`DataError` saying what to do when any character is unsupported."""
        if not self.ok:
            raise DataError(
                f"{self.summary()}; {what} can never output them: use a model whose charset "
                "covers them, or fix/drop those labels"
            )


def check_charset(dataset: Dataset, charset: Iterable[str]) -> CharsetReport:
    """Find label characters a recognizer with ``charset`` cannot produce.

    Args:
        dataset: a rec or det data set (det: non-ignored transcriptions).
        charset: the model's characters (a card's ``charset``, space included).

    Example:
        >>> ds = Dataset("rec", Path("."), (RecSample(Path("a.jpg"), "héllo"),))
        >>> check_charset(ds, "helo ").missing
        {'é': 1}
    """
    allowed = set(charset)
    missing: Counter[str] = Counter()
    total = affected = lines = 0
    examples: list[tuple[str, str]] = []
    sample_texts = (
        (str(s.image), t)
        for s in dataset.samples
        for t in (
            [s.text]
            if isinstance(s, RecSample)
            else [b.text for b in s.boxes if not b.ignore]
            if isinstance(s, DetSample)
            else []
        )
    )
    for image, text in sample_texts:
        lines += 1
        total += len(text)
        bad = [c for c in text if c not in allowed]
        if bad:
            affected += 1
            missing.update(bad)
            if len(examples) < 5:
                examples.append((image, text))
    return CharsetReport(
        total_chars=total,
        missing=dict(missing.most_common()),
        lines_affected=affected,
        total_lines=lines,
        examples=tuple(examples),
    )
