"""Facts about the machine a model was timed on, recorded beside every latency.

The parsing works on the text of ``/proc/cpuinfo`` so that a profiler for a remote board can
read the board's file (``ssh board cat /proc/cpuinfo``) and reuse :func:`machine_from_cpuinfo`.

Example:
    >>> m = machine_from_cpuinfo("model name : Xeon\\nflags : avx2 avx512_vnni\\n", "x86_64", 2)
    >>> (m.cpu, m.int8_dot, m.describe())
    ('Xeon', ('avx512_vnni',), 'Xeon, x86_64, 2 cores, int8 dot: avx512_vnni')
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from pydantic import BaseModel, ConfigDict

# cpuinfo flag -> the name used for it in targets. Order is preference (widest first).
_INT8_DOT_FLAGS = {
    "amx_int8": "amx_int8",
    "avx512_vnni": "avx512_vnni",
    "avx_vnni": "avx_vnni",
    "i8mm": "i8mm",  # Armv8.6 int8 matrix multiply
    "asimddp": "dotprod",  # Armv8.2 SDOT/UDOT
}
_SIMD_FLAGS = ("avx2", "avx512f", "fma", "asimd", "sve", "sve2")
# Keys under which CPUs name themselves in /proc/cpuinfo (x86, then the ARM variants).
_MODEL_KEYS = ("model name", "Model", "Hardware", "cpu model")


class Machine(BaseModel):
    """The hardware and OS facts that make a latency number interpretable."""

    model_config = ConfigDict(frozen=True)

    cpu: str
    isa: str
    cores: int  # cores this process may use
    int8_dot: tuple[str, ...] = ()
    simd: tuple[str, ...] = ()
    os: str = ""
    load_avg_1m: float | None = None  # a busy machine gives noisy times; this shows it

    def describe(self) -> str:
        """One line, e.g. ``Intel Xeon, x86_64, 2 cores, int8 dot: avx512_vnni``."""
        dot = ", ".join(self.int8_dot) or "none"
        return f"{self.cpu}, {self.isa}, {self.cores} cores, int8 dot: {dot}"


def machine_from_cpuinfo(
    cpuinfo: str, isa: str, cores: int, os_name: str = "", load_avg_1m: float | None = None
) -> Machine:
    """Build :class:`Machine` facts from the text of ``/proc/cpuinfo``.

    Args:
        cpuinfo: the file's text (may be empty when unavailable).
        isa: ``platform.machine()`` of the device.
        cores: cores the timed process may use.
    """
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    cpu = next((fields[k] for k in _MODEL_KEYS if fields.get(k)), "") or platform.processor()
    return Machine(
        cpu=cpu or "unknown CPU",
        isa=isa,
        cores=cores,
        int8_dot=tuple(name for flag, name in _INT8_DOT_FLAGS.items() if flag in flags),
        simd=tuple(f for f in _SIMD_FLAGS if f in flags),
        os=os_name,
        load_avg_1m=load_avg_1m,
    )


def available_cores() -> int:
    """Cores this process may run on (respects affinity masks and cgroup cpusets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def host_machine() -> Machine:
    """Facts about this machine, read now."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        cpuinfo = ""
    try:
        load = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        load = None
    return machine_from_cpuinfo(
        cpuinfo,
        isa=platform.machine(),
        cores=available_cores(),
        os_name=f"{platform.system()} {platform.release()}",
        load_avg_1m=load,
    )
