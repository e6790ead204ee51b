"""User-facing errors.

Anything a user can cause (a bad path, a corrupt model, an empty data set, a budget nothing
meets) raises an :class:`XCompressError` whose message is one line that says what to do.
The CLI prints it as ``error: <message>`` and exits with :attr:`XCompressError.exit_code`;
it never shows a traceback for these.
"""

from __future__ import annotations


class XCompressError(Exception):
    """Base class of every error caused by user input; ``str(e)`` is a one-line message."""

    exit_code = 2


class ModelError(XCompressError):
    """A model that cannot be read, is not an OCR model, or is not supported."""


class DataError(XCompressError):
    """A data set that is missing, empty, malformed or does not fit the model."""


class BudgetError(XCompressError):
    """A budget (accuracy, latency, size) that no candidate meets."""

    exit_code = 3


class MissingDependencyError(XCompressError):
    """An optional backend that is not installed."""
