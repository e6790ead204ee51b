"""Keep third-party noise out of xcompress's output, without hiding real errors.

The TFLite route (litert-torch, ai-edge-quantizer, ai-edge-litert, and the TensorFlow / absl C++
code inside them) prints dozens of lines that say nothing to an xcompress user: C++ INFO logs,
torchao's optional CUDA kernels that do not load on a CPU machine, deprecation warnings raised
inside torch, and tqdm bars that turn into one very long line in a CI log. Two helpers, for
any command that calls into such libraries:

* :func:`silence_third_party` -- process-wide and idempotent: environment variables read when a
  library is first imported, logger levels, and narrow :mod:`warnings` filters (each by
  category plus message or module: never a blanket ignore). Call it before importing them.
* :func:`captured_stderr` -- captures what native code writes straight to file descriptor 2
  during a block (Python's own ``sys.stderr`` keeps going to the real stderr: unfiltered
  warnings, progress bars on a terminal, xcompress's log). Exceptions pass through; the caller
  puts :meth:`Captured.tail` into its error message when the block fails.

Set ``XCOMPRESS_THIRD_PARTY_LOGS=1`` to turn both off when debugging a converter.

Example:
    >>> silence_third_party()
    >>> with captured_stderr() as cap:
    ...     _ = os.write(2, b"I0000 00:00:17.2 5 port.cc:153] oneDNN custom operations are on\\n")
    ...     _ = os.write(2, b"E0000 00:00:17.4 5 convert.cc:9] unsupported op\\n")
    >>> cap.tail()  # INFO lines and the log prefix dropped
    'convert.cc:9] unsupported op'
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger("xcompress.quiet")

#: set to 1 to see every third-party message (no filters, no capture)
DEBUG_ENV = "XCOMPRESS_THIRD_PARTY_LOGS"

# Read by native code at import, hence set before the libraries are imported; setdefault, so
# a user's own setting wins.
_ENV = {
    # TensorFlow / TSL C++ logging inside litert-torch's converter and the LiteRT interpreter:
    # 2 hides INFO ("Estimated count of arithmetic ops", "oneDNN custom operations are on")
    # and WARNING, keeps ERROR.
    "TF_CPP_MIN_LOG_LEVEL": "2",
    # litert-torch prints one progress line per conversion stage.
    "LITERT_TORCH_SHOW_PROGRESS": "n",
}

# Python loggers of libraries whose INFO / WARNING messages are not for xcompress users.
_LOGGERS = (
    # torchao, imported by litert-torch, logs "Failed to load ..._C_cutlass_90a.abi3.so" for
    # its optional CUDA kernels, which do not exist on a CPU machine.
    "torchao",
    # torchao registers an Enum with torch's pytree at import; torch logs a deprecation warning
    # about that call (a torchao matter, nothing the user can act on).
    "torch.utils._pytree",
    # converter / quantizer internals (stage timings, per-op notes)
    "litert_torch",
    "ai_edge_quantizer",
)

# (message regex, category, module regex): each matches one known, harmless warning.
_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    # torch.export deep-copies pytree specs, which trips torch's own LeafSpec deprecation, once
    # per traced signature (15 times for a 5-bucket recognizer). It is raised from copyreg
    # (deepcopy), so the module cannot narrow it: the message does.
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, ""),
    # ai-edge-quantizer's calibrator needs every intermediate tensor, so it turns on the
    # interpreter's debug option, and the interpreter warns about the memory it costs.
    (r"Warning: Enabling `experimental_preserve_all_tensors`", UserWarning,
     r"ai_edge_litert\.interpreter"),
    # ai-edge-quantizer 0.10 clips int32 biases in float32, where 2**31 - 1 rounds up to 2**31
    # and overflows the cast. It happens for channels whose weights are all ~0 (scale ~1e-13);
    # the export counts those channels itself (report ``int32_bias_saturated``) and its
    # accuracy check says whether they matter.
    (r"invalid value encountered in cast", RuntimeWarning, r"ai_edge_quantizer\."),
)  # fmt: skip

_done = False


class _RootRecordsOf(logging.Filter):
    """Drops records below ERROR logged on the *root* logger from one package's files.

    ai-edge-quantizer calls ``logging.warning(...)`` (the root logger), so no logger name can
    quiet it; it warns "Quantized data for tensor ... is overriding other previously quantized
    data in buffer N" for each weight that several signatures share (the same weights, so
    the same int8 data).
    """

    def __init__(self, package: str) -> None:
        super().__init__()
        self.part = f"{os.sep}{package}{os.sep}"

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or self.part not in record.pathname


def enabled() -> bool:
    """False when the user asked for every third-party message (``XCOMPRESS_THIRD_PARTY_LOGS``)."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("1", "y", "yes", "true")


