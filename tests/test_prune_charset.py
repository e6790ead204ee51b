"""CTC charset slimming: keep-set resolution, the plan, and an exact slimmed classifier."""

from __future__ import annotations

import string
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from xcompress.card import ModelCard, default_postprocess, default_preprocess
from xcompress.errors import DataError, ModelError
from xcompress.models import build_model, get_arch
from xcompress.models.base import OCRModel
from xcompress.prune.charset import (
    KEEP_SETS,
    CharsetSlim,
    plan_slim,
    resolve_keep,
    slim_card,
    slim_classifier,
)

torch.set_num_threads(1)

# 10 characters + blank = the 11 classes of the tiny ppocrv4-rec config
CHARSET = ["a", "b", "c", "0", "1", "2", "中", "文", "!", " "]
ARCHS = ["crnn", "ppocrv4-rec"]


def _tiny(arch: str, num_classes: int = len(CHARSET) + 1) -> OCRModel:
    torch.manual_seed(0)
    cfg = get_arch(arch).tiny().model_dump()
    model: OCRModel = build_model(arch, {**cfg, "num_classes": num_classes})
    return model.eval()


def _head(model: OCRModel) -> torch.nn.Linear:
    head = model.head
    assert isinstance(head, torch.nn.Linear)
    return head


def _card(charset: list[str]) -> ModelCard:
    return ModelCard(name="tiny-rec", task="rec", preprocess=default_preprocess("rec"),
                     postprocess=default_postprocess("rec"), charset=charset)  # fmt: skip


