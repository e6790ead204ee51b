"""qemu-aarch64 (user mode) on this machine: finding it, the CPU models it emulates, argv.

Only the dynamically linked ``qemu-aarch64`` of Debian's ``qemu-user`` package can load TCG
plugins (the instruction counter); ``qemu-aarch64-static`` cannot. Each emulated CPU model
is a row of the data file ``emu_cpus.yaml`` beside this module, loaded into :data:`EMU_CPUS`:
what ``/proc/cpuinfo`` says on such a board (onnxruntime and LiteRT read it to pick kernels)
and which int8 dot-product instructions it has.

Example:
    >>> EMU_CPUS["cortex-a76"].int8_dot
    'dotprod'
    >>> cpu_facts("cortex-a72").int8_dot is None
    True
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from xcompress.errors import MissingDependencyError, XCompressError

QEMU = "qemu-aarch64"
QEMU_PACKAGE = "qemu-user"

CPU_DATA = "emu_cpus.yaml"  # beside this module: the emulated CPU models, as data


@dataclass(frozen=True)
class EmuCpu:
    """An emulated CPU model: its ``/proc/cpuinfo`` identity and int8 dot-product support.

    ``broken_runtimes`` maps a runtime to why results under this model are wrong.
    """

    implementer: int
    part: int
    variant: int
    features: str
    int8_dot: str | None
    broken_runtimes: tuple[tuple[str, str], ...] = ()

    def cpuinfo(self, cores: int) -> str:
        block = (
            "processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: {f}\n"
            "CPU implementer\t: 0x{imp:02x}\nCPU architecture: 8\nCPU variant\t: 0x{var:x}\n"
            "CPU part\t: 0x{part:03x}\nCPU revision\t: 0\n\n"
        )
        return "".join(
            block.format(
                i=i, f=self.features, imp=self.implementer, var=self.variant, part=self.part
            )
            for i in range(cores)
        )


def load_emu_cpus(path: Path | None = None) -> dict[str, EmuCpu]:
    """The emulated CPU models of a data file (default: :data:`CPU_DATA`), by qemu name."""
    import yaml

    text = (
        path.read_text(encoding="utf-8")
        if path is not None
        else resources.files(__package__).joinpath(CPU_DATA).read_text(encoding="utf-8")
    )
    rows = yaml.safe_load(text)["cpus"]
    return {
        name: EmuCpu(
            implementer=int(row["implementer"]),
            part=int(row["part"]),
            variant=int(row["variant"]),
            features=" ".join(row["features"]),
            int8_dot=row.get("int8_dot"),
            broken_runtimes=tuple((row.get("broken_runtimes") or {}).items()),
        )
        for name, row in rows.items()
    }


# qemu -cpu name -> facts, read from emu_cpus.yaml.
EMU_CPUS: dict[str, EmuCpu] = load_emu_cpus()


def cpu_facts(cpu: str) -> EmuCpu:
    """Facts of an emulated CPU model.

    Raises:
        XCompressError: a model xcompress has no facts for (the message lists them).
    """
    facts = EMU_CPUS.get(cpu)
    if facts is None:
        raise XCompressError(f"unknown emulated CPU {cpu!r}: use one of {', '.join(EMU_CPUS)}")
    return facts


@dataclass(frozen=True)
class Qemu:
    """The qemu-aarch64 found on this machine."""

    path: Path
    version: str  # e.g. 7.2.22
    debian_source_version: str | None  # e.g. 1:7.2+dfsg-7+deb12u18, None if not from a .deb

    def argv(
        self,
        sysroot: Path,
        cpu: str,
        program: list[str],
        plugin: Path | None = None,
        plugin_args: dict[str, str] | None = None,
    ) -> list[str]:
        """Command line running ``program`` (guest paths) on an emulated ``cpu``."""
        cmd = [str(self.path), "-cpu", cpu, "-L", str(sysroot)]
        if plugin is not None:
            args = "".join(f",{k}={v}" for k, v in (plugin_args or {}).items())
            cmd += ["-plugin", f"{plugin}{args}"]
        return cmd + program


def find_qemu() -> Qemu:
    """The dynamic qemu-aarch64 of this machine.

    Raises:
        MissingDependencyError: not installed, or only the static one (no plugins).
    """
    path = shutil.which(QEMU)
    if path is None:
        hint = (
            " (qemu-aarch64-static cannot load plugins)" if shutil.which(f"{QEMU}-static") else ""
        )
        raise MissingDependencyError(
            f"{QEMU} not found{hint}: install it with `sudo apt-get install {QEMU_PACKAGE}`"
        )
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise MissingDependencyError(f"{path} does not run ({e}); reinstall {QEMU_PACKAGE}") from e
    m = re.search(r"version (\d+\.\d+(?:\.\d+)?)", out)
    return Qemu(Path(path), m.group(1) if m else "unknown", _debian_source_version(Path(path)))


def _debian_source_version(path: Path) -> str | None:
    dpkg_query = shutil.which("dpkg-query")
    if dpkg_query is None:
        return None
    try:
        owner = subprocess.run(
            ["dpkg", "-S", str(path.resolve())], capture_output=True, text=True, timeout=30
        ).stdout
        pkg = owner.split(":", 1)[0].strip() if owner else QEMU_PACKAGE
        ver = subprocess.run(
            [dpkg_query, "-W", "-f=${source:Version}", pkg],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return ver or None