def stderr_is_tty() -> bool:
    """Whether stderr is a terminal (progress bars are useful there, noise in a log file)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def silence_third_party() -> None:
    """Quiet the TF / LiteRT / torchao / absl noise, process-wide (idempotent).

    Call before importing litert-torch, ai-edge-quantizer or ai-edge-litert: some settings are
    environment variables read by their native code at import.
    """
    if not enabled():
        return
    # warning filters every call: a ``catch_warnings`` block around a call (pytest does that
    # for each test) drops them on exit; filterwarnings replaces an identical filter
    for message, category, module in _WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    global _done
    if _done:
        return
    _done = True
    for key, value in _ENV.items():
        os.environ.setdefault(key, value)
    if not stderr_is_tty() and "tqdm" not in sys.modules:
        # tqdm (>= 4.66) reads TQDM_* defaults at import: bars that do not pass ``disable``
        # themselves are off in logs. (ai-edge-quantizer passes it: see export.tflite.)
        os.environ.setdefault("TQDM_DISABLE", "1")
    for name in _LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger().addFilter(_RootRecordsOf("ai_edge_quantizer"))
    try:  # ai-edge-quantizer also logs through absl (recipe notes at INFO / WARNING)
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # absl comes with ai-edge-litert; nothing to quiet without it
        logging.getLogger("absl").setLevel(logging.ERROR)


# lines that are noise even when a block fails: tqdm bars, INFO / WARNING logs of glog / absl
# (``I0000 00:00:...`` / ``W1202 ...``), absl's note about its own initialization, TFLite INFO
_NOISE = re.compile(
    r"\d+%\|.*\|"  # tqdm bar
    r"|^[IW]\d{4} [\d:.]+\s+\d+\s"  # glog / absl INFO, WARNING: I0000 00:00:17.29 3360 port.cc
    r"|^WARNING: All log messages before absl::InitializeLog"
    r"|^INFO: "
)
_LOG_PREFIX = re.compile(r"^[EF]\d{4} [\d:.]+\s+\d+\s+")  # ERROR / FATAL + time + thread id


@dataclass
class Captured:
    """What native code wrote to fd 2 inside :func:`captured_stderr` (set when it exits)."""

    text: str = ""

    def lines(self) -> list[str]:
        """The meaningful lines: no progress bars, INFO / WARNING logs or blank lines."""
        out = []
        for raw in re.split(r"[\r\n]+", self.text):
            line = raw.strip()
            if line and not _NOISE.search(line):
                out.append(_LOG_PREFIX.sub("", line))
        return out

    def tail(self, n: int = 3, width: int = 300) -> str:
        """The last ``n`` meaningful lines on one line (for an ``error: ...`` message)."""
        text = " | ".join(self.lines()[-n:])
        return text if len(text) <= width else "..." + text[-(width - 3) :]


def _fd2_stream(stream: object) -> bool:
    try:
        return stream.fileno() == 2  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # pytest's capture, StringIO, closed
        return False


@contextmanager
def captured_stderr() -> Iterator[Captured]:
    """Capture writes to file descriptor 2 by native code (C++ logs) for the block.

    Python's ``sys.stderr`` is pointed at the real stderr meanwhile, so progress bars on a
    terminal, unfiltered warnings and xcompress's own messages stay visible. Exceptions
    propagate; the captured text is in the yielded :class:`Captured` (also logged at DEBUG on
    success). Process-wide: other threads' writes to fd 2 in the block are captured too.

    Example:
        >>> cap = Captured()
        >>> try:
        ...     with captured_stderr() as cap:
        ...         _ = os.write(2, b"F0000 00:00:00.1 7 x.cc:1] Check failed: dims\\n")
        ...         raise RuntimeError("convert failed")
        ... except RuntimeError as e:
        ...     msg = f"{e}: {cap.tail()}"
        >>> msg
        'convert failed: x.cc:1] Check failed: dims'
    """
    cap = Captured()
    if not enabled():
        yield cap
        return
    py_stderr = sys.stderr
    try:
        py_stderr.flush()
    except (AttributeError, ValueError):
        pass
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (a daemon with stderr closed): nothing to capture
        yield cap
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        redirected = _fd2_stream(py_stderr)
        if redirected:
            sys.stderr = open(  # noqa: SIM115 (closed in finally)
                os.dup(saved), "w", buffering=1, encoding=getattr(py_stderr, "encoding", None),
                errors="backslashreplace",
            )  # fmt: skip
        try:
            yield cap
        finally:
            if redirected:
                sys.stderr.close()
                sys.stderr = py_stderr
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            cap.text = tmp.read().decode("utf-8", errors="replace")
    if cap.text.strip():
        log.debug("captured from native code:\n%s", cap.text)
