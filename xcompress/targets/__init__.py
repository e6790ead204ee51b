"""Targets: the devices a model is profiled on, described as data.

Each target is a YAML file in this folder (or any YAML file a user passes by path) that loads
into a frozen :class:`Target`. Code never branches on a target's name: profilers are chosen
by ``kind`` from a registry (:func:`xcompress.profile.get_profiler`), and exporters or the
search read the capabilities (ISA, runtimes, int8 dot-product support). What a runtime runs
with int8 kernels is the runtime's data (:attr:`xcompress.runtime.Runtime.int8_ops`); the CPU
models an emulated target can take are the boards' data (``xcompress/boards/emu_cpus.yaml``).
Every ``--target`` is resolved by :func:`xcompress.profile.run.open_profiler`, which also
takes board addresses (``ssh://user@host[:port]``).

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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from xcompress.errors import XCompressError

TargetKind = Literal["host", "arm64-emu", "ssh"]
Isa = Literal["x86_64", "aarch64"]
RuntimeName = str  # a runnable runtime of xcompress.runtime (``ort``, ``litert``)

TARGET_SCHEMA_VERSION = 1
#: Short names users type -> shipped target files.
TARGET_ALIASES: dict[str, str] = {"arm64-emu": "arm64-emu-cortex-a76"}
# Keys schema 1 files may hold that no code reads any more (dropped on load when empty).
_RETIRED_KEYS = ("op_costs",)


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
        runtimes: inference runtimes available on the device (names of
            :func:`xcompress.runtime.runtime_names`).
        int8_dot: the int8 dot-product instructions int8 kernels can use
            (``avx512_vnni``, ``dotprod``...), None if the CPU has none. For an emulated
            target it must be its CPU model's (checked when its profiler opens).
        emu_cpu: qemu ``-cpu`` model for emulated targets.
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

    @field_validator("runtimes")
    @classmethod
    def _known_runtimes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from xcompress.runtime import runtime_names

        known = runtime_names()
        unknown = [r for r in value if r not in known]
        if unknown:
            raise ValueError(f"unknown runtime {unknown[0]!r} (use {', '.join(known)})")
        return value


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
    for key in _RETIRED_KEYS:
        if not data.get(key, True):
            del data[key]
    try:
        return Target.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "file"
        raise XCompressError(f"target file {path} is invalid at {where}: {err['msg']}") from e


def get_target(name: str | Path) -> Target:
    """A shipped target by name, or a target YAML file by path.

    Args:
        name: a name from :func:`list_targets` (``host``, ``rpi4-cortex-a72``...), an alias
            from :data:`TARGET_ALIASES` (``arm64-emu``), or a path to a ``.yaml`` file with the
            same fields.

    Raises:
        XCompressError: unknown name (the message lists the known ones) or invalid file.
    """
    files = _builtin_files()
    key = TARGET_ALIASES.get(str(name), str(name))
    if key in files:
        return load_target(files[key])
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return load_target(path)
    raise XCompressError(
        f"unknown target {name!r}: use one of {', '.join(sorted(files))} or a target .yaml file"
    )
