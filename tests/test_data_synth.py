"""Synthetic data: byte-level determinism, charset fitting, exact det boxes, and the CLI.

Uses the system DejaVu fonts and a tiny hand-made charset, so no network or zoo is needed.
"""

from __future__ import annotations

import string
from pathlib import Path

import cv2
import numpy as np
import pytest

from xcompress.data import load_dataset, read_image
from xcompress.data.synth import AugmentConfig, SynthConfig, TextPicker, generate, make_det_scene
from xcompress.data.synth.corpus import corpus, draw_text, fit_text, zh_words
from xcompress.data.synth.fonts import FontSpec
from xcompress.errors import DataError
from xcompress.fsutil import sha256_file
from xcompress.train.tasks import expand_synth

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
FONTS = tuple(DEJAVU / f for f in ("DejaVuSans.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf"))
pytestmark = pytest.mark.skipif(
    not all(f.is_file() for f in FONTS), reason="DejaVu fonts not installed"
)

# Digits, a few letters and punctuation: enough for numbers, dates, codes and short words.
CHARSET = tuple("0123456789abcdeilnorstAEINOST-:./ ")


def _cfg(task: str, count: int, seed: int = 0, **kw) -> SynthConfig:
    return SynthConfig(task=task, count=count, seed=seed, charset=CHARSET, fonts=FONTS, **kw)


def _hashes(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*.*"))}


@pytest.mark.parametrize(("task", "count"), [("rec", 8), ("det", 2)])
def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, task: str, count: int) -> None:
    a = _hashes(generate(_cfg(task, count, seed=3), tmp_path / "a").root)
    b = _hashes(generate(_cfg(task, count, seed=3), tmp_path / "b").root)
    c = _hashes(generate(_cfg(task, count, seed=4), tmp_path / "c").root)
    assert "label.txt" in a and f"images/{count - 1:06d}.jpg" in a
    assert a == b
    assert a["label.txt"] != c["label.txt"]
    differing = [k for k in a if k.startswith("images/") and a[k] != c[k]]
    assert len(differing) == count


def test_rec_labels_fit_charset_and_crop_heights(tmp_path: Path) -> None:
    ds = generate(_cfg("rec", 24), tmp_path / "rec")
    assert load_dataset(tmp_path / "rec") == ds
    allowed = set(CHARSET)
    for s in ds.samples:
        assert s.text and s.text == s.text.strip()
        assert set(s.text) <= allowed, s.text
        img = read_image(s.image)
        assert 24 <= img.shape[0] <= 64
        assert img.shape[1] >= 8


def test_cls_half_flipped(tmp_path: Path) -> None:
    ds = generate(_cfg("cls", 16, seed=2), tmp_path / "cls")
    assert load_dataset(tmp_path / "cls") == ds
    assert ds.task == "cls"
    labels = [s.label for s in ds.samples]
    assert set(labels) == {"0", "180"}
    assert 3 <= labels.count("180") <= 13


def test_fit_text_keeps_whole_tokens() -> None:
    assert fit_text("Total: 12.50 EUR", set("Total:12.50 ")) == "Total: 12.50"
    assert fit_text("合计 12元", set("合计12 ")) == "合计 12"
    assert fit_text("xyz", set("abc")) == ""


def test_chinese_text_covers_far_more_than_the_phrase_corpus() -> None:
    """The packaged phrases have ~420 distinct characters; a model distilled or calibrated on
    them never sees most of the charset. The zh-wide mix (the training data of distillation)
    must reach well beyond them."""
    rng = np.random.default_rng(0)
    phrases = set("".join(corpus("zh")))
    drawn = [zh_words(rng) for _ in range(2000)]
    chars = {c for t in drawn for c in t if ord(c) > 0x2E7F} - set("，、。：")
    assert all(2 <= len(t) for t in drawn)
    assert len(chars) > 1500
    assert len(chars - phrases) > 1000
    mix = {c for _ in range(2000) for c in draw_text(rng, "zh-wide")}
    assert len(mix - phrases) > 500
    # bare synth data of prune / QAT for a bilingual charset: both scripts, Chinese the wide mix
    bilingual = [*string.printable, *phrases]
    assert expand_synth(["synth", "x/"], bilingual) == ["synth:en", "synth:zh-wide", "x/"]


