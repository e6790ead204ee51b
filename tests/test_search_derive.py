"""Subnets inherit the trained parent's weights: identity, kernel crop/pad, depth, width
(top-L1 channels), exactness when the dropped channels carry nothing, BN re-estimation, and
the messages for child configs that do not fit."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
from pydantic import BaseModel
from torch import nn

from xcompress.errors import DataError, ModelError
from xcompress.models import build_model, get_arch, list_archs
from xcompress.models.base import OCRModel
from xcompress.models.crnn import CRNN, CRNNConfig, CRNNStage
from xcompress.models.det import PPOCRv4Det, PPOCRv4DetConfig, RSEFPNConfig
from xcompress.models.layers import LearnableAffine
from xcompress.models.lcnetv3 import LCNetV3, LCNetV3Config
from xcompress.models.rec import PPOCRv4Rec, PPOCRv4RecConfig, SVTRNeckConfig
from xcompress.search.derive import derive_subnet, list_derivers, reestimate_bn

torch.set_num_threads(1)

# Parents with room to shrink: full PP-OCR stage depths at a quarter width (divisor 8 so that
# half-width stages still round to something smaller), a 2-block neck, a 2-layer LSTM.
PARENTS: dict[str, Callable[[], tuple[str, Any]]] = {
    "rec": lambda: ("ppocrv4-rec", PPOCRv4RecConfig(
        backbone=LCNetV3Config.rec(scale=0.25, divisor=8, stem_channels=64),
        neck=SVTRNeckConfig(dims=32, depth=2, num_heads=4, out_dims=32), num_classes=11,
    )),
    "rec-bn": lambda: ("ppocrv4-rec", PPOCRv4RecConfig(
        backbone=LCNetV3Config.rec(scale=0.25, divisor=8, norm=True),
        neck=SVTRNeckConfig(dims=32, depth=1, num_heads=4, out_dims=32), num_classes=11,
    )),
    "det": lambda: ("ppocrv4-det", PPOCRv4DetConfig(
        backbone=LCNetV3Config.det(scale=0.25, divisor=8),
        neck=RSEFPNConfig(lateral_channels=(8, 8, 16, 32), out_channels=32),
    )),
    "crnn": lambda: ("crnn", CRNNConfig(
        stages=(CRNNStage(channels=16, depth=2), CRNNStage(channels=32, depth=2, kernel=5)),
        hidden=16, lstm_layers=2,
    )),
}  # fmt: skip


def _randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics and affines, so that copying them is actually checked."""
    g = torch.Generator().manual_seed(seed)

    def rand(t: torch.Tensor, lo: float, hi: float) -> None:
        t.data.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=g))

    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            rand(m.weight, 0.5, 1.5)
            rand(m.bias, -0.2, 0.2)
            rand(m.running_mean, -0.2, 0.2)
            rand(m.running_var, 0.5, 1.5)
            m.num_batches_tracked.fill_(7)
        elif isinstance(m, LearnableAffine):
            rand(m.scale, 0.8, 1.2)
            rand(m.bias, -0.2, 0.2)
        elif isinstance(m, nn.LayerNorm):
            rand(m.weight, 0.8, 1.2)
            rand(m.bias, -0.2, 0.2)
    return model.eval()


def _parent(key: str, seed: int = 0) -> OCRModel:
    arch, cfg = PARENTS[key]()
    torch.manual_seed(seed)
    return _randomize(build_model(arch, cfg), seed)


def _with(cfg: BaseModel, **changes: Any) -> Any:
    """A validated copy of ``cfg``; nested fields as ``neck__dims=16``."""
    d = cfg.model_dump()
    for key, value in changes.items():
        *path, last = key.split("__")
        node = d
        for p in path:
            node = node[p]
        node[last] = value.model_dump() if isinstance(value, BaseModel) else value
    return type(cfg).model_validate(d)


