"""PaddleOCR label files: round trips, task inference, and one-line errors for bad data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from xcompress.data import (
    ClsSample,
    Dataset,
    DetSample,
    RecSample,
    TextBox,
    check_charset,
    load_dataset,
    read_image,
    write_cls_labels,
    write_det_labels,
    write_rec_labels,
)
from xcompress.errors import DataError


def _touch_images(root: Path, names: list[str]) -> list[Path]:
    paths = []
    img = np.full((8, 16, 3), 200, np.uint8)
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(cv2.imencode(".png", img)[1].tobytes())
        paths.append(p)
    return paths


def test_rec_round_trip(tmp_path: Path) -> None:
    imgs = _touch_images(tmp_path, ["crops/a.png", "crops/b.png", "crops/文字.png"])
    samples = [
        RecSample(imgs[0], "Total: $12.50"),
        RecSample(imgs[1], "  two  spaces "),
        RecSample(imgs[2], "合计 ¥8"),
    ]
    label = write_rec_labels(tmp_path, samples)
    assert label == tmp_path / "label.txt"
    assert label.read_text(encoding="utf-8").splitlines()[0] == "crops/a.png\tTotal: $12.50"
    ds = load_dataset(tmp_path)
    assert ds.task == "rec"
    assert ds.samples == tuple(samples)
    assert ds.name == tmp_path.name


def test_det_round_trip(tmp_path: Path) -> None:
    (img,) = _touch_images(tmp_path, ["images/1.jpg"])
    boxes = (
        TextBox(((10, 20), (110, 20), (110, 45.5), (10, 45.5)), "EXIT"),
        TextBox(np.float32([[1, 2], [3, 2], [3, 4], [1, 4]]), "###", ignore=True),
        TextBox(((0.25, 1), (9.75, 1), (9.75, 7), (0.25, 7)), "名称"),
    )
    write_det_labels(tmp_path / "label.txt", [DetSample(img, boxes)])
    ds = load_dataset(tmp_path)
    assert ds.task == "det"
    assert ds.samples == (DetSample(img, boxes),)
    assert ds.samples[0].boxes[1].ignore
    assert ds.samples[0].boxes[0].array.dtype == np.float32
    assert ds.samples[0].boxes[0].array.shape == (4, 2)
    assert ds.texts() == ["EXIT", "名称"]


def test_cls_round_trip(tmp_path: Path) -> None:
    imgs = _touch_images(tmp_path, ["a.png", "b.png"])
    samples = [ClsSample(imgs[0], "0"), ClsSample(imgs[1], "180")]
    write_cls_labels(tmp_path, samples)
    ds = load_dataset(tmp_path)
    assert ds.task == "cls"
    assert ds.samples == tuple(samples)
    # the same file read as recognition labels is allowed when asked for explicitly
    assert load_dataset(tmp_path, task="rec").samples[1] == RecSample(imgs[1], "180")


def test_label_file_given_directly_and_image_root(tmp_path: Path) -> None:
    imgs = _touch_images(tmp_path / "train", ["x.png"])
    lab = tmp_path / "rec_gt_train.txt"
    lab.write_text("train/x.png\tabc\n", encoding="utf-8")
    ds = load_dataset(lab)
    assert ds.samples == (RecSample(imgs[0], "abc"),)
    assert ds.name == "rec_gt_train"
    other = tmp_path / "labels" / "l.txt"
    other.parent.mkdir()
    other.write_text("x.png\tabc\n", encoding="utf-8")
    assert load_dataset(other, image_root=tmp_path / "train").samples[0].image == imgs[0]


def test_ppocrlabel_layout_paths_relative_to_parent(tmp_path: Path) -> None:
    """PPOCRLabel writes imgs/Label.txt with lines 'imgs/1.jpg<TAB>[...]'."""
    (img,) = _touch_images(tmp_path, ["imgs/1.png"])
    (tmp_path / "imgs" / "Label.txt").write_text(
        'imgs/1.png\t[{"transcription": "A", "points": [[0,0],[4,0],[4,4],[0,4]], '
        '"difficult": false}]\n',
        encoding="utf-8",
    )
    ds = load_dataset(tmp_path / "imgs")
    assert ds.task == "det" and ds.root == tmp_path.absolute()
    assert ds.samples[0].image == img and ds.samples[0].boxes[0].text == "A"


@pytest.mark.parametrize(
    ("content", "line", "needle"),
    [
        ("a.png\tok\nb.png no tab here\n", 2, "TAB"),
        ('a.png\t[{"transcription": "x", "points": [[0,0],[1,0]]}]\n', 1, "points"),
        ('a.png\t[{"transcription": "x", "points": [[0,0],[1,0],[1,"y"]]}]\n', 1, "points"),
        ('a.png\t[{"transcription": "x"}]\n', 1, "points"),
        (
            'a.png\t[{"transcription": "x", "points": [[0,0],[1,0],[1,1]]}]\n'
            'a.png\t[{"transcription": "x", "points": \n',
            2,
            "JSON",
        ),
    ],
)
def test_malformed_line_names_file_and_line(
    tmp_path: Path, content: str, line: int, needle: str
) -> None:
    _touch_images(tmp_path, ["a.png"])
    (tmp_path / "label.txt").write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path)
    msg = str(e.value)
    assert f"label.txt:{line}:" in msg
    assert needle in msg
    assert "\n" not in msg


def test_bad_cls_label_names_line(tmp_path: Path) -> None:
    _touch_images(tmp_path, ["a.png"])
    (tmp_path / "label.txt").write_text("a.png\t0\na.png\t90\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"label.txt:2: direction label must be 0 or 180"):
        load_dataset(tmp_path, task="cls")


def test_empty_and_missing_sets(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DataError, match="has no label file"):
        load_dataset(tmp_path)
    (tmp_path / "label.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(DataError, match="has no samples"):
        load_dataset(tmp_path)


def test_missing_images_reports_first_and_count(tmp_path: Path) -> None:
    _touch_images(tmp_path, ["a.png"])
    (tmp_path / "label.txt").write_text("a.png\tx\nb.png\ty\nc.png\tz\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        load_dataset(tmp_path)
    msg = str(e.value)
    assert msg.startswith("2 of 3 images")
    assert "b.png" in msg and "c.png" not in msg
    assert len(load_dataset(tmp_path, check_images=False)) == 3


def test_read_image_non_ascii_and_corrupt(tmp_path: Path) -> None:
    (good,) = _touch_images(tmp_path, ["图片/ok.png"])
    img = read_image(good)
    assert img.shape == (8, 16, 3) and img.dtype == np.uint8 and int(img[0, 0, 0]) == 200
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"cannot decode image .*bad\.jpg"):
        read_image(bad)
    with pytest.raises(DataError, match="cannot read image"):
        read_image(tmp_path / "missing.jpg")


def test_writer_rejects_images_outside_root_and_newlines(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not inside"):
        write_rec_labels(tmp_path / "set", [RecSample(tmp_path / "elsewhere.png", "x")])
    with pytest.raises(DataError, match="newline"):
        write_rec_labels(tmp_path, [RecSample(Path("a.png"), "two\nlines")])
    assert not (tmp_path / "label.txt").exists()  # nothing half-written


def test_check_charset_counts_missing_characters() -> None:
    ds = Dataset(
        task="rec",
        root=Path("."),
        samples=(
            RecSample(Path("a.png"), "héllo"),
            RecSample(Path("b.png"), "hello wörld é"),
            RecSample(Path("c.png"), "hello"),
        ),
    )
    report = check_charset(ds, "helowrd ")
    assert report.missing == {"é": 2, "ö": 1}
    assert (report.lines_affected, report.total_lines, report.total_chars) == (2, 3, 23)
    assert [img for img, _ in report.examples] == ["a.png", "b.png"]
    assert not report.ok
    with pytest.raises(DataError, match="2 distinct characters"):
        report.raise_if_missing("ppocr-v4-rec")
    assert check_charset(ds, "helowrdéö ").ok


def test_check_charset_skips_ignored_det_boxes() -> None:
    box = ((0, 0), (1, 0), (1, 1), (0, 1))
    ds = Dataset(
        task="det",
        root=Path("."),
        samples=(DetSample(Path("a.png"), (TextBox(box, "ab"), TextBox(box, "###", True))),),
    )
    assert check_charset(ds, "ab").ok
    assert check_charset(ds, "a").missing == {"b": 1}


# ----------------------------------------------------------------------------- bad images


def _bad_image_set(root: Path) -> dict[str, str]:
    """A rec set with one good image and one of each kind of bad file; name -> reason word."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    jpg = cv2.imencode(".jpg", noise)[1].tobytes()
    png = cv2.imencode(".png", noise)[1].tobytes()
    files = {
        "good.jpg": jpg,
        "empty.jpg": b"",
        "half.jpg": jpg[: len(jpg) // 2],
        "half.png": png[: len(png) // 2],
        "text.jpg": b"this is not an image\n",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    names = [*files, "missing.jpg"]
    (root / "label.txt").write_text("".join(f"{n}\tabc\n" for n in names), encoding="utf-8")
    return {
        "empty.jpg": "empty",
        "half.jpg": "truncated",
        "half.png": "truncated",
        "text.jpg": "not an image",
        "missing.jpg": "missing",
    }


def test_find_bad_images_names_each_kind(tmp_path: Path) -> None:
    from xcompress.data import find_bad_images, image_problem

    expected = _bad_image_set(tmp_path)
    ds = load_dataset(tmp_path, check_images=False)
    seen = []
    bad = find_bad_images((s.image for s in ds), workers=2, advance=seen.append)
    assert len(seen) == 6
    assert [b.image.name for b in bad] == list(expected)  # label-file order
    for b in bad:
        assert expected[b.image.name] in b.reason, (b.image.name, b.reason)
    assert image_problem(tmp_path / "good.jpg") is None
    assert image_problem(tmp_path) == "a folder, not an image file"


def test_cli_data_check_lists_bad_images_then_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from xcompress.cli.main import main

    expected = _bad_image_set(tmp_path)
    assert main(["data", "check", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith(f"{tmp_path.name}: rec, 6 samples")
    assert [Path(ln.split(": ")[0]).name for ln in lines[1:]] == list(expected)
    assert err.count("\n") == 1 and err.startswith("error: 5 of 6 images")
    assert "--skip-bad" in err and "Traceback" not in err
    (tmp_path / "label.txt").write_text("good.jpg\tabc\n", encoding="utf-8")
    assert main(["data", "check", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{tmp_path.name}: rec, 1 samples, labels in {tmp_path}/label.txt"]
    assert err == ""


# ----------------------------------------------------------------------------- wrong task / input


def _write_labels(root: Path, labels: list[str]) -> None:
    names = [f"{i}.png" for i in range(len(labels))]
    _touch_images(root, names)
    lines = "".join(f"{n}\t{lab}\n" for n, lab in zip(names, labels, strict=True))
    (root / "label.txt").write_text(lines, encoding="utf-8")


BOX = '[{"transcription": "A", "points": [[0, 0], [4, 0], [4, 4], [0, 4]]}]'


@pytest.mark.parametrize(
    ("labels", "task", "looks"),
    [
        (["0", "180", "0"], "rec", "cls"),
        ([BOX, BOX, "[]"], "rec", "det"),
        ([BOX, "[]"], "cls", "det"),
        (["hello", "world"], "det", "rec"),
        (["0", "180"], "det", "cls"),
        (["hello", "world", "0"], "cls", "rec"),
    ],
)
def test_labels_of_another_task_are_refused(
    tmp_path: Path, labels: list[str], task: str, looks: str
) -> None:
    from xcompress.data import TaskMismatchError

    _write_labels(tmp_path, labels)
    with pytest.raises(TaskMismatchError) as e:
        load_dataset(tmp_path, task=task)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path} looks like a {looks} set (")
    assert f"not a {task} set: pass a" in msg and "\n" not in msg
    assert load_dataset(tmp_path).task == looks  # inference still reads it as what it is


def test_few_digit_labels_and_odd_lines_are_not_a_task_mismatch(tmp_path: Path) -> None:
    _write_labels(tmp_path / "digits", ["0", "180"])  # could be a tiny set of numbers
    assert load_dataset(tmp_path / "digits", task="rec").task == "rec"
    _write_labels(tmp_path / "cls", ["0", "180", "90"])  # a cls set with one bad line
    with pytest.raises(DataError, match=r"label.txt:3: direction label must be 0 or 180"):
        load_dataset(tmp_path / "cls", task="cls")
    _write_labels(tmp_path / "det", [BOX, '[{"points": '])  # a det set with broken JSON
    with pytest.raises(DataError, match=r"label.txt:2: detection label is not valid JSON"):
        load_dataset(tmp_path / "det", task="det")
    with pytest.raises(DataError, match="task must be rec, det or cls"):
        load_dataset(tmp_path / "det", task="bogus")  # type: ignore[arg-type]


def test_image_or_model_given_as_data_set(tmp_path: Path) -> None:
    (img,) = _touch_images(tmp_path, ["a.png"])
    renamed = tmp_path / "scan"
    renamed.write_bytes(img.read_bytes())
    model = tmp_path / "model.onnx"
    model.write_bytes(b"\x08\x07\x12\x04onnx")
    for path, kind in ((img, "an image"), (renamed, "an image"), (model, "a model")):
        with pytest.raises(DataError) as e:
            load_dataset(path)
        assert str(e.value) == (
            f"{path} is {kind} file, not a data set: "
            "pass the folder holding label.txt (or the label file)"
        )
    (tmp_path / "label.txt").write_bytes(b"a.png\t\xff\xfe\n")
    with pytest.raises(DataError, match="not UTF-8 text"):
        load_dataset(tmp_path)
    (tmp_path / "label.txt").unlink()
    with pytest.raises(DataError, match="is a model folder, not a data set"):
        load_dataset(tmp_path)


def test_rec_set_with_only_empty_labels_is_refused(tmp_path: Path) -> None:
    _write_labels(tmp_path, ["", " "])
    with pytest.raises(DataError, match="every label in .* is empty: write each image's text"):
        load_dataset(tmp_path)
    _write_labels(tmp_path, ["", "text"])  # a blank crop among real lines is fine
    assert len(load_dataset(tmp_path, task="rec")) == 2
