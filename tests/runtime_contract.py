"""The contract every registered :class:`~xcompress.runtime.Runtime` and its Runner pass.

A new runtime is done when a test class for it inherits :class:`RuntimeContract` and passes:

    class TestOrt(RuntimeContract):
        shape = (1, 3, 16, 16)

        @pytest.fixture
        def runtime(self):
            return get_runtime("ort")

        @pytest.fixture
        def model_path(self, tmp_path):
            return write_tiny_conv(tmp_path / "m.onnx")

``test_every_runnable_runtime_has_a_contract_test`` (in ``test_runtime.py``) fails when a
runnable runtime is registered without such a class.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from xcompress.card import ModelCard
from xcompress.errors import ModelError
from xcompress.runtime import (
    Runner,
    Runtime,
    format_of_suffix,
    get_runtime,
    model_suffixes,
    open_runner,
    runtime_for,
    runtime_of_suffix,
)

CARD_FORMATS = typing.get_args(ModelCard.model_fields["format"].annotation)


class RuntimeContract:
    """Base class of runtime tests; subclasses provide ``runtime`` and ``model_path``."""

    shape: ClassVar[tuple[int, ...]] = (1, 3, 16, 16)

    @pytest.fixture
    def runtime(self) -> Runtime:
        raise NotImplementedError("a RuntimeContract subclass must provide `runtime`")

    @pytest.fixture
    def model_path(self, tmp_path: Path) -> Path:
        raise NotImplementedError("a RuntimeContract subclass must provide `model_path`")

    @pytest.fixture
    def batch(self) -> np.ndarray:
        return np.random.default_rng(0).uniform(-1, 1, self.shape).astype(np.float32)

    # -- the descriptor ----------------------------------------------------------------------

    def test_registered_by_name_and_suffix(self, runtime, model_path):
        assert get_runtime(runtime.name) is runtime
        assert runtime_for(model_path) is runtime
        for s in runtime.suffixes:
            assert s in model_suffixes()
            assert runtime_of_suffix()[s] == runtime.name
            assert format_of_suffix()[s] == runtime.format

    def test_format_is_a_card_format(self, runtime):
        assert runtime.format in CARD_FORMATS

    def test_version_is_the_installed_package(self, runtime):
        from importlib import metadata

        assert runtime.version() == metadata.version(runtime.package)

    def test_timing_options_are_strings(self, runtime):
        options = dict(runtime.timing_options)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in options.items())

    def test_int8_data_is_consistent(self, runtime):
        assert set(runtime.int8_weight_ops) <= runtime.int8_ops
        assert set(runtime.int8_weight_ops) <= set(runtime.int8_graph_ops)

    # -- the runner --------------------------------------------------------------------------

    def test_open_runner_gives_the_runtime_runner(self, runtime, model_path):
        runner = open_runner(model_path, threads=1)
        assert isinstance(runner, Runner) and isinstance(runner, runtime.runner)
        assert runner.runtime_info == (runtime.package, runtime.version())
        assert isinstance(runner.input_name, str) and runner.input_name
        assert isinstance(runner.output_name, str) and runner.output_name

    def test_run_gives_float32_and_repeats(self, runtime, model_path, batch):
        runner = runtime.open(model_path, threads=1)
        a, b = runner.run(batch), runner.run(batch)
        assert a.dtype == np.float32 and a.shape[0] == batch.shape[0]
        assert np.array_equal(a, b)
        assert np.isfinite(a).all()

    def test_timed_run_runs_the_same_model(self, runtime, model_path, batch):
        ref = runtime.open(model_path, threads=1).run(batch)
        out = runtime.open_timed(model_path, 1)(batch)
        out = out[0] if isinstance(out, list) else out
        assert np.allclose(np.asarray(out, np.float32), ref, atol=1e-5)

    def test_missing_file_is_a_model_error(self, runtime, model_path, tmp_path):
        with pytest.raises(ModelError, match="not found"):
            open_runner(tmp_path / f"missing{model_path.suffix}")

    def test_corrupt_file_is_a_one_line_model_error(self, runtime, model_path, tmp_path):
        bad = tmp_path / f"bad{model_path.suffix}"
        bad.write_bytes(b"not a model")
        with pytest.raises(ModelError, match="cannot load") as e:
            open_runner(bad)
        assert "\n" not in str(e.value)
