"""The search spaces under search_spaces/ fit the architectures they name."""

from __future__ import annotations

from pathlib import Path

import pytest

from xcompress.models import build_model, get_arch
from xcompress.search.space import load_space

SPACES = sorted((Path(__file__).resolve().parents[1] / "search_spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_space_fits_its_arch(path):
    space = load_space(path)
    model = build_model(space.arch, get_arch(space.arch).config_cls())
    space.check_fits(model)  # the largest and smallest points derive from the trained model
    cfg = model.config.model_dump(mode="json")
    stages = cfg
    for part in space.stages_at.split("."):
        stages = stages[part]
    assert len(stages) == space.stages
    ref = space.reference
    # the reference point is the trained model itself, and every stage's choices contain it
    for key, field in (("depths", "depth"), ("kernels", "kernel")):
        if key in ref:
            assert [s[field] for s in stages] == ref[key]
            choices = space.stage_choices(key)
            if choices is not None:
                assert all(r in c and max(c) <= r or key == "kernels"
                           for r, c in zip(ref[key], choices, strict=True))  # fmt: skip
    # the smallest point is smaller than the trained model, channels rounded to the divisor
    small = build_model(space.arch, space.child_config(cfg, space.extreme(min)))
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())