def _dict_file(tmp_path: Path, text: str, name: str = "keys.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


# --- resolve_keep ------------------------------------------------------------------------


def test_named_sets() -> None:
    assert resolve_keep("digits") == list(string.digits)
    assert set(resolve_keep("ascii")) == {chr(c) for c in range(0x20, 0x7F)}
    assert len(resolve_keep("ascii")) == 95
    assert set(resolve_keep("alnum")) == set(string.digits + string.ascii_letters)
    assert len(resolve_keep("alnum")) == 62
    assert set(KEEP_SETS) == {"ascii", "alnum", "digits"}


def test_dict_file_one_char_per_line(tmp_path: Path) -> None:
    # CRLF and LF line ends, an empty line, a duplicate, a space line and U+3000 (not stripped)
    path = _dict_file(tmp_path, "b\r\na\n\n \nb\n\u3000\n中")
    assert resolve_keep(str(path)) == ["b", "a", " ", "\u3000", "中"]


def test_dict_file_line_with_several_chars(tmp_path: Path) -> None:
    path = _dict_file(tmp_path, "a\nb\nab\n")
    with pytest.raises(DataError, match=r"keys\.txt line 3 holds 2 characters"):
        resolve_keep(str(path))


def test_dict_file_empty_or_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="holds no character"):
        resolve_keep(str(_dict_file(tmp_path, "\n\n")))
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("é\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        resolve_keep(str(bad))


def test_unknown_spec(tmp_path: Path) -> None:
    for spec in ("latin", str(tmp_path)):  # a folder is not a file either
        with pytest.raises(DataError) as e:
            resolve_keep(spec)
        assert (
            str(e.value) == f"--keep-charset {spec}: not a file and not one of ascii, alnum, digits"
        )


# --- plan_slim ---------------------------------------------------------------------------


def test_plan_keeps_blank_first_and_model_order() -> None:
    slim = plan_slim(CHARSET, ["!", "2", "a"])
    assert slim.rows == [0, 1, 6, 9, 10]  # blank, a, 2, !, space: ascending
    assert slim.kept == ["a", "2", "!", " "]
    assert slim.missing == []
    assert slim.dropped == len(CHARSET) - len(slim.kept) == 6
    assert slim.num_classes == 5


def test_space_always_kept_if_the_model_has_one() -> None:
    assert " " not in KEEP_SETS["digits"]
    assert plan_slim(CHARSET, resolve_keep("digits")).kept == ["0", "1", "2", " "]
    no_space = CHARSET[:-1]
    slim = plan_slim(no_space, resolve_keep("digits"))
    assert slim.kept == ["0", "1", "2"] and slim.rows == [0, 4, 5, 6]


def test_named_set_missing_chars_are_reported_not_refused() -> None:
    slim = plan_slim(CHARSET, resolve_keep("alnum"))
    assert slim.kept == ["a", "b", "c", "0", "1", "2", " "]
    assert len(slim.missing) == 62 - 6 and "d" in slim.missing and "Z" in slim.missing
    assert "0" not in slim.missing


def test_file_missing_chars_are_refused(tmp_path: Path) -> None:
    path = _dict_file(tmp_path, "a\nx\n0\ny\n")
    keep = resolve_keep(str(path))
    with pytest.raises(DataError) as e:
        plan_slim(CHARSET, keep, source=str(path))
    msg = str(e.value)
    assert f"charset file {path} has 2 characters the model cannot output" in msg
    assert "(first: 'x', 'y'): remove them" in msg and "\n" not in msg
    slim = plan_slim(CHARSET, keep, allow_missing=True, source=str(path))
    assert slim.missing == ["x", "y"] and slim.kept == ["a", "0", " "]


def test_many_missing_chars_are_cut_short(tmp_path: Path) -> None:
    path = _dict_file(tmp_path, "\n".join("a" + string.ascii_uppercase))
    with pytest.raises(DataError, match=r"has 26 characters .*'A', 'B', 'C', 'D', 'E', \.\.\.\)"):
        plan_slim(CHARSET, resolve_keep(str(path)), source=str(path))


def test_nothing_left_to_keep() -> None:
    with pytest.raises(DataError, match="nothing would be left"):
        plan_slim(CHARSET, ["z"])
    with pytest.raises(DataError, match="nothing would be left"):
        plan_slim(CHARSET, [" "])  # the space alone recognizes nothing


def test_duplicated_model_entries_keep_every_copy() -> None:
    slim = plan_slim(["a", "b", "a", " "], ["a"])
    assert slim.rows == [0, 1, 3, 4] and slim.kept == ["a", "a", " "]


# --- slim_classifier ---------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_slimmed_logits_are_the_parents_rows(arch: str) -> None:
    model = _tiny(arch)
    slim = plan_slim(CHARSET, ["0", "2", "中", "b"])
    small = slim_classifier(model, CHARSET, slim)
    x = model.example_input(2, 64)
    with torch.no_grad():
        parent_logits = model.forward_train(x)["logits"]
        logits = small.forward_train(x)["logits"]
        parent_probs, probs = model(x), small(x)
    assert logits.shape[-1] == len(slim.kept) + 1 == 6
    head, parent_head = _head(small), _head(model)
    assert torch.equal(head.weight, parent_head.weight[slim.rows])
    assert torch.equal(head.bias, parent_head.bias[slim.rows])
    # Not torch.equal: the CPU GEMM kernel depends on the output width, so the same dot
    # products can round differently in their last bit (measured: up to 1.5e-8 here).
    torch.testing.assert_close(logits, parent_logits[..., slim.rows], rtol=0, atol=1e-6)
    assert torch.equal(logits.argmax(-1), parent_logits[..., slim.rows].argmax(-1))
    restricted = parent_probs[..., slim.rows]
    torch.testing.assert_close(probs, restricted / restricted.sum(-1, keepdim=True))
    # the config follows, so a checkpoint of the slimmed model rebuilds the same module
    assert small.config.num_classes == 6  # type: ignore[attr-defined]
    rebuilt = build_model(arch, small.config_dict())
    rebuilt.load_state_dict(small.state_dict())


@pytest.mark.parametrize("arch", ARCHS)
def test_input_model_is_not_mutated(arch: str) -> None:
    model = _tiny(arch).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    small = slim_classifier(model, CHARSET, plan_slim(CHARSET, ["a"]))
    assert small is not model and small.training
    assert _head(model).out_features == len(CHARSET) + 1
    assert model.config.num_classes == len(CHARSET) + 1  # type: ignore[attr-defined]
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # and the copy shares no tensor with it
    _head(small).weight.data.zero_()
    assert torch.equal(model.state_dict()["head.weight"], before["head.weight"])


def test_classes_must_fit_the_charset() -> None:
    model = _tiny("crnn")
    short = CHARSET[:-2]
    with pytest.raises(ModelError, match="the model has 11 classes but its charset 8 characters"):
        slim_classifier(model, short, plan_slim(short, ["a"]))


def test_model_without_linear_head() -> None:
    model = _tiny("crnn")
    model.head = torch.nn.Identity()  # type: ignore[assignment]
    with pytest.raises(ModelError, match="no Linear CTC head"):
        slim_classifier(model, CHARSET, plan_slim(CHARSET, ["a"]))


def test_plan_from_another_charset_is_refused() -> None:
    other = ["x", "a", "b", "c", "0", "1", "2", "中", "文", " "]  # same length, shifted
    slim = plan_slim(other, ["a"])
    with pytest.raises(ModelError, match="does not fit"):
        slim_classifier(_tiny("crnn"), CHARSET, slim)
    with pytest.raises(ModelError, match="does not fit"):
        slim_card(_card(CHARSET), slim)
    bogus = CharsetSlim(kept=["a"], rows=[1], missing=[], dropped=9)  # no blank
    with pytest.raises(ModelError, match="does not fit"):
        slim_card(_card(CHARSET), bogus)


def test_slim_card() -> None:
    card = _card(CHARSET)
    slim = plan_slim(CHARSET, resolve_keep("digits"))
    new = slim_card(card, slim)
    assert new.charset == ["0", "1", "2", " "] and new.num_classes == slim.num_classes == 5
    assert new.model_dump(exclude={"charset"}) == card.model_dump(exclude={"charset"})
    assert card.charset == CHARSET
    with pytest.raises(ModelError, match="no charset"):
        slim_card(card.model_copy(update={"charset": None}), slim)


def test_slimmed_model_exports_to_onnx(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import numpy as np

    from xcompress.models.export import export_onnx
    from xcompress.runtime.ort import ort_session

    model = _tiny("crnn")
    slim = plan_slim(CHARSET, ["a", "1"])
    small, card = slim_classifier(model, CHARSET, slim), slim_card(_card(CHARSET), slim)
    folder = export_onnx(small, card, tmp_path / "onnx")  # checks ORT == torch within 1e-4
    out_card = ModelCard.load(folder)
    assert out_card.charset == ["a", "1", " "] and out_card.notes["arch_config"]["num_classes"] == 4
    sess = ort_session(folder / "model.onnx")
    x = np.zeros((1, 3, small.input_height or 32, 96), np.float32)
    (probs,) = sess.run(None, {sess.get_inputs()[0].name: x})
    assert probs.shape[-1] == len(slim.kept) + 1 == 4


def test_planning_imports_no_torch() -> None:
    code = (
        "import sys\nfrom xcompress.prune.charset import plan_slim, resolve_keep\n"
        "plan_slim(['a', ' '], resolve_keep('ascii'))\nprint('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
