"""Quantization plans: which rewrites to run and which op types to quantize.

Which plan is fastest depends on the target's kernels, not on op types alone, so
``xcompress quantize`` builds every candidate plan and times them on the target (alternating
with the float model, in one run) before tuning accuracy on the fastest.

Measured on PP-OCRv4 rec with onnxruntime 1.32 on an AVX-512 VNNI CPU: onnxruntime fuses
``HardSwish`` into the float Conv, but it has no int8 HardSwish kernel, so a fused HardSwish
between two int8 Convs costs a DequantizeLinear, a float HardSwish, a QuantizeLinear and a
layout change. Keeping hard-swish decomposed (``Add``/``Clip``/``Mul``, all with int8 kernels)
lets the whole backbone stay int8 in NHWC: that is plan ``int8-all``. Plan ``int8-conv``
fuses HardSwish and quantizes only the weight layers, which wins where elementwise int8
kernels are slow.

Example:
    >>> get_plan("int8-conv").op_types
    ('Conv', 'ConvTranspose', 'MatMul', 'Gemm')
"""

from __future__ import annotations

from dataclasses import dataclass

from xcompress.quantize.rewrites import PRE_QUANT_REWRITES
from xcompress.runtime import get_runtime


@dataclass(frozen=True)
class Plan:
    """A named choice of pre-quantization rewrites and quantized op types."""

    name: str
    rewrites: tuple[str, ...]
    op_types: tuple[str, ...]
    description: str


_PLANS: dict[str, Plan] = {}


def register_plan(plan: Plan) -> Plan:
    """Add a plan to the registry."""
    _PLANS[plan.name] = plan
    return plan


def plan_names() -> list[str]:
    """Registered plan names."""
    return list(_PLANS)


def get_plan(name: str) -> Plan:
    """The registered plan ``name`` (KeyError lists the known ones)."""
    try:
        return _PLANS[name]
    except KeyError:
        raise KeyError(f"unknown plan {name!r} ({', '.join(_PLANS)})") from None


# Which ops have int8 kernels is the runtime's data (xcompress.runtime.ort), not the plans'.
_ORT = get_runtime("ort")
WEIGHT_OPS = _ORT.int8_weight_ops

register_plan(Plan(
    name="int8-all",
    rewrites=tuple("unfuse-hardswish" if r == "fuse-hardswish" else r
                   for r in PRE_QUANT_REWRITES),
    op_types=_ORT.int8_graph_ops,
    description="hard-swish decomposed so every op between int8 Convs has an int8 kernel",
))

register_plan(Plan(
    name="int8-conv",
    rewrites=PRE_QUANT_REWRITES,
    op_types=WEIGHT_OPS,
    description="HardSwish fused; only Conv/MatMul/Gemm quantized, activations stay float",
))
