"""A name -> class registry whose built-in members are imported on first lookup.

Exporters, recipe steps and the like register themselves with a class decorator when their
module is imported; importing the package that holds the registry stays lean because the
built-in modules (which import heavy libraries at use, or their own dependencies) are loaded
only when a name is first looked up.

Example:
    >>> reg = LazyRegistry[type]("thing", ())
    >>> @reg.register
    ... class Foo:
    ...     name = "foo"
    >>> reg.names(), reg.lookup("foo") is Foo, reg.lookup("bar")
    (['foo'], True, None)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LazyRegistry(dict[str, T], Generic[T]):
    """A dict of registered members by ``member.name`` (``key`` picks another attribute).

    Args:
        kind: what is registered, for messages (``exporter``, ``step``).
        builtin_modules: modules imported before the first lookup; they register the
            built-in members.
    """

    def __init__(self, kind: str, builtin_modules: tuple[str, ...],
                 key: Callable[[T], str] = lambda m: m.name) -> None:  # type: ignore[attr-defined]
        super().__init__()
        self.kind = kind
        self.builtin_modules = builtin_modules
        self._key = key
        self._loaded = False

    def register(self, member: T) -> T:
        """Class decorator: make ``member`` available under its name."""
        self[self._key(member)] = member
        return member

    def _load_builtin(self) -> None:
        if not self._loaded:
            for mod in self.builtin_modules:
                importlib.import_module(mod)
            self._loaded = True

    def names(self) -> list[str]:
        """Registered names, sorted (built-ins loaded first)."""
        self._load_builtin()
        return sorted(self)

    def lookup(self, name: str) -> T | None:
        """The member registered as ``name``, or None (built-ins loaded first)."""
        self._load_builtin()
        return self.get(name)