def test_picker_refuses_charset_without_drawable_chars() -> None:
    with pytest.raises(DataError, match="share no drawable character"):
        TextPicker((FontSpec(FONTS[0]),), "en", ("\u4e2d", " "))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_det_boxes_in_bounds_and_cover_the_ink(seed: int) -> None:
    from shapely.geometry import Polygon

    cfg = _cfg("det", 1, seed=seed, augment=AugmentConfig(perspective=1.0))
    picker = TextPicker(tuple(FontSpec(f) for f in FONTS), "en", CHARSET)
    scene = make_det_scene(cfg.rng(0), picker, cfg)
    h, w = scene.image.shape[:2]
    assert 640 <= w <= 960 and 480 <= h <= 720
    assert len(scene.boxes) >= 1
    inside = np.zeros((h, w), np.uint8)
    for box in scene.boxes:
        pts = box.array
        assert pts.shape == (4, 2)
        assert pts.min() >= 0 and (pts[:, 0] <= w - 1).all() and (pts[:, 1] <= h - 1).all()
        assert box.ignore == (box.text == "###")
        cv2.fillPoly(inside, [np.round(pts).astype(np.int32)], 1)
    polys = [Polygon(b.points) for b in scene.boxes]
    assert all(p.is_valid and p.area > 20 for p in polys)
    assert not any(a.intersects(b) for i, a in enumerate(polys) for b in polys[i + 1 :])
    ink = scene.ink > 0.5
    assert ink.sum() > 200
    # Nearly all text pixels lie inside some label polygon, and polygons are not mostly empty.
    assert (inside[ink] == 1).mean() > 0.995  # boxes shifted by 6 px score 0.94-0.98
    assert ink[inside == 1].mean() > 0.08


def test_det_text_is_visible_inside_boxes(tmp_path: Path) -> None:
    """On clean renders the pixels in each box vary (ink on ground) more than the ground."""
    cfg = _cfg("det", 2, seed=5, augment=AugmentConfig.none())
    ds = generate(cfg, tmp_path / "det")
    assert load_dataset(tmp_path / "det") == ds
    for s in ds.samples:
        gray = cv2.cvtColor(read_image(s.image), cv2.COLOR_BGR2GRAY).astype(np.float32)
        for box in s.boxes:
            if box.ignore:
                continue
            mask = np.zeros(gray.shape, np.uint8)
            cv2.fillPoly(mask, [np.round(box.array).astype(np.int32)], 1)
            x0, y0 = box.array.min(axis=0).astype(int)
            x1, y1 = box.array.max(axis=0).astype(int)
            assert gray[mask == 1].std() > 20, box.text
            assert set(box.text) <= set(CHARSET)
            assert x1 > x0 and y1 > y0


def test_refuses_non_empty_out(tmp_path: Path) -> None:
    out = tmp_path / "set"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(DataError, match="not empty"):
        generate(_cfg("rec", 1), out)
    generate(_cfg("rec", 1), out, force=True)
    assert (out / "keep.txt").read_text() == "x"  # --force never deletes the user's files
    assert len(load_dataset(out)) == 1
    generate(_cfg("rec", 2), out)  # a previous synth output is replaced without --force
    assert len(load_dataset(out)) == 2 and (out / "keep.txt").exists()
    with pytest.raises(DataError, match="is a file"):
        generate(_cfg("rec", 1), out / "keep.txt")
    assert [p.name for p in tmp_path.iterdir()] == ["set"]  # no temp folder left behind


def test_cli_synth_rec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from xcompress.cli.main import main

    dict_file = tmp_path / "dict.txt"
    dict_file.write_text("".join(f"{c}\n" for c in CHARSET if c != " "), encoding="utf-8")
    out = tmp_path / "rec"
    argv = ["data", "synth", "rec", "--out", str(out), "--count", "3", "--charset", str(dict_file)]
    assert main(argv) == 0
    assert "wrote 3 lines" in capsys.readouterr().out
    assert len(load_dataset(out)) == 3
    assert main(argv) == 0  # re-run: replaces its own output
    capsys.readouterr()
    assert main([*argv, "--lang", "xx", "--force"]) == 2
    assert "unknown language" in capsys.readouterr().err
    assert main(["data", "check", str(out)]) == 0
    assert "rec, 3 samples" in capsys.readouterr().out
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("x")
    assert main([*argv[:4], str(mine), *argv[5:]]) == 2
    assert "pass --force" in capsys.readouterr().err


