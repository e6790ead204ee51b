"""``xcompress data``: synthetic data sets and checks of PaddleOCR-format data.

Examples:
    xcompress data synth rec --out data/rec_synth --count 300 --seed 0
    xcompress data synth det --out data/det_synth --count 50 --lang mix
    xcompress data synth cls --out data/cls_synth --count 200
    xcompress data check data/rec_synth --model ppocr-v4-rec
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from xcompress.data import BadImage, Dataset

data_app = typer.Typer(
    name="data",
    help="Synthetic OCR data and checks of PaddleOCR-format data sets.",
    no_args_is_help=True,
)
synth_app = typer.Typer(
    name="synth",
    help="Generate a deterministic synthetic data set (same arguments, same bytes).",
    no_args_is_help=True,
)
data_app.add_typer(synth_app, name="synth")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Folder to create (must be new/empty).")]
# --count is checked by SynthConfig (one error line), not by typer (a usage box).
CountOpt = Annotated[int, typer.Option("--count", "-n", help="Number of images (at least 1).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Base seed; same seed, same data.")]
LangOpt = Annotated[
    str, typer.Option("--lang", help="Text language: en, zh, zh-wide (more characters) or mix.")
]
ModelOpt = Annotated[
    str,
    typer.Option("--model", help="Zoo name or model folder whose charset labels must fit."),
]
CharsetOpt = Annotated[
    Path | None,
    typer.Option("--charset", help="PaddleOCR dict file (one char per line); overrides --model."),
]
AugmentOpt = Annotated[
    str,
    typer.Option("--augment", help="Damage preset: default, photo (scans and phone photos: "
                 "faint ink, resampled text, blur, noise, JPEG 20-75; what quantize calibrates "
                 "on) or none."),
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Write into a non-empty --out (other files are kept).")
]
_TASKS = ("rec", "det", "cls")


def _charset(model: str, charset: Path | None) -> tuple[str, ...] | None:
    from xcompress.data.charset import charset_from_file, charset_from_model

    return charset_from_file(charset) if charset is not None else charset_from_model(model)


def _run_synth(
    task: str,
    out: Path,
    count: int,
    seed: int,
    lang: str,
    model: str,
    charset: Path | None,
    force: bool,
    augment: str = "default",
) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from xcompress.data.synth import SynthConfig, generate
    from xcompress.data.synth.augment import augment_preset
    from xcompress.data.synth.generator import SYNTH_COMMAND
    from xcompress.fsutil import prepare_output_dir

    # Refuse a bad --out now, before a model is pulled for its charset or images are drawn.
    prepare_output_dir(out, SYNTH_COMMAND, force=force)
    cfg = SynthConfig(
        task=task,
        count=count,
        seed=seed,
        lang=lang,  # type: ignore[arg-type]
        charset=_charset(model, charset),
        augment=augment_preset(augment),
    )
    console = Console(stderr=True)
    if sys.stderr.isatty():
        columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console, transient=True) as bar:
            job = bar.add_task(f"synth {task}", total=count)
            ds = generate(cfg, out, force=force, progress=lambda n: bar.advance(job, n))
    else:
        ds = generate(cfg, out, force=force)
    what = "images" if task == "det" else "lines"
    src = str(charset) if charset is not None else model
    print(f"wrote {len(ds)} {what} ({lang}, seed {seed}, charset of {src}) to {out}/label.txt")


@synth_app.command("rec")
def synth_rec(
    out: OutOpt,
    count: CountOpt = 300,
    seed: SeedOpt = 0,
    lang: LangOpt = "en",
    model: ModelOpt = "ppocr-v4-rec",
    charset: CharsetOpt = None,
    force: ForceOpt = False,
    augment: AugmentOpt = "default",
) -> None:
    """Text-line crops (24-64 px high) with labels, like a detector's crops of real text."""
    _run_synth("rec", out, count, seed, lang, model, charset, force, augment)