def _input(model: OCRModel, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return model.example_input(2, 64)


def _outputs(model: OCRModel, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {"forward": model(x), **model.forward_train(x)}


def _assert_same_outputs(child: OCRModel, parent: OCRModel, atol: float = 1e-6) -> None:
    x = _input(parent)
    got, want = _outputs(child, x), _outputs(parent, x)
    assert got.keys() == want.keys()
    for key in want:
        if got[key].shape != want[key].shape:  # narrower features: the parent's live channels
            want[key] = _live_channels(want[key], got[key].shape)
        assert float(want[key].abs().max()) > 1e-3, f"{key}: no signal left to compare"
        diff = float((got[key] - want[key]).abs().max())
        assert diff < atol, f"{key}: max abs diff {diff:.2e}"


def _live_channels(full: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    (dim,) = [d for d, (a, b) in enumerate(zip(full.shape, shape, strict=True)) if a != b]
    others = [d for d in range(full.dim()) if d != dim]
    live = torch.where(full.abs().amax(dim=others) > 0)[0]
    assert len(live) == shape[dim], "the dropped channels should be exactly zero"
    return full.index_select(dim, live)


def test_every_architecture_has_a_deriver() -> None:
    assert list_derivers() == list_archs()


# ---------------------------------------------------------------------------------------------
# identity and kernels


@pytest.mark.parametrize("name", list_archs())
def test_identity_on_the_tiny_config(name: str) -> None:
    parent = _randomize(build_model(name, get_arch(name).tiny()))
    child = derive_subnet(parent, parent.config_dict())
    assert child.config == parent.config and not child.training
    for key, value in parent.state_dict().items():
        torch.testing.assert_close(child.state_dict()[key], value, rtol=0, atol=0, msg=key)
    _assert_same_outputs(child, parent)


@pytest.mark.parametrize("key", list(PARENTS))
def test_identity_reproduces_the_parent(key: str) -> None:
    parent = _parent(key)
    before = copy.deepcopy(parent.state_dict())
    child = derive_subnet(parent, parent.config)
    _assert_same_outputs(child, parent)
    for name, value in parent.state_dict().items():  # the parent is left as it was
        assert torch.equal(value, before[name]), name


def _larger_kernels(key: str, cfg: Any) -> Any:
    if key == "crnn":
        stages = tuple(s.model_copy(update={"kernel": s.kernel + 2}) for s in cfg.stages)
        return _with(cfg, stages=[s.model_dump() for s in stages])
    bb = cfg.backbone.with_stage_knobs(kernels=[s.kernel + 2 for s in cfg.backbone.stages])
    if key.startswith("rec"):
        return _with(cfg, backbone=bb, neck__kernel=(3, 5))
    return _with(cfg, backbone=bb)


@pytest.mark.parametrize("key", ["rec", "rec-bn", "det", "crnn"])
def test_larger_kernels_are_zero_padded_so_outputs_stay_exact(key: str) -> None:
    parent = _parent(key)
    child = derive_subnet(parent, _larger_kernels(key, parent.config))
    _assert_same_outputs(child, parent)


def test_smaller_kernel_is_the_centre_crop() -> None:
    parent = _parent("rec")
    bb = parent.config.backbone
    cfg = _with(parent.config, backbone=bb.with_stage_knobs(kernels=[3, 3, 3, 3, 3, 1, 3]))
    child = derive_subnet(parent, cfg)
    for stage, lo, hi in ((4, 1, 4), (5, 2, 3)):  # 5×5 -> 3×3 and 5×5 -> 1×1
        for pb, cb in zip(parent.backbone.stages[stage], child.backbone.stages[stage], strict=True):
            assert cb.dw.conv.weight.shape[2:] == (hi - lo, hi - lo)
            assert torch.equal(cb.dw.conv.weight, pb.dw.conv.weight[:, :, lo:hi, lo:hi])
            assert cb.dw.conv.padding == ((hi - lo) // 2, (hi - lo) // 2)
    assert child(_input(parent)).shape == parent(_input(parent)).shape


# ---------------------------------------------------------------------------------------------
# depth and width


def test_depth_keeps_the_first_blocks() -> None:
    parent = _parent("rec")
    bb = parent.config.backbone
    cfg = _with(parent.config, backbone=bb.with_stage_knobs(depths=[1, 1, 1, 1, 2, 1, 1]),
                neck__depth=1)  # fmt: skip
    child = derive_subnet(parent, cfg)
    assert [len(s) for s in child.backbone.stages] == [1, 1, 1, 1, 2, 1, 1]
    # widths are unchanged, so kept blocks are exact copies of the parent's first blocks --
    # but for the pw conv of a shallower stage's last block, which stands in for the parent's
    # last block (its affines, refitted by reconstruct(): see derive._stand_in)
    for i, stage in enumerate(child.backbone.stages):
        truncated = len(stage) < len(parent.backbone.stages[i])
        for j, block in enumerate(stage):
            stand_in = truncated and j == len(stage) - 1
            want = parent.backbone.stages[i][j].state_dict()
            for name, value in block.state_dict().items():
                if stand_in and name.startswith("pw."):
                    continue
                assert torch.equal(value, want[name]), f"stage {i} block {j} {name}"
            if stand_in:
                last = parent.backbone.stages[i][-1].pw
                assert torch.equal(block.pw.affine.scale, last.affine.scale)
    assert len(child.neck.blocks) == 1
    want = parent.neck.blocks[0].state_dict()
    assert all(torch.equal(v, want[k]) for k, v in child.neck.blocks[0].state_dict().items())
    x = _input(parent)
    assert child(x).shape == parent(x).shape


def test_lstm_layers_keep_the_first_layers() -> None:
    parent = _parent("crnn")
    child = derive_subnet(parent, _with(parent.config, lstm_layers=1))
    assert child.rnn.num_layers == 1
    for name, value in child.rnn.state_dict().items():
        assert torch.equal(value, parent.rnn.state_dict()[name]), name


def _top_l1_rows(weight: torch.Tensor, k: int) -> torch.Tensor:
    # the test's own statement of the rule: largest L1 norms, kept in their original order
    norms = weight.detach().abs().flatten(1).sum(1)
    return torch.sort(torch.topk(norms, k).indices).values


def test_width_keeps_the_top_l1_channels() -> None:
    parent = _parent("rec")
    cfg = _with(parent.config, backbone=parent.config.backbone.with_stage_knobs(
        width_mults=[0.5] * 7))  # fmt: skip
    child = derive_subnet(parent, cfg)
    assert child.backbone.out_channels == [8, 8, 16, 32, 32, 64, 64]
    p0, p1 = parent.backbone.stages[2]
    c0, c1 = child.backbone.stages[2]
    kept0 = _top_l1_rows(p0.pw.conv.weight, 16)
    kept1 = _top_l1_rows(p1.pw.conv.weight, 16)
    # block 1 reads block 0's kept channels: depthwise rows and pointwise columns
    assert torch.equal(c1.dw.conv.weight, p1.dw.conv.weight[kept0])
    assert torch.equal(c1.dw.conv.bias, p1.dw.conv.bias[kept0])
    assert torch.equal(c1.pw.conv.weight, p1.pw.conv.weight[kept1][:, kept0])
    assert torch.equal(c1.pw.conv.bias, p1.pw.conv.bias[kept1])
    assert torch.equal(c1.pw.affine.scale, p1.pw.affine.scale)
    assert torch.equal(c1.dw.act_affine.bias, p1.dw.act_affine.bias)
    assert torch.equal(c0.pw.conv.bias, p0.pw.conv.bias[kept0])
    # the stage's squeeze-excite (stage 5) keeps its strongest reduce filters
    ps, cs = parent.backbone.stages[5][1].se, child.backbone.stages[5][1].se
    kept_in = _top_l1_rows(parent.backbone.stages[5][0].pw.conv.weight, 64)
    mid = _top_l1_rows(ps.reduce.weight, 16)
    assert torch.equal(cs.reduce.weight, ps.reduce.weight[mid][:, kept_in])
    assert torch.equal(cs.expand.weight, ps.expand.weight[kept_in][:, mid])
    x = _input(parent)
    assert child(x).shape == parent(x).shape == (2, 8, 11)


def test_bn_parameters_and_statistics_of_kept_channels_are_copied() -> None:
    parent = _parent("crnn")
    cfg = _with(parent.config, stages=[
        {**s.model_dump(), "width_mult": 0.5} for s in parent.config.stages])  # fmt: skip
    child = derive_subnet(parent, cfg)
    conv, bn = parent.cnn[0], parent.cnn[1]
    kept = _top_l1_rows(conv.weight, 8)
    for name in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(child.cnn[1], name), getattr(bn, name)[kept]), name
    assert int(child.cnn[1].num_batches_tracked) == 7


def test_attention_keeps_one_channel_set_per_head_for_q_k_v_and_proj() -> None:
    parent = _parent("rec")
    child = derive_subnet(parent, _with(parent.config, neck__dims=16))
    pb, cb = parent.neck.blocks[0], child.neck.blocks[0]
    assert cb.heads == 4 and cb.scale == pytest.approx(4**-0.5)
    # the rule, stated independently: per head, the 4 of 8 channels with the largest L1 over
    # their q, k, v rows and proj column, in order
    norms = pb.qkv.weight.abs().sum(1).reshape(3, 32).sum(0) + pb.proj.weight.abs().sum(0)
    per_head = torch.topk(norms.reshape(4, 8), 4, dim=1).indices.sort(dim=1).values
    attn = (per_head + 8 * torch.arange(4)[:, None]).flatten()
    # the stream dims are recovered from the LayerNorm weights (random, so unique)
    dims = [int(torch.where(pb.norm1.weight == w)[0][0]) for w in cb.norm1.weight]
    assert dims == sorted(dims) and len(dims) == 16
    for part in range(3):  # q, k, v rows: the same channels in every head
        rows, child_rows = part * 32 + attn, part * 16 + torch.arange(16)
        assert torch.equal(cb.qkv.weight[child_rows], pb.qkv.weight[rows][:, dims])
        assert torch.equal(cb.qkv.bias[child_rows], pb.qkv.bias[rows])
    assert torch.equal(cb.proj.weight, pb.proj.weight[dims][:, attn])
    # the MLP hidden layer keeps its strongest fc1 filters
    hidden = _top_l1_rows(pb.fc1.weight, 32)
    assert torch.equal(cb.fc1.weight, pb.fc1.weight[hidden][:, dims])
    assert torch.equal(cb.fc2.weight, pb.fc2.weight[dims][:, hidden])
    x = _input(parent)
    assert child(x).shape == parent(x).shape


def test_lstm_hidden_shrink_keeps_each_units_four_gates_together() -> None:
    parent = _parent("crnn")
    child = derive_subnet(parent, _with(parent.config, hidden=8))
    p, c = parent.rnn, child.rnn
    for suffix in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
        w_ih, w_hh = getattr(p, "weight_ih" + suffix), getattr(p, "weight_hh" + suffix)
        norms = (w_ih.abs().sum(1) + w_hh.abs().sum(1)).reshape(4, 16).sum(0)
        units = torch.sort(torch.topk(norms, 8).indices).values
        j = 3  # child unit j is parent unit units[j] in all four gates (i, f, g, o)
        u = int(units[j])
        for gate in range(4):
            child_row = getattr(c, "weight_hh" + suffix)[gate * 8 + j]
            assert torch.equal(child_row, w_hh[gate * 16 + u][units]), (suffix, gate)
            for name in ("bias_ih", "bias_hh"):
                got = getattr(c, name + suffix)[gate * 8 + j]
                assert torch.equal(got, getattr(p, name + suffix)[gate * 16 + u])
        if suffix.startswith("_l1"):  # layer 1 reads [forward units, 16 + backward units]
            fwd = _lstm_kept(p, "_l0", 8)
            bwd = _lstm_kept(p, "_l0_reverse", 8)
            cols = torch.cat([fwd, 16 + bwd])
            assert torch.equal(getattr(c, "weight_ih" + suffix), w_ih[_gate_rows(units)][:, cols])
    cols = torch.cat([_lstm_kept(p, "_l1", 8), 16 + _lstm_kept(p, "_l1_reverse", 8)])
    assert torch.equal(child.head.weight, parent.head.weight[:, cols])
    x = _input(parent)
    assert child(x).shape == parent(x).shape


def _lstm_kept(lstm: nn.LSTM, suffix: str, k: int) -> torch.Tensor:
    rows = getattr(lstm, "weight_ih" + suffix).abs().sum(1)
    rows = rows + getattr(lstm, "weight_hh" + suffix).abs().sum(1)
    return torch.sort(torch.topk(rows.reshape(4, -1).sum(0), k).indices).values


def _gate_rows(units: torch.Tensor, hidden: int = 16) -> torch.Tensor:
    return torch.cat([g * hidden + units for g in range(4)])


def test_det_neck_and_head_shrink() -> None:
    parent = _parent("det")
    cfg = _with(parent.config, neck__lateral_channels=(8, 8, 8, 16), neck__out_channels=16)
    child = derive_subnet(parent, cfg)
    assert [m.out_channels for m in child.neck.lateral] == [8, 8, 8, 16]
    assert child.shrink.conv.conv.in_channels == 16 and child.thresh.up1.in_channels == 4
    out = _outputs(child, _input(parent))
    assert out["forward"].shape == (2, 1, 64, 64) and out["features"].shape == (2, 16, 16, 16)


# ---------------------------------------------------------------------------------------------
# exactness: a pruned child equals the parent when the dropped channels carry nothing


def _drop(n: int, keep: int, g: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=g)[: n - keep]


def _zero(idx: torch.Tensor, *tensors: torch.Tensor | None, dim: int = 0) -> None:
    for t in tensors:
        if t is not None:
            t.data.index_fill_(dim, idx, 0.0)


def _bn(m: nn.Module | None) -> tuple[torch.Tensor | None, ...]:
    # BN(x) = 0 for any x once its scale and shift are 0
    return (None, None) if m is None else (m.weight, m.bias)


def _silence_se(se: nn.Module, child_se: nn.Module, g: torch.Generator) -> None:
    mid = _drop(se.reduce.out_channels, child_se.reduce.out_channels, g)
    _zero(mid, se.reduce.weight, se.reduce.bias)


def _silence_lcnet(src: LCNetV3, dst: LCNetV3, g: torch.Generator) -> list[torch.Tensor]:
    """Zero in ``src`` whatever ``dst`` drops, at random positions; returns each stage's."""
    dropped = _drop(src.stem.conv.out_channels, dst.stem.conv.out_channels, g)
    _zero(dropped, src.stem.conv.weight, *_bn(src.stem.bn))
    outs = []
    for src_stage, dst_stage in zip(src.stages, dst.stages, strict=True):
        for pb, cb in zip(src_stage, dst_stage, strict=True):
            # a zero input channel stays zero through the depthwise conv only without bias
            _zero(dropped, pb.dw.conv.bias, *_bn(pb.dw.bn))
            if pb.se is not None:
                _silence_se(pb.se, cb.se, g)
            dropped = _drop(pb.pw.conv.out_channels, cb.pw.conv.out_channels, g)
            _zero(dropped, pb.pw.conv.weight, pb.pw.conv.bias, *_bn(pb.pw.bn))
        outs.append(dropped)
    return outs


def _silence_conv_bn(src: nn.Module, dst: nn.Module, g: torch.Generator) -> None:
    _zero(_drop(src.conv.out_channels, dst.conv.out_channels, g), src.conv.weight, *_bn(src.bn))


def _silence_rec(parent: PPOCRv4Rec, child: PPOCRv4Rec, g: torch.Generator) -> None:
    _silence_lcnet(parent.backbone, child.backbone, g)
    p, c = parent.neck, child.neck
    for name in ("conv1", "conv3", "conv4", "conv5"):
        _silence_conv_bn(getattr(p, name), getattr(c, name), g)
    for pb, cb in zip(p.blocks, c.blocks, strict=True):
        _zero(_drop(pb.fc1.out_features, cb.fc1.out_features, g), pb.fc1.weight, pb.fc1.bias)


def _silence_det(parent: PPOCRv4Det, child: PPOCRv4Det, g: torch.Generator) -> None:
    _silence_lcnet(parent.backbone, child.backbone, g)
    p, c = parent.neck, child.neck
    common = _drop(p.out_channels, c.out_channels, g)  # the top-down sums share channels
    for i in range(4):
        lat = _drop(p.lateral[i].out_channels, c.lateral[i].out_channels, g)
        _zero(lat, p.lateral[i].weight, p.lateral[i].bias)
        _zero(common, p.ins[i].conv.weight)
        _silence_se(p.ins[i].se, c.ins[i].se, g)
        level = _drop(p.inp[i].conv.out_channels, c.inp[i].conv.out_channels, g)
        _zero(level, p.inp[i].conv.weight)
        _silence_se(p.inp[i].se, c.inp[i].se, g)
    for pb, cb in ((parent.shrink, child.shrink), (parent.thresh, child.thresh)):
        _silence_conv_bn(pb.conv, cb.conv, g)
        up = _drop(pb.up1.out_channels, cb.up1.out_channels, g)
        _zero(up, pb.up1.weight, dim=1)  # transpose conv weight: [in, out, kh, kw]
        _zero(up, pb.up1.bias, *_bn(pb.bn1))


def _silence_crnn(parent: CRNN, child: CRNN, g: torch.Generator) -> None:
    for i, conv in enumerate(parent.cnn):  # same depths: the same layer list as the child's
        if isinstance(conv, nn.Conv2d):
            dropped = _drop(conv.out_channels, child.cnn[i].out_channels, g)
            _zero(dropped, conv.weight, *_bn(parent.cnn[i + 1]))
    p, h = parent.rnn, child.rnn.hidden_size
    for suffix in ("_l0", "_l0_reverse", "_l1", "_l1_reverse"):
        # all four gates' rows zero: i = f = o = 1/2, g = 0, so c and h stay 0
        rows = _gate_rows(_drop(p.hidden_size, h, g), p.hidden_size)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            _zero(rows, getattr(p, name + suffix))


def _narrow(key: str, cfg: Any) -> Any:
    if key == "crnn":
        stages = [{**s.model_dump(), "width_mult": 0.5} for s in cfg.stages]
        return _with(cfg, stages=stages, hidden=8)
    bb = _with(cfg.backbone.with_stage_knobs(width_mults=[0.5, 1, 0.5, 0.75, 0.5, 0.5, 0.75]),
               stem_channels=cfg.backbone.stem_channels // 2)  # fmt: skip
    if key.startswith("rec"):
        return _with(cfg, backbone=bb, neck__mlp_ratio=1.0, neck__out_dims=16)
    return _with(cfg, backbone=bb, neck__lateral_channels=(8, 8, 8, 16), neck__out_channels=16)


SILENCERS = {"rec": _silence_rec, "rec-bn": _silence_rec, "det": _silence_det,
             "crnn": _silence_crnn}  # fmt: skip


@pytest.mark.parametrize("key", list(PARENTS))
def test_pruned_child_is_exact_when_dropped_channels_carry_nothing(key: str) -> None:
    parent = _parent(key)
    for m in parent.modules():
        if isinstance(m, LearnableAffine):
            m.bias.data.zero_()  # a channel-shared shift would revive zeroed channels
    cfg = _narrow(key, parent.config)
    shape_only = build_model(parent.arch, cfg)
    SILENCERS[key](parent, shape_only, torch.Generator().manual_seed(3))
    child = derive_subnet(parent, cfg)
    assert sum(p.numel() for p in child.parameters()) < sum(p.numel() for p in parent.parameters())
    _assert_same_outputs(child, parent, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# BatchNorm re-estimation


def _bn_inputs(model: nn.Module) -> tuple[dict[nn.Module, list[torch.Tensor]], list[Any]]:
    seen: dict[nn.Module, list[torch.Tensor]] = {}
    hooks = [m.register_forward_pre_hook(lambda m, a: seen.setdefault(m, []).append(a[0]))
             for m in model.modules() if isinstance(m, nn.BatchNorm2d)]  # fmt: skip
    return seen, hooks


def test_reestimate_bn_sets_the_batch_statistics_and_restores_modes() -> None:
    parent = _parent("rec-bn")
    child = derive_subnet(parent, _narrow("rec-bn", parent.config))
    child.neck.train()  # mixed modes: each module's flag must come back as it was
    child.backbone.stem.bn.momentum = 0.3
    flags = {n: m.training for n, m in child.named_modules()}
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in child.modules())
    seen, hooks = _bn_inputs(child)
    x = _input(child, seed=5)
    assert reestimate_bn(child, [x]) == n_bn
    for h in hooks:
        h.remove()
    assert len(seen) == n_bn
    for bn, (inp,) in seen.items():
        torch.testing.assert_close(bn.running_mean, inp.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(bn.running_var, inp.var((0, 2, 3)), rtol=1e-4, atol=1e-5)
        assert int(bn.num_batches_tracked) == 1
    assert {n: m.training for n, m in child.named_modules()} == flags
    assert child.backbone.stem.bn.momentum == 0.3 and child.neck.conv1.bn.momentum == 0.1


def test_reestimate_bn_averages_batches_and_stops_at_max_batches() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).eval()
    torch.manual_seed(0)
    xs = [torch.randn(2, 3, 5, 5) + i for i in range(3)]
    assert reestimate_bn(net, iter(xs), max_batches=2) == 1
    with torch.no_grad():
        ys = [net[0](x) for x in xs[:2]]
    want = torch.stack([y.mean((0, 2, 3)) for y in ys]).mean(0)
    torch.testing.assert_close(net[1].running_mean, want)
    assert int(net[1].num_batches_tracked) == 2 and not net.training


def test_reestimate_bn_leaves_unreached_and_absent_bns_alone() -> None:
    parent = _parent("det")
    thresh = copy.deepcopy(parent.thresh.state_dict())
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in parent.modules())
    # forward() does not run the training-only threshold branch (2 BNs)
    assert reestimate_bn(parent, [_input(parent)]) == n_bn - 2
    for k, v in parent.thresh.state_dict().items():
        assert torch.equal(v, thresh[k]), k

    def never() -> Any:
        raise AssertionError("no forward should run")
        yield

    assert reestimate_bn(nn.Sequential(nn.Linear(2, 2)), never()) == 0


def test_reestimate_bn_without_batches_is_a_data_error_and_changes_nothing() -> None:
    net = _randomize(nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)))
    before = copy.deepcopy(net.state_dict())
    with pytest.raises(DataError, match="no batches"):
        reestimate_bn(net, [])
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert net[1].momentum == 0.1 and not net.training


# ---------------------------------------------------------------------------------------------
# child configs that do not fit the trained model


def _bb(cfg: Any, **knobs: Any) -> Any:
    return _with(cfg, backbone=cfg.backbone.with_stage_knobs(**knobs))


MISFITS = {
    "wider": ("rec", lambda c: _bb(c, width_mults=[1, 1, 1.25, 1, 1, 1, 1]),
              r"stage 2 is wider \(40 channels\) than the trained model \(32\)"),
    "deeper": ("rec", lambda c: _bb(c, depths=[1, 2, 2, 1, 5, 2, 2]),
               r"stage 4: depth 5 > the trained model's 4"),
    "stage count": ("det", lambda c: _with(c, backbone__stages=c.backbone.stages[:6]),
                    r"backbone has 6 stages, the trained model 7"),
    "stride": ("rec", lambda c: _with(c, backbone=LCNetV3Config.det(scale=0.25, divisor=8)),
               r"stage 1: stride \(2, 2\) differs from the trained model's \(1, 1\)"),
    "num_heads": ("rec", lambda c: _with(c, neck__num_heads=8),
                  r"neck num_heads 8 differs from the trained model's 4"),
    "neck depth": ("rec", lambda c: _with(c, neck__depth=3), r"neck depth 3 > the trained"),
    "num_classes": ("rec", lambda c: _with(c, num_classes=12),
                    r"num_classes 12 differs from the trained model's 11"),
    "crnn classes": ("crnn", lambda c: _with(c, num_classes=5), r"num_classes 5 differs"),
    "lstm hidden": ("crnn", lambda c: _with(c, hidden=32), r"LSTM hidden is wider \(32"),
    "lstm layers": ("crnn", lambda c: _with(c, lstm_layers=3), r"lstm_layers 3 > the trained"),
    "crnn depth": ("crnn", lambda c: _with(c, stages=[
        {**s.model_dump(), "depth": 3} for s in c.stages]), r"stage 1: depth 3 > the trained"),
    "even kernel": ("crnn", lambda c: _with(c, stages=[
        {**s.model_dump(), "kernel": 4} for s in c.stages]), r"stage 0: kernel 4 cannot be"),
    "lateral": ("det", lambda c: _with(c, neck__lateral_channels=(8, 8, 16, 64)),
                r"neck lateral 3 is wider \(64 channels\)"),
    "taps": ("det", lambda c: _with(c, taps=(1, 2, 3, 6)), r"taps \(1, 2, 3, 6\) differs"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(MISFITS))
def test_misfit_child_configs_are_one_line_model_errors(case: str) -> None:
    key, make, message = MISFITS[case]
    parent = _parent(key)
    with pytest.raises(ModelError, match=message) as info:
        derive_subnet(parent, make(parent.config))
    assert "\n" not in str(info.value) and "does not fit the trained model" in str(info.value)


def test_every_misfit_is_named_in_the_one_message() -> None:
    parent = _parent("rec")
    cfg = _with(_bb(parent.config, depths=[2, 2, 2, 1, 4, 2, 2]), num_classes=7)
    with pytest.raises(ModelError, match=r"stage 0: depth 2 > .*; num_classes 7 differs"):
        derive_subnet(parent, cfg)


def test_unknown_architecture_and_foreign_config_are_model_errors() -> None:
    class Mystery(OCRModel):
        arch = "mystery"
        task = "rec"

    with pytest.raises(ModelError, match="'mystery' has no subnet deriver.*searchable: crnn"):
        derive_subnet(Mystery(CRNNConfig()), {})
    with pytest.raises(ModelError, match="a CRNNConfig cannot configure a ppocrv4-rec subnet"):
        derive_subnet(_parent("rec"), CRNNConfig())
    with pytest.raises(ModelError, match="invalid config"):
        derive_subnet(_parent("crnn"), {"hidden": -1})
