"""The search spaces under search_spaces/ fit the architectures they name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

SPACES = sorted((Path(__file__).resolve().parents[1] / "search_spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_space_fits_its_arch(path):
    from xcompress.models.lcnetv3 import LCNetV3Config

    space = yaml.safe_load(path.read_text())
    base = LCNetV3Config.rec() if space["arch"].endswith("rec") else LCNetV3Config.det()
    assert len(base.stages) == space["stages"] == len(space["choices"]["depths"])
    ref = space["reference"]
    # the reference point is the trained model itself
    assert [s.depth for s in base.stages] == ref["depths"]
    assert [s.kernel for s in base.stages] == ref["kernels"]
    # every stage's choices contain the reference and never exceed the trained depth
    for d_ref, choices in zip(ref["depths"], space["choices"]["depths"], strict=True):
        assert d_ref in choices and max(choices) <= d_ref
    # the smallest point builds, with channels rounded to the divisor
    small = base.with_stage_knobs(
        width_mults=[min(space["choices"]["width_mults"])] * space["stages"],
        depths=[min(c) for c in space["choices"]["depths"]],
        kernels=[min(space["choices"]["kernels"])] * space["stages"],
    )
    ref_cfg = base.with_stage_knobs(**ref)
    assert ref_cfg == base.with_stage_knobs()
    assert base.divisor == space["divisor"]
    assert all(c % space["divisor"] == 0 for c in small.stage_channels())
    assert sum(small.stage_channels()) < sum(ref_cfg.stage_channels())