@synth_app.command("det")
def synth_det(
    out: OutOpt,
    count: CountOpt = 50,
    seed: SeedOpt = 0,
    lang: LangOpt = "en",
    model: ModelOpt = "ppocr-v4-rec",
    charset: CharsetOpt = None,
    force: ForceOpt = False,
    augment: AugmentOpt = "default",
) -> None:
    """Scenes (640x480 to 960x720) with 3-12 text lines and their 4-point boxes."""
    _run_synth("det", out, count, seed, lang, model, charset, force, augment)


@synth_app.command("cls")
def synth_cls(
    out: OutOpt,
    count: CountOpt = 300,
    seed: SeedOpt = 0,
    lang: LangOpt = "en",
    model: ModelOpt = "ppocr-v4-rec",
    charset: CharsetOpt = None,
    force: ForceOpt = False,
    augment: AugmentOpt = "default",
) -> None:
    """Text-line crops for direction classifiers, half upside down (labels 0 / 180)."""
    _run_synth("cls", out, count, seed, lang, model, charset, force, augment)


@data_app.command("crops")
def crops(
    pages: Annotated[Path, typer.Argument(help="Detection set (label.txt with transcriptions).")],
    out: Annotated[Path, typer.Option("--out", help="Recognition set to write.")],
    det: Annotated[str, typer.Option("--det", help="Detector whose boxes cut the lines.")] = (
        "ppocr-v4-det"),
    iou: Annotated[float, typer.Option("--iou", help="Box / ground-truth match.")] = 0.5,
    force: ForceOpt = False,
) -> None:
    """Cut recognition lines from detection pages with a detector's boxes, as the OCR system
    does: calibration and budget data for a recognizer that runs inside a system.

    Example: xcompress data crops data/pages --det ppocr-v4-det --out data/rec-crops
    """
    from xcompress.data.crops import cut_crops
    from xcompress.fsutil import prepare_output_dir

    prepare_output_dir(out, "data-crops", force=force)
    rep = cut_crops(pages, det, out, iou=iou, command="data-crops")
    print(f"{out}: {rep.lines} lines cut from {rep.pages} pages ({rep.boxes} boxes found, "
          f"{rep.boxes - rep.lines} matched no transcription)")


@data_app.command("check")
def check(
    path: Annotated[Path, typer.Argument(help="Data set folder (with label.txt) or label file.")],
    model: Annotated[
        str | None, typer.Option("--model", help="Check labels against this model's charset.")
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="rec, det or cls (default: infer).")
    ] = None,
) -> None:
    """Read a data set, decode every image, and (with --model) check the labels' characters.

    Prints one line per unusable image (missing, empty, truncated, not an image) and fails
    if there is any.
    """
    from xcompress.data import check_charset, load_dataset
    from xcompress.data.charset import charset_from_model
    from xcompress.errors import DataError

    if task not in (None, *_TASKS):
        raise DataError(f"--task must be rec, det or cls, not {task!r}")
    # Missing images are reported with the other bad files, one line each.
    ds = load_dataset(path, task, check_images=False)  # type: ignore[arg-type]
    chars = charset_from_model(model) if model is not None else None  # bad --model: fail now
    print(f"{ds.name}: {ds.task}, {len(ds)} samples, labels in {ds.label_file}")
    bad = _bad_images(ds)
    for b in bad:
        print(f"{b.image}: {b.reason}")
    report = None
    if model is not None:
        if chars is None:
            print(f"{model} has no charset: nothing to check")
        else:
            report = check_charset(ds, chars)
            print(report.summary())
    if bad:
        missing = sum(b.reason == "missing" for b in bad)
        where = f" (paths are relative to {ds.root})" if missing else ""
        raise DataError(
            f"{len(bad)} of {len(ds)} images in {ds.label_file} cannot be used{where}: "
            "replace them or remove their lines, or pass --skip-bad to xcompress eval"
        )
    if report is not None:
        report.raise_if_missing(model or "the model")


def _bad_images(ds: Dataset) -> list[BadImage]:
    """Decode every image of ``ds`` in parallel; a transient progress bar on a TTY only."""
    from xcompress.data import find_bad_images

    images = [s.image for s in ds.samples]
    if not sys.stderr.isatty():
        return find_bad_images(images)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        job = bar.add_task("check images", total=len(images))
        return find_bad_images(images, advance=lambda n: bar.advance(job, n))
