"""Registry of native (PyTorch) architectures, addressed by name.

Every architecture registers a frozen pydantic config class, a builder and a *tiny* config
(used by the forward tests that run over every registered name, in the style of timm's
``@register_model`` / ``list_models()``).

Example:
    >>> from xcompress.models import build_model, list_archs
    >>> "ppocrv4-rec" in list_archs()
    True
    >>> model = build_model("crnn", {"num_classes": 11})
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from xcompress.errors import ModelError

Task = Literal["rec", "det"]


class ArchConfig(BaseModel):
    """Base of every architecture config: frozen, typed, and serializable to a plain dict.

    Plain dicts (``model_dump()``) are what checkpoints store, so a checkpoint loads with
    ``torch.load(weights_only=True)`` and rebuilds the exact module.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class ArchEntry:
    """One registered architecture."""

    name: str
    task: Task
    config_cls: type[ArchConfig]
    builder: Callable[[Any], Any]  # config -> nn.Module
    tiny: Callable[[], ArchConfig]  # smallest useful config, for tests

    def make_config(self, config: ArchConfig | dict[str, Any] | None = None) -> ArchConfig:
        """Validate ``config`` (a dict, a config object or None for the defaults)."""
        if isinstance(config, self.config_cls):
            return config
        try:
            return self.config_cls.model_validate(config or {})
        except ValidationError as e:
            first = str(e).splitlines()[0]
            raise ModelError(f"invalid config for architecture {self.name}: {first}") from e


_ARCHS: dict[str, ArchEntry] = {}


def register_arch(
    name: str, *, task: Task, config_cls: type[ArchConfig], tiny: Callable[[], ArchConfig]
) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """Class/function decorator registering a builder ``config -> nn.Module`` under ``name``.

    Example:
        >>> @register_arch("my-rec", task="rec", config_cls=MyConfig, tiny=lambda: MyConfig())
        ... class MyRec(nn.Module): ...                                     # doctest: +SKIP
    """

    def deco(builder: Callable[[Any], Any]) -> Callable[[Any], Any]:
        if name in _ARCHS:
            raise ValueError(f"architecture {name!r} registered twice")
        _ARCHS[name] = ArchEntry(name, task, config_cls, builder, tiny)
        return builder

    return deco


def list_archs(task: Task | None = None) -> list[str]:
    """Names of the registered architectures (optionally only those for ``task``)."""
    _load_builtin()
    return sorted(n for n, e in _ARCHS.items() if task is None or e.task == task)


def get_arch(name: str) -> ArchEntry:
    """The registry entry for ``name``; a :class:`ModelError` lists the known names."""
    _load_builtin()
    if name not in _ARCHS:
        raise ModelError(f"unknown architecture {name!r}; known: {', '.join(sorted(_ARCHS))}")
    return _ARCHS[name]


def build_model(name: str, config: ArchConfig | dict[str, Any] | None = None) -> Any:
    """Build the architecture ``name`` from ``config`` (dict, config object or None = default)."""
    entry = get_arch(name)
    return entry.builder(entry.make_config(config))


def _load_builtin() -> None:
    # The built-in architectures register themselves on import.
    from xcompress.models import crnn, det, rec  # noqa: F401
