"""Every command's typical mistakes: one ``error:`` line, a non-zero exit, no traceback,
nothing half-written and nothing of the user's touched.

Each case builds what a user would have (tiny models, small data sets, a folder holding their
own ``important.txt``), runs the CLI in-process, and checks the invariant on the whole
temporary tree: after a refused command it is byte for byte what it was before.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tiny_models import (
    cls_set,
    det_set,
    not_ocr_classifier,
    not_ocr_conv,
    rec_set,
    tiny_det,
    tiny_rec,
)

from xcompress.card import ModelCard
from xcompress.cli.main import main
from xcompress.fsutil import OUTPUT_MARK

REPO = Path(__file__).resolve().parents[1]


class World:
    """What a user has lying around: models, data sets, their own files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rec = tiny_rec(self._dir("rec") / "model.onnx").path.parent  # folder with card
        bare = self._dir("bare")
        self.bare_rec = tiny_rec(bare / "inference.onnx", card=False).path  # no card, no meta
        (bare / "keys.txt").write_text("a\nb\nc\n", encoding="utf-8")  # + space = 4 + blank
        (bare / "short.txt").write_text("a\nb\n", encoding="utf-8")
        self.det = tiny_det(self._dir("det") / "det.onnx")
        self.det_fixed = tiny_det(self._dir("detfixed") / "det.onnx", fixed=64)
        ModelCard(name="tinydet", task="det", file="det.onnx").save(self.det_fixed.parent)
        self.not_ocr = not_ocr_conv(self._dir("other") / "seg.onnx")
        self.classifier = not_ocr_classifier(self._dir("other") / "resnet.onnx")
        self.rec_set = rec_set(root / "data" / "rec")
        self.cls_set = cls_set(root / "data" / "cls")
        self.det_set = det_set(root / "data" / "det")
        self.bad_set = rec_set(root / "data" / "bad", n=4)
        (self.bad_set / "1.png").write_bytes(b"")  # zero bytes
        data = (self.bad_set / "2.png").read_bytes()
        (self.bad_set / "2.png").write_bytes(data[: len(data) // 2])  # truncated
        self.mine = self._dir("mine")  # a user's folder: must never lose a byte
        (self.mine / "important.txt").write_text("do not delete", encoding="utf-8")
        self.file = root / "notes.txt"
        self.file.write_text("a file, not a folder", encoding="utf-8")
        self.quantized = self._dir("int8")  # looks like an earlier quantize output
        (self.quantized / "model.int8.onnx").write_bytes(b"int8 weights")
        (self.quantized / OUTPUT_MARK).write_text(
            json.dumps({"command": "quantize", "files": ["model.int8.onnx"]}), encoding="utf-8")
        self.fake_pt = root / "fake.pt"
        self.fake_pt.write_bytes(b"PK\x03\x04 this is not a checkpoint")
        run = self._dir("run")  # a training run made with the digits charset
        (run / OUTPUT_MARK).write_text(
            json.dumps({"command": "train", "files": ["last.pt", "train_config.json"]}))
        cfg = {"model": "crnn", "charset": "0123456789", "steps": 10, "out": str(run)}
        (run / "train_config.json").write_text(json.dumps(cfg), encoding="utf-8")
        (run / "last.pt").write_bytes(b"checkpoint bytes")
        self.run = run
        self.bad_yaml = root / "bad.yaml"
        self.bad_yaml.write_text("steps: [unclosed\n", encoding="utf-8")
        self.crnn = _crnn_checkpoint(self._dir("crnn") / "model.pt")  # a native model
        self.deep_space = root / "deep.yaml"  # deeper than the trained CRNN
        self.deep_space.write_text("arch: crnn\nstages: 2\nstages_at: stages\n"
                                   "choices: {depths: [1, 3]}\n", encoding="utf-8")

    def _dir(self, name: str) -> Path:
        d = self.root / name
        d.mkdir(exist_ok=True)
        return d


def _crnn_checkpoint(path: Path) -> Path:
    from xcompress.card import default_postprocess, default_preprocess
    from xcompress.models import build_model
    from xcompress.models.checkpoint import save_checkpoint

    model = build_model("crnn", {"stages": [{"channels": 8}, {"channels": 16}], "hidden": 8,
                                 "num_classes": 11})  # fmt: skip
    pre = default_preprocess("rec").model_copy(update={"image_shape": (3, 32, 128)})
    card = ModelCard(name="crnn", task="rec", file="model.pt", format="torch", preprocess=pre,
                     postprocess=default_postprocess("rec"), charset=list("0123456789"))
    return save_checkpoint(path, model, card)


# (case id, argv builder, words the error line must contain)
Case = tuple[str, Callable[[World], list[str]], tuple[str, ...]]
CASES: list[Case] = [
    # -- output folders and files ---------------------------------------------------------
    ("quantize-out-nonempty", lambda w: ["quantize", str(w.rec), "--calib", str(w.rec_set),
                                         "--out", str(w.mine)], ("not empty", "--force")),
    ("quantize-out-file", lambda w: ["quantize", str(w.rec), "--out", str(w.file)],
     ("is a file",)),
    ("quantize-out-readonly", lambda w: ["quantize", str(w.rec), "--out", "/proc/xc-out"],
     ("not writable",)),
    ("quantize-out-dot", lambda w: ["quantize", str(w.rec), "--out", "."], ("not empty",)),
    ("export-out-file", lambda w: ["export", str(w.rec), "--out", str(w.file)], ("is a file",)),
    ("export-over-quantize", lambda w: ["export", str(w.rec), "--to", "tflite", "--out",
                                        str(w.quantized)], ("xcompress quantize", "--force")),
    ("export-unknown-format", lambda w: ["export", str(w.rec), "--to", "coreml", "--out",
                                         str(w.root / "x")], ("no exporter",)),
    ("import-out-folder", lambda w: ["import", str(w.rec), "--out", str(w.mine)],
     ("must end in .pt",)),
    ("zoo-pull-nonempty", lambda w: ["zoo", "pull", "ppocr-v4-rec", "--out", str(w.mine)],
     ("not empty",)),
    ("zoo-pull-unknown", lambda w: ["zoo", "pull", "ppocr-v9", "--out", str(w.root / "z")],
     ("ppocr-v9",)),
    ("run-nonempty", lambda w: ["run", str(REPO / "recipes" / "demo.yaml"), "--out",
                                str(w.mine)], ("not empty",)),
    ("run-bad-yaml", lambda w: ["run", str(w.bad_yaml), "--out", str(w.root / "r")], ()),
    ("run-missing-recipe", lambda w: ["run", str(w.root / "nope.yaml"), "--out",
                                      str(w.root / "r")], ()),
    ("eval-json-folder", lambda w: ["eval", str(w.rec), "--data", str(w.rec_set), "--json",
                                    str(w.mine)], ("is a folder",)),
    ("profile-json-folder", lambda w: ["profile", str(w.rec), "--runs", "1", "--json",
                                       str(w.mine)], ("is a folder",)),
    ("synth-out-readonly", lambda w: ["data", "synth", "rec", "--out", "/proc/xc-data",
                                      "--count", "2"], ("writable",)),
    ("synth-out-nonempty", lambda w: ["data", "synth", "rec", "--out", str(w.mine), "--count",
                                      "2"], ("not empty",)),
    ("synth-charset-folder", lambda w: ["data", "synth", "rec", "--out", str(w.root / "s"),
                                        "--charset", str(w.mine)], ("folder",)),
    # -- training -------------------------------------------------------------------------
    ("train-negative-lr", lambda w: ["train", "crnn", "--charset", "digits", "--lr", "-1",
                                     "--out", str(w.root / "t")], ("--lr",)),
    ("train-negative-minutes", lambda w: ["train", "crnn", "--charset", "digits", "--minutes",
                                          "-1", "--out", str(w.root / "t")], ("--minutes",)),
    ("train-no-charset", lambda w: ["train", "crnn", "--out", str(w.root / "t")],
     ("--charset",)),
    ("train-missing-data", lambda w: ["train", "crnn", "--charset", "digits", "--data",
                                      str(w.root / "nodata"), "--out", str(w.root / "t")], ()),
    ("train-resume-other-charset", lambda w: ["train", "crnn", "--charset", "alnum", "--steps",
                                              "10", "--out", str(w.run)], ("charset",)),
    ("train-into-user-folder", lambda w: ["train", "crnn", "--charset", "digits", "--out",
                                          str(w.mine)], ("not empty",)),
    # -- models that are not what the task says --------------------------------------------
    ("eval-not-ocr-as-det", lambda w: ["eval", str(w.not_ocr), "--task", "det", "--data",
                                       str(w.det_set)], ("not a PP-OCR det model",)),
    ("quantize-not-ocr-as-det", lambda w: ["quantize", str(w.not_ocr), "--task", "det",
                                           "--out", str(w.root / "q")], ("not a PP-OCR det",)),
    ("eval-classifier-as-cls", lambda w: ["eval", str(w.classifier), "--task", "cls", "--data",
                                          str(w.cls_set)], ("not a PP-OCR cls model",)),
    ("eval-classifier-as-det", lambda w: ["eval", str(w.classifier), "--task", "det",
                                          "--data", str(w.det_set)], ("not a PP-OCR det",)),
    ("eval-fixed-shape-det", lambda w: ["eval", str(w.det_fixed), "--task", "det", "--data",
                                        str(w.det_set)], ("cannot run an input of shape",)),
    ("profile-not-ocr-as-rec", lambda w: ["profile", str(w.not_ocr), "--task", "rec"],
     ("not a PP-OCR rec",)),
    ("profile-vs-other-task", lambda w: ["profile", str(w.rec), "--vs", str(w.det_fixed.parent),
                                         "--runs", "1"], ("det model", "rec model")),
    ("eval-bare-rec-no-charset", lambda w: ["eval", str(w.bare_rec), "--task", "rec",
                                            "--data", str(w.rec_set)], ("--charset",)),
    ("eval-bare-rec-short-dict", lambda w: ["eval", str(w.bare_rec), "--task", "rec",
                                            "--charset", str(w.bare_rec.parent / "short.txt"),
                                            "--data", str(w.rec_set)], ("outputs 5 classes",)),
    ("eval-bare-no-task", lambda w: ["eval", str(w.bare_rec), "--data", str(w.rec_set)],
     ("--task",)),
    ("export-fake-checkpoint", lambda w: ["export", str(w.fake_pt), "--out", str(w.root / "x")],
     ("not an xcompress checkpoint",)),
    ("card-short-dict", lambda w: ["card", str(w.bare_rec), "--task", "rec", "--charset",
                                   str(w.bare_rec.parent / "short.txt"), "--out",
                                   str(w.root / "c")], ("outputs 5 classes",)),
    ("card-wrong-task", lambda w: ["card", str(w.bare_rec), "--task", "det", "--out",
                                   str(w.root / "c")], ("not a PP-OCR det",)),
    ("card-missing-model", lambda w: ["card", str(w.root / "nope.onnx"), "--task", "rec"],
     ("not a file",)),
    # -- data sets that do not fit --------------------------------------------------------
    ("eval-cls-set-on-rec", lambda w: ["eval", str(w.rec), "--data", str(w.cls_set)],
     ("cls set",)),
    ("quantize-cls-set-as-eval", lambda w: ["quantize", str(w.rec), "--calib", str(w.rec_set),
                                            "--eval", str(w.cls_set), "--out",
                                            str(w.root / "q")], ("cls",)),
    ("eval-bad-images", lambda w: ["eval", str(w.rec), "--data", str(w.bad_set)],
     ("--skip-bad",)),
    ("check-bad-images", lambda w: ["data", "check", str(w.bad_set)], ("2",)),
    ("check-image-as-data", lambda w: ["data", "check", str(w.rec_set / "0.png")],
     ("image",)),
    ("check-model-as-data", lambda w: ["data", "check", str(w.rec / "model.onnx")],
     ("model",)),
    ("eval-missing-data", lambda w: ["eval", str(w.rec), "--data", str(w.root / "nodata")],
     ("does not exist",)),
    # -- options --------------------------------------------------------------------------
    ("quantize-metric-for-other-task", lambda w: ["quantize", str(w.rec), "--metric", "hmean",
                                                  "--calib", str(w.rec_set), "--out",
                                                  str(w.root / "q")], ("--metric",)),
    ("quantize-drop-out-of-range", lambda w: ["quantize", str(w.rec), "--max-drop", "2",
                                              "--out", str(w.root / "q")], ("--max-drop",)),
    ("quantize-missing-out", lambda w: ["quantize", str(w.rec)], ("--out",)),
    ("quantize-qat-option-without-qat", lambda w: ["quantize", str(w.rec), "--data", "synth",
                                                   "--out", str(w.root / "q")], ("--qat",)),
    ("quantize-qat-of-a-detector", lambda w: ["quantize", str(w.det), "--task", "det", "--qat",
                                              "--out", str(w.root / "q")],
     ("--qat", "recognizers")),
    ("eval-threads-zero", lambda w: ["eval", str(w.rec), "--data", str(w.rec_set), "--threads",
                                     "0"], ("--threads",)),
    ("task-bogus", lambda w: ["eval", str(w.bare_rec), "--task", "ocr", "--data",
                              str(w.rec_set)], ("--task",)),
    ("profile-bad-shape", lambda w: ["profile", str(w.rec), "--shape", "1x3xfoo"],
     ("bad shape",)),
    ("unknown-command", lambda w: ["frobnicate"], ("frobnicate",)),
    ("unknown-option", lambda w: ["eval", str(w.rec), "--data", str(w.rec_set), "--colour"],
     ("--colour",)),
    ("board-unknown", lambda w: ["board", "setup", "no-such-board"], ("no-such-board",)),
    ("board-calibrate-misfit", lambda w: ["board", "calibrate", "host", "--model", str(w.crnn),
                                          "--space", str(w.deep_space)], ("does not fit", "depth")),
    # -- search ---------------------------------------------------------------------------------
    ("search-fake-checkpoint", lambda w: ["search", str(w.fake_pt), "--out", str(w.root / "s")],
     ("not an xcompress checkpoint",)),
    ("search-bad-space", lambda w: ["search", str(w.crnn), "--space", str(w.bad_yaml), "--out",
                                    str(w.root / "s")], ("not a readable YAML",)),
    ("search-space-misfit", lambda w: ["search", str(w.crnn), "--space", str(w.deep_space),
                                       "--out", str(w.root / "s")], ("does not fit", "depth 3")),
    ("search-out-nonempty", lambda w: ["search", str(w.crnn), "--out", str(w.mine)],
     ("not empty", "--force")),
    ("search-bad-sampler", lambda w: ["search", str(w.crnn), "--sampler", "random", "--out",
                                      str(w.root / "s")], ("--sampler",)),
    ("search-space-of-other-arch",
     lambda w: ["search", str(w.crnn), "--space", str(REPO / "search_spaces" / "ppocrv4-rec.yaml"),
                "--out", str(w.root / "s")], ("space for ppocrv4-rec",)),
    # -- prune ----------------------------------------------------------------------------------
    ("data-crops-from-rec-set", lambda w: ["data", "crops", str(w.rec_set), "--det", str(w.det),
                                           "--out", str(w.root / "c")], ("det",)),
    ("data-crops-out-is-mine", lambda w: ["data", "crops", str(w.det_set), "--det", str(w.det),
                                          "--out", str(w.mine)], ("not empty",)),
    ("report-not-a-run", lambda w: ["report", str(w.mine)], ("not a run folder",)),
    ("report-out-is-mine", lambda w: ["report", str(w.mine), "--out", str(w.mine)],
     ("not empty",)),
    ("report-missing-baseline", lambda w: ["report", str(w.mine), "--baseline",
                                           str(w.root / "none.yaml")], ("baseline not found",)),
    ("eval-system-wrong-order", lambda w: ["eval", "--system", f"{w.rec},{w.det}", "--data",
                                           str(w.det_set)], ("not det",)),
    ("eval-system-rec-set", lambda w: ["eval", "--system", f"{w.det},{w.rec}", "--data",
                                       str(w.rec_set)], ("pages",)),
    ("prune-nothing-to-do", lambda w: ["prune", str(w.crnn), "--out", str(w.root / "p")],
     ("nothing to do", "--target-macs")),
    ("prune-fake-checkpoint", lambda w: ["prune", str(w.fake_pt), "--target-macs", "0.5",
                                         "--out", str(w.root / "p")],
     ("not an xcompress checkpoint",)),
    ("prune-two-targets", lambda w: ["prune", str(w.crnn), "--target-macs", "0.5",
                                     "--target-latency-ratio", "0.5", "--out", str(w.root / "p")],
     ("not both",)),
    ("prune-unknown-importance", lambda w: ["prune", str(w.crnn), "--target-macs", "0.5",
                                            "--importance", "magic", "--out", str(w.root / "p")],
     ("unknown criterion",)),
    ("prune-unknown-damage", lambda w: ["prune", str(w.crnn), "--target-macs", "0.5", "--data",
                                        "synth:en:blurry", "--out", str(w.root / "p")],
     ("synth:en:blurry", "unknown damage")),
    ("prune-bad-keep-charset", lambda w: ["prune", str(w.crnn), "--keep-charset", "klingon",
                                          "--out", str(w.root / "p")],
     ("not a file", "digits")),
]


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            if p.is_file() else "dir" for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("world"))


@pytest.mark.parametrize(("argv", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_mistake_is_one_line_and_changes_nothing(world, argv, words, capsys, monkeypatch):
    monkeypatch.chdir(world.mine)  # `--out .` is the user's own folder
    before = _snapshot(world.root)
    rc = main(argv(world))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc != 0
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "weights_only" not in err
    for word in words:
        assert word in lines[0], lines[0]
    assert _snapshot(world.root) == before  # nothing written, nothing removed, no temp left


def test_every_command_has_a_mistake_case():
    """A new command gets its mistakes listed here too."""
    from xcompress.cli.main import _COMMAND_MODULES

    covered = {argv.split("-")[0] for argv, *_ in CASES}
    aliases = {"zoo": "zoo", "data": "synth", "models": "train", "run": "run", "board": "board"}
    for mod in _COMMAND_MODULES:
        assert aliases.get(mod, mod) in covered, f"no mistake case for `xcompress {mod}`"


def test_traceback_free_in_a_real_process(world):
    """The console script itself (not just main()) prints one line and exits non-zero."""
    proc = subprocess.run(
        [sys.executable, "-m", "xcompress.cli.main", "quantize", str(world.rec), "--out",
         str(world.file)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")


# -- the output policy itself -------------------------------------------------------------


def test_force_keeps_the_users_files(tmp_path):
    from xcompress.fsutil import atomic_dir, prepare_output_dir

    out = tmp_path / "out"
    out.mkdir()
    (out / "important.txt").write_text("mine")
    prepare_output_dir(out, "quantize", force=True)
    with atomic_dir(out, command="quantize") as tmp:
        (tmp / "model.int8.onnx").write_text("v1")
        (tmp / "old.json").write_text("v1")
    with atomic_dir(out, command="quantize") as tmp:  # a re-run writes fewer files
        (tmp / "model.int8.onnx").write_text("v2")
    names = sorted(p.name for p in out.iterdir())
    assert names == [OUTPUT_MARK, "important.txt", "model.int8.onnx"]
    assert (out / "important.txt").read_text() == "mine"
    assert (out / "model.int8.onnx").read_text() == "v2"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left


def test_rerun_of_the_same_command_is_allowed_and_replaces_its_own_output(tmp_path):
    from xcompress.fsutil import atomic_dir, prepare_output_dir

    out = tmp_path / "out"
    with atomic_dir(prepare_output_dir(out, "export"), command="export") as tmp:
        (tmp / "a").write_text("1")
    with atomic_dir(prepare_output_dir(out, "export"), command="export") as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARK, "b"]
    from xcompress.errors import XCompressError

    with pytest.raises(XCompressError, match="output of `xcompress export`"):
        prepare_output_dir(out, "quantize")


def test_a_failed_write_leaves_the_folder_as_it_was(tmp_path):
    from xcompress.fsutil import atomic_dir

    out = tmp_path / "out"
    with atomic_dir(out, command="export") as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(out, command="export") as tmp:
        (tmp / "a").write_text("half")
        raise RuntimeError("crash mid-write")
    assert (out / "a").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_readme_never_points_two_commands_at_one_folder():
    """Following the README in order must not make one command overwrite another's output."""
    owners: dict[str, str] = {}
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^\s*(?:\$ )?xcompress ([a-z]+(?: [a-z]+)?)\b.*?--out (\S+)", line)
        if not m:
            continue
        if i + 1 < len(lines) and lines[i + 1].startswith("error: "):
            continue  # an example of a refused command: it writes nothing
        command = m.group(1).split()[0]
        if command in ("zoo", "data"):
            command = m.group(1)
        out = m.group(2)
        assert owners.setdefault(out, command) == command, (
            f"README writes {out} with `xcompress {owners[out]}` and `xcompress {command}`")


# -- help text ----------------------------------------------------------------------------


def _commands():
    from xcompress.cli.main import _command

    def walk(cmd, path):
        yield path, cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, [*path, name])

    return list(walk(_command(), []))


def test_every_option_is_described():
    missing = [f"xcompress {' '.join(path)} {p.opts or p.name}"
               for path, cmd in _commands() for p in cmd.params if not getattr(p, "help", None)]
    assert not missing


@pytest.mark.parametrize("path", [p for p, _ in _commands()], ids=lambda p: " ".join(p) or "root")
def test_help_is_plain(path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main([*path, "-h"]) == 0
    out = capsys.readouterr().out
    assert "Usage:" in out
    assert not re.search(r"<(bool|str|path|int|float|list\[)", out, re.I), out


def test_version(capsys):
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"xcompress {version('xcompress')}"


def test_out_dot_rerun_keeps_the_working_directory(tmp_path, monkeypatch):
    """``--out .`` twice: the second run replaces its own files in place; the folder the
    user stands in is never renamed away."""
    from xcompress.fsutil import atomic_dir, prepare_output_dir

    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.chdir(run)
    for version in ("1", "2"):
        with atomic_dir(prepare_output_dir(".", "export"), command="export") as tmp:
            (tmp / "model.onnx").write_text(version)
    assert Path.cwd() == run and run.is_dir()
    assert (run / "model.onnx").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no temp or old copy left


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    """SIGTERM mid-command (a CI time-out, `kill`): one line, exit 143, no temporary folder left
    in TMPDIR and no output folder. Python's default ended the process on the spot and left
    quantize's scratch folder behind."""
    import os
    import signal
    import time

    (tmp_path / "rec").mkdir()
    model = tiny_rec(tmp_path / "rec" / "model.onnx").path.parent
    calib = rec_set(tmp_path / "calib")
    tmp, out = tmp_path / "tmp", tmp_path / "out"
    tmp.mkdir()
    # the command blocks inside its work (after its scratch folder exists) until signalled
    script = (
        "import sys, time\n"
        "import xcompress.quantize.api as api\n"
        "def blocked(*a, **k):\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(120)\n"
        "api.time_plans = blocked\n"
        "from xcompress.cli.main import main\n"
        f"sys.exit(main(['quantize', {str(model)!r}, '--calib', {str(calib)!r}, "
        f"'--out', {str(out)!r}]))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "TMPDIR": str(tmp)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert any(p.name.startswith("xcompress-quantize.") for p in tmp.iterdir())
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert time.monotonic() - t0 < 30
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == (
        "error: terminated (SIGTERM); re-run the same command to resume")
    # no scratch folder left (a library's own session-id file may stay: not a folder)
    assert [p.name for p in tmp.iterdir() if p.is_dir()] == []
    assert not out.exists() or not any(out.iterdir())