def _one_error_line(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--out", "/proc/xc-test"], "is not writable"),
        (["--out", "/sys/xc-test"], "is not writable"),
        (["--count", "0"], "--count must be at least 1"),
        (["--charset", "{tmp}"], "is a folder: pass a PaddleOCR dict file"),
        (["--charset", "{tmp}/m.onnx"], "is a model file: pass it as --model"),
        (["--charset", "{tmp}/missing.txt"], "does not exist"),
    ],
)
def test_cli_synth_user_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    from xcompress.cli.main import main

    (tmp_path / "dict.txt").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07")
    argv = ["data", "synth", "rec", "--out", str(tmp_path / "out"), "--count", "2"]
    argv += ["--charset", str(tmp_path / "dict.txt")]
    argv += [a.format(tmp=tmp_path) for a in extra]  # later options win
    before = sorted(tmp_path.iterdir())
    assert main(argv) == 2
    assert needle in _one_error_line(capsys.readouterr().err)
    assert sorted(tmp_path.iterdir()) == before  # nothing written


def test_interrupted_run_leaves_nothing(tmp_path: Path) -> None:
    def interrupt(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        generate(_cfg("rec", 3), tmp_path / "set", progress=interrupt)
    assert list(tmp_path.iterdir()) == []


def test_same_bytes_in_another_process(tmp_path: Path) -> None:
    """Nothing depends on Python's per-process string hashing (set order) or global state."""
    import os
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from tests.test_data_synth import _cfg;"
        "from xcompress.data.synth import generate; generate(_cfg('det', 1, seed=9), sys.argv[1])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "a")], env=env, cwd=root, check=True)
    generate(_cfg("det", 1, seed=9), tmp_path / "b")
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")


def test_photo_preset_damages_more_and_default_sets_are_unchanged(tmp_path: Path) -> None:
    from xcompress.data.synth.augment import AUGMENT_PRESETS, augment_preset

    assert set(AUGMENT_PRESETS) == {"default", "photo", "none"}
    from xcompress.data.synth.augment import PHOTOMETRIC, apply_photometric

    # the later ops draw nothing when off: the defaults give what they gave before them
    img = np.full((32, 96, 3), 200, np.uint8)
    img[10:20, 10:80] = 30
    cfg = AugmentConfig(lighting=1, blur=1, noise=1)
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    got = apply_photometric(img, r1, cfg)
    want = img
    for name in ("lighting", "invert", "blur", "motion_blur", "noise"):  # the first release
        if r2.random() < getattr(cfg, name):
            want = PHOTOMETRIC[name](want, r2)
    assert np.array_equal(got, want) and r1.random() == r2.random()
    photo = augment_preset("photo")
    assert photo.low_contrast > 0 and photo.downscale > 0
    assert photo.jpeg_quality[0] < AugmentConfig().jpeg_quality[0]
    with pytest.raises(DataError, match="--augment"):
        augment_preset("fog")


def test_synth_spec_names_language_and_damage() -> None:
    from xcompress.train.data import SynthSource
    from xcompress.train.tasks import synth_lang, synth_spec

    assert synth_spec("synth", "en") == ("en", "default")
    assert synth_spec("synth:zh-wide", "en") == ("zh-wide", "default")
    assert synth_spec("synth:en:photo", "zh") == ("en", "photo")
    assert synth_spec("data/lines", "en") is None and synth_lang("synth:zh:photo", "en") == "zh"
    with pytest.raises(DataError, match="synth:en:blurry.*unknown damage"):
        synth_spec("synth:en:blurry", "en")
    with pytest.raises(DataError, match="unknown language 'xx'"):
        synth_spec("synth", "xx")
    charset = list(string.printable)
    light, photo = SynthSource(charset, "en"), SynthSource(charset, "en", "photo")
    assert photo.name == "synth-en-photo" and light.name == "synth-en"
    assert photo.cfg.augment.jpeg > light.cfg.augment.jpeg
    # same text, other damage: the preset changes pixels, not labels
    (_, ta), (_, tb) = light.sample(5, 0), photo.sample(5, 0)
    assert ta == tb
    with pytest.raises(DataError, match="unknown --augment"):
        SynthSource(charset, "en", "blurry")
