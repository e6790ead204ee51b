"""Native architectures: registry, configs as search knobs, forward contract, checkpoints."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from xcompress.card import ModelCard
from xcompress.errors import ModelError
from xcompress.models import build_model, get_arch, list_archs
from xcompress.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from xcompress.models.layers import make_divisible
from xcompress.models.lcnetv3 import LCNetV3Config

torch.set_num_threads(1)


@pytest.mark.parametrize("name", list_archs())
def test_forward_contract_every_arch(name: str) -> None:
    entry = get_arch(name)
    model = build_model(name, entry.tiny()).eval()
    x = model.example_input(2, 64)
    with torch.no_grad():
        y = model(x)
        out = model.forward_train(x)
    if entry.task == "rec":
        assert y.shape[0] == 2 and y.shape[2] == entry.tiny().num_classes  # type: ignore[attr-defined]
        torch.testing.assert_close(y.sum(-1), torch.ones(y.shape[:2]), atol=1e-5, rtol=0)
        assert out["logits"].shape == y.shape
        assert out["features"].shape[:2] == y.shape[:2]
    else:
        assert y.shape == (2, 1, 64, 64)
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
        assert {"shrink", "thresh", "binary", "features"} <= set(out)
        torch.testing.assert_close(out["shrink"], y)


def test_registry_lists_the_families() -> None:
    assert {"ppocrv4-rec", "ppocrv4-det", "crnn"} <= set(list_archs())
    assert set(list_archs("det")) == {"ppocrv4-det"}


def test_unknown_arch_and_bad_config_are_user_errors() -> None:
    with pytest.raises(ModelError, match="unknown architecture"):
        build_model("nope")
    with pytest.raises(ModelError, match="invalid config"):
        build_model("crnn", {"hidden": -3})
    with pytest.raises(ModelError, match="invalid config"):
        build_model("ppocrv4-rec", {"neck": {"dims": 100, "num_heads": 8}})


def test_make_divisible_rounds_to_hardware_multiples() -> None:
    assert make_divisible(121.6, 16) == 128
    assert make_divisible(243.2, 16) == 240
    assert make_divisible(486.4, 16) == 480
    assert make_divisible(10, 8) == 16  # never below 90% of the request
    assert make_divisible(3, 8) == 8


def test_reference_configs_resolve_to_ppocrv4_widths() -> None:
    assert LCNetV3Config.rec(0.95).stage_channels() == [32, 64, 128, 240, 240, 480, 480]
    assert LCNetV3Config.det(0.75).stage_channels() == [32, 48, 96, 192, 192, 384, 384]


def test_search_knobs_change_the_structure() -> None:
    base = LCNetV3Config.rec(0.5)
    stages = list(base.stages)
    stages[4] = stages[4].model_copy(update={"width_mult": 0.5, "depth": 2, "kernel": 3})
    cfg = {"backbone": base.model_copy(update={"stages": tuple(stages)}).model_dump(),
           "num_classes": 11}  # fmt: skip
    model = build_model("ppocrv4-rec", cfg)
    ref = build_model("ppocrv4-rec", {"backbone": base.model_dump(), "num_classes": 11})
    stage = model.backbone.stages[4]
    assert len(stage) == 2 and len(ref.backbone.stages[4]) == 4
    assert stage[0].dw.conv.kernel_size == (3, 3)
    assert stage[0].pw.conv.out_channels == make_divisible(256 * 0.5 * 0.5, 16) == 64
    n = sum(p.numel() for p in model.parameters())
    assert n < sum(p.numel() for p in ref.parameters())
    assert model(torch.rand(1, 3, 48, 64)).shape == (1, 8, 11)


def test_with_stage_knobs_is_the_search_space() -> None:
    cfg = LCNetV3Config.rec(0.95).with_stage_knobs(
        width_mults=[1, 1, 0.5, 1, 0.75, 1, 0.5], depths=[1, 1, 1, 1, 2, 1, 1],
        kernels=[3, 3, 3, 3, 3, 5, 7],
    )  # fmt: skip
    assert cfg.stage_channels() == [32, 64, 64, 240, 176, 480, 240]
    assert [s.depth for s in cfg.stages] == [1, 1, 1, 1, 2, 1, 1]
    assert cfg.stages[6].kernel == 7 and cfg.stages[5].stride == (2, 1)  # strides stay
    with pytest.raises(ValueError, match="one per stage"):
        cfg.with_stage_knobs(depths=[1, 2])
    with pytest.raises(ValueError, match="odd"):
        cfg.with_stage_knobs(kernels=[3, 3, 3, 3, 4, 5, 5])


def test_even_kernel_rejected() -> None:
    from xcompress.models.lcnetv3 import StageSpec

    with pytest.raises(ValueError, match="odd"):
        StageSpec(channels=8, depth=1, kernel=4)


def test_checkpoint_roundtrip_weights_only(tmp_path) -> None:
    entry = get_arch("ppocrv4-rec")
    model = build_model("ppocrv4-rec", entry.tiny()).eval()
    card = ModelCard(name="tiny", task="rec", file="model.pt", format="torch",
                     charset=list("0123456789"))  # fmt: skip
    path = save_checkpoint(tmp_path / "m.pt", model, card)
    raw = torch.load(path, weights_only=True)  # must not need pickled classes
    assert raw["arch"] == "ppocrv4-rec" and raw["card"]["charset"][0] == "0"
    loaded, card2 = load_checkpoint(path)
    x = model.example_input(1, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)
    assert card2.charset == card.charset


def test_not_a_checkpoint_is_a_model_error(tmp_path) -> None:
    bad = tmp_path / "x.pt"
    torch.save({"state_dict": {}}, bad)
    with pytest.raises(ModelError, match="not an xcompress checkpoint"):
        read_checkpoint(bad)
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(ModelError):
        read_checkpoint(tmp_path / "junk.pt")


def test_import_xcompress_stays_free_of_torch() -> None:
    code = "import sys, xcompress, xcompress.cli.models; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
