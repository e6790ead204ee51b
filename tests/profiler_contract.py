"""The contract every :class:`~xcompress.profile.Profiler` passes.

A new profiler is done when a test class for it inherits :class:`ProfilerContract` and passes:

    class TestQemuProfiler(ProfilerContract):
        shape = (1, 3, 16, 16)

        @pytest.fixture
        def profiler(self):
            return get_profiler("arm64-emu-cortex-a76")

        @pytest.fixture
        def model_path(self, tmp_path):
            return write_tiny_model(tmp_path / "m.onnx")

No test asserts on absolute speed: only on consistency (order statistics, run counts, the
alternation order, a model against a copy of itself).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from xcompress.errors import XCompressError
from xcompress.profile import Loaded, ProfileConfig, Profiler, get_profiler


class ProfilerContract:
    """Base class of profiler tests; subclasses provide ``profiler`` and ``model_path``."""

    shape: ClassVar[tuple[int, ...]] = (1, 3, 16, 16)
    runs: ClassVar[int] = 12
    warmup: ClassVar[int] = 2
    # Loose on purpose: a 16x16 model runs in microseconds, so scheduler noise on a shared
    # machine moves the median of 30 runs a lot (an SSH run on loopback fell outside (0.5, 2)).
    # The bound still catches a ratio computed from mismatched units or sample sets.
    self_ratio_bounds: ClassVar[tuple[float, float]] = (0.25, 4.0)

    @pytest.fixture
    def profiler(self) -> Profiler:
        raise NotImplementedError("a ProfilerContract subclass must provide `profiler`")

    @pytest.fixture
    def model_path(self, tmp_path: Path) -> Path:
        raise NotImplementedError("a ProfilerContract subclass must provide `model_path`")

    @pytest.fixture
    def config(self) -> ProfileConfig:
        return ProfileConfig(shape=self.shape, runs=self.runs, warmup=self.warmup, threads=1)

    @pytest.fixture
    def copy_path(self, model_path: Path, tmp_path: Path) -> Path:
        dest = tmp_path / "copy" / model_path.name
        dest.parent.mkdir()
        shutil.copy(model_path, dest)
        return dest

    # -- profile ---------------------------------------------------------------------------

    def test_result_fields_are_sane(self, profiler, model_path, config):
        r = profiler.profile(model_path, config)
        assert r.n_runs == config.runs == len(r.samples_ms)
        assert 0 < r.min_ms <= r.median_ms <= r.p90_ms <= r.max_ms
        assert r.min_ms <= r.mean_ms <= r.max_ms
        assert r.std_ms >= 0 and r.iqr_ms >= 0
        assert r.median_ms == pytest.approx(float(np.median(r.samples_ms)))
        assert r.shape == config.shape
        assert r.threads == config.threads
        assert r.runtime and r.runtime_version
        assert r.target == profiler.target.name
        assert r.machine.cores >= 1 and r.machine.isa

    def test_min_time_extends_runs(self, profiler, model_path, config):
        floor = 20 * max(profiler.profile(model_path, config).median_ms, 0.05)  # ms
        cfg = config.model_copy(update={"runs": 2, "min_time_s": floor / 1e3})
        r = profiler.profile(model_path, cfg)
        assert r.n_runs > 2
        assert sum(r.samples_ms) >= floor

    def test_missing_file_raises(self, profiler, model_path, config, tmp_path):
        with pytest.raises(XCompressError, match="not found"):
            profiler.profile(tmp_path / f"missing{model_path.suffix}", config)

    def test_registered_for_its_target_kind(self, profiler):
        assert type(get_profiler(profiler.target)) is type(profiler)

    # -- compare ---------------------------------------------------------------------------

    def test_compare_alternates_abba(self, profiler, model_path, copy_path, config, monkeypatch):
        calls: list[tuple[str, int]] = []
        timed = profiler.time_round

        def recording(loaded: Loaded, n: int) -> list[float]:
            calls.append(("A" if loaded.path == model_path else "B", n))
            return timed(loaded, n)

        monkeypatch.setattr(profiler, "time_round", recording)
        cfg = config.model_copy(update={"warmup": 0, "round_runs": 2, "runs": 7})
        c = profiler.compare(model_path, copy_path, cfg)
        order = "".join(who for who, _ in calls)
        rounds = math.ceil(7 / 2)
        assert order == ("ABBA" * rounds)[: 2 * rounds]
        assert [n for _, n in calls] == [2, 2, 2, 2, 2, 2, 1, 1]
        assert c.rounds == rounds
        assert c.a.n_runs == c.b.n_runs == 7
        assert c.a.model == str(model_path) and c.b.model == str(copy_path)

    def test_compare_warms_up_both(self, profiler, model_path, copy_path, config, monkeypatch):
        seen: dict[str, int] = {"A": 0, "B": 0}
        timed = profiler.time_round

        def counting(loaded: Loaded, n: int) -> list[float]:
            seen["A" if loaded.path == model_path else "B"] += n
            return timed(loaded, n)

        monkeypatch.setattr(profiler, "time_round", counting)
        profiler.compare(model_path, copy_path, config)
        assert seen == {"A": config.warmup + config.runs, "B": config.warmup + config.runs}

    def test_compare_self_ratio_near_one(self, profiler, model_path, copy_path, config):
        c = profiler.compare(model_path, copy_path, config.model_copy(update={"runs": 30}))
        lo, hi = self.self_ratio_bounds
        assert lo < c.ratio < hi
        assert c.ratio == pytest.approx(c.a.median_ms / c.b.median_ms)
        assert c.p90_ratio == pytest.approx(c.a.p90_ms / c.b.p90_ms)
        assert c.round_ratio_q25 <= c.round_ratio_median <= c.round_ratio_q75
        assert 0 < c.ci95_low <= c.ci95_high

    def test_compare_missing_file_raises(self, profiler, model_path, config, tmp_path):
        with pytest.raises(XCompressError, match="not found"):
            profiler.compare(model_path, tmp_path / f"missing{model_path.suffix}", config)
