"""Inference folding: same function, fewer separate elementwise ops, original untouched."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xcompress.models import build_model, get_arch, list_archs
from xcompress.models.fuse import fold_for_inference
from xcompress.models.layers import LearnableAffine

torch.set_num_threads(1)


def _randomize(model: nn.Module) -> None:
    """Non-trivial BatchNorm statistics and affines (fresh ones are identities)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            elif isinstance(m, LearnableAffine):
                m.scale.copy_(torch.rand(1, generator=g) + 0.5)
                m.bias.copy_(torch.randn(1, generator=g) * 0.3)


# every architecture, plus PP-LCNetV3 with BatchNorm in its blocks (from-scratch training)
CASES = [(name, False) for name in list_archs()] + [("ppocrv4-rec", True)]


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_folded_model_computes_the_same(name: str, norm: bool) -> None:
    cfg = get_arch(name).tiny()
    if norm:
        cfg = cfg.model_copy(update={"backbone": cfg.backbone.model_copy(update={"norm": True})})
    model = build_model(name, cfg).eval()
    _randomize(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_for_inference(model)
    x = model.example_input(2, 64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), atol=1e-5, rtol=1e-4)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    n_aff = sum(isinstance(m, LearnableAffine) for m in folded.modules())
    assert n_bn == 0
    assert n_aff < max(1, sum(isinstance(m, LearnableAffine) for m in model.modules()))
