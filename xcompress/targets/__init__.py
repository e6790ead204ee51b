"""Targets: the devices a model is profiled on, described as data.

Each target is a YAML file in this folder (or any YAML file a user passes by path) that loads
into a frozen :class:`Target`. Code never branches on a target's name: profilers are chosen
by ``kind`` from a registry (:func:`xcompress.profile.get_profiler`), and exporters or the
search read the capabilities (ISA, runtimes, int8 dot-product support, per-op costs).

Example:
    >>> t = get_target("rpi4-cortex-a72")
    >>> (t.kind, t.isa, t.int8_dot)
    ('ssh', 'aarch64', None)
    >>> "host" in list_targets()
    True
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from xcompress.errors import XCompressError

TargetKind = Literal["host", "arm64-emu", "ssh"]
Isa = Literal["x86_64", "aarch64"]
RuntimeName = Literal["ort", "litert"]

TARGET_SCHEMA_VERSION = 1


class Target(BaseModel):
    """One device, as data.

    For ``kind: host`` the fields left ``None`` (``isa``, ``cores``, ``int8_dot``) mean
    "detected at run time"; the detected facts are recorded in every latency result.

    Attributes:
        name: file stem and the name users pass to ``--target``.
        description: one line for humans.
        kind: how it is reached; picks the profiler (``host`` in-process, ``arm64-emu``
            under qemu-aarch64, ``ssh`` a real board).
        isa: instruction set of the device's CPU.
        cores: CPU cores on the device.
        default_threads: intra-op threads used when the user gives none (None: all cores).
        runtimes: inference runtimes available on the device.
        int8_dot: the int8 dot-product instructions int8 kernels can use
            (``avx512_vnni``, ``dotprod``...), None if the CPU has none.
        emu_cpu: qemu ``-cpu`` model for emulated targets.
        op_costs: measured per-op costs (op type -> cost), filled in by later measurements.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = TARGET_SCHEMA_VERSION
    name: str
    description: str = ""
    kind: TargetKind
    isa: Isa | None = None
    cores: int | None = Field(default=None, ge=1)
    default_threads: int | None = Field(default=None, ge=1)
    runtimes: tuple[RuntimeName, ...] = ("ort",)
    int8_dot: str | None = None
    emu_cpu: str | None = None
    op_costs: dict[str, float] = Field(default_factory=dict)


def _builtin_files() -> dict[str, Path]:
    folder = resources.files(__name__)
    return {
        Path(entry.name).stem: Path(str(entry))
        for entry in folder.iterdir()
        if entry.name.endswith((".yaml", ".yml"))
    }


def list_targets() -> list[str]:
    """Names of the targets shipped with xcompress, sorted."""
    return sorted(_builtin_files())


def load_target(path: str | Path) -> Target:
    """Load a target description from a YAML file.

    Raises:
        XCompressError: the file is unreadable or does not describe a valid target.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise XCompressError(f"cannot read target file {path}: {e}") from e
    if not isinstance(data, dict):
        raise XCompressError(f"target file {path} must hold a mapping of fields")
    data.setdefault("name", path.stem)
    try:
        return Target.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "file"
        raise XCompressError(f"target file {path} is invalid at {where}: {err['msg']}") from e


def get_target(name: str | Path) -> Target:
    """A shipped target by name, or a target YAML file by path.

    Args:
        name: a name from :func:`list_targets` (``host``, ``rpi4-cortex-a72``...) or a path
            to a ``.yaml`` file with the same fields.

    Raises:
        XCompressError: unknown name (the message lists the known ones) or invalid file.
    """
    files = _builtin_files()
    if str(name) in files:
        return load_target(files[str(name)])
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return load_target(path)
    raise XCompressError(
        f"unknown target {name!r}: use one of {', '.join(sorted(files))} or a target .yaml file"
    )
