"""Targets as data, and the machine facts recorded beside every latency."""

from __future__ import annotations

import pydantic
import pytest

from xcompress.errors import XCompressError
from xcompress.profile.machine import host_machine, machine_from_cpuinfo
from xcompress.targets import TARGET_ALIASES, Target, get_target, list_targets, load_target


def test_shipped_targets():
    assert {"host", "arm64-emu-cortex-a76", "rpi4-cortex-a72"} <= set(list_targets())


@pytest.mark.parametrize("name", list_targets())
def test_every_target_loads_and_is_consistent(name):
    t = get_target(name)
    assert t.name == name
    assert t.runtimes and t.description
    if t.cores is not None and t.default_threads is not None:
        assert t.default_threads <= t.cores
    if t.kind != "host":  # the host's facts are detected at run time
        assert t.isa is not None and t.cores is not None
    if t.kind == "arm64-emu":  # its int8 dot products are those of its CPU model's data
        from xcompress.boards.qemu import cpu_facts

        assert t.emu_cpu and t.isa == "aarch64"
        assert t.int8_dot == cpu_facts(t.emu_cpu).int8_dot


def test_target_facts():
    a76 = get_target("arm64-emu-cortex-a76")
    assert (a76.kind, a76.isa, a76.int8_dot, a76.emu_cpu) == (
        "arm64-emu",
        "aarch64",
        "dotprod",
        "cortex-a76",
    )
    pi = get_target("rpi4-cortex-a72")
    assert (pi.kind, pi.cores, pi.int8_dot) == ("ssh", 4, None)  # A72: Armv8.0, no SDOT
    host = get_target("host")
    assert (host.kind, host.isa, host.int8_dot) == ("host", None, None)
    assert set(host.runtimes) == {"ort", "litert"}


def test_target_is_frozen():
    with pytest.raises(pydantic.ValidationError):
        get_target("host").cores = 8  # type: ignore[misc]


def test_unknown_target_lists_names():
    with pytest.raises(XCompressError, match="unknown target 'pi5'.*host.*rpi4-cortex-a72"):
        get_target("pi5")


def test_target_from_yaml_file(tmp_path):
    path = tmp_path / "my-board.yaml"
    path.write_text("kind: ssh\nisa: aarch64\ncores: 8\nruntimes: [litert]\nint8_dot: i8mm\n")
    t = get_target(path)
    assert t == Target(
        name="my-board", kind="ssh", isa="aarch64", cores=8, runtimes=("litert",), int8_dot="i8mm"
    )


def test_retired_op_costs_key_still_loads_when_empty(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("kind: ssh\nisa: aarch64\ncores: 4\nop_costs: {}\n")
    assert load_target(path).cores == 4
    path.write_text("kind: ssh\nisa: aarch64\ncores: 4\nop_costs: {Conv: 1.0}\n")
    with pytest.raises(XCompressError, match="op_costs"):
        load_target(path)


def test_aliases_resolve_everywhere():
    assert get_target("arm64-emu").name == "arm64-emu-cortex-a76"
    assert set(TARGET_ALIASES.values()) <= set(list_targets())


def test_target_runtimes_come_from_the_runtime_layer(tmp_path):
    from xcompress.runtime import runtime_names

    assert set(get_target("host").runtimes) == set(runtime_names())
    path = tmp_path / "bad.yaml"
    path.write_text("kind: ssh\nisa: aarch64\ncores: 4\nruntimes: [torch]\n")
    with pytest.raises(XCompressError, match="runtimes.*unknown runtime 'torch'"):
        load_target(path)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("kind: fpga\n", "kind"),
        ("kind: ssh\ncores: 0\n", "cores"),
        ("kind: ssh\nram: 4\n", "ram"),
        ("- a list\n", "mapping"),
    ],
)
def test_invalid_target_file(tmp_path, text, where):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(XCompressError, match=where):
        load_target(path)


def test_machine_from_x86_cpuinfo():
    text = (
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold\n"
        "flags\t\t: fpu sse avx2 fma avx512f avx512_vnni\n\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Gold\nflags\t\t: fpu\n"
    )
    m = machine_from_cpuinfo(text, "x86_64", 2)
    assert (m.cpu, m.int8_dot, m.simd) == (
        "Intel(R) Xeon(R) Gold",
        ("avx512_vnni",),
        ("avx2", "avx512f", "fma"),
    )
    assert m.describe() == "Intel(R) Xeon(R) Gold, x86_64, 2 cores, int8 dot: avx512_vnni"


def test_machine_from_arm_cpuinfo():
    pi4 = (
        "processor : 0\nFeatures : fp asimd evtstrm crc32 cpuid\nCPU part : 0xd08\n"
        "Model : Raspberry Pi 4 Model B Rev 1.4\n"
    )
    m = machine_from_cpuinfo(pi4, "aarch64", 4)
    assert (m.cpu, m.int8_dot, m.simd) == ("Raspberry Pi 4 Model B Rev 1.4", (), ("asimd",))
    a76 = machine_from_cpuinfo("Features : fp asimd asimddp i8mm\n", "aarch64", 4)
    assert a76.int8_dot == ("i8mm", "dotprod")


def test_host_machine_reads_this_machine():
    m = host_machine()
    assert m.cores >= 1 and m.isa and m.cpu
