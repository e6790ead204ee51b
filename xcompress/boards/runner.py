"""The model runner that runs *on the board* (an emulated one or a real one over SSH).

This file is copied to the board and run there by its own Python, so it imports only the
standard library, numpy and the runtime it is asked for, and keeps to Python 3.8 syntax.
It is never imported by xcompress on the host.

Usage on the board::

    python3 -u runner.py --model m.onnx --input x.npy --runtime ort --threads 4 \
        [--output y.npy]

It loads the model the way the host's runtime layer does (:mod:`xcompress.runtime`: the same
onnxruntime session options; for a ``.tflite`` export, the size-bucket signature the host's
LiteRT runner would pick, with the same padding and scaling), runs the input once (a wrong
shape fails here), optionally saves that output, then prints one JSON line ``{"ready": ...}``
with the runtime version and the board's facts, or ``{"error": ..., "kind": ...}`` and exits.
After that it serves JSON-line requests on stdin, one JSON line of answer each:

- ``{"op": "time", "n": N}`` -> ``{"times_ms": [...]}``: N back-to-back timed inferences.
- ``{"op": "count", "n": N, "warmup": W}`` -> ``{"ok": true}``: W untimed inferences, a
  marker, then N inferences each followed
  by a marker; the instruction-counting QEMU plugin records its counters at each marker
  (``lseek(-1, MARKER + code)``, a harmless failing call elsewhere).
- ``{"op": "quit"}``.
"""

import argparse
import gc
import json
import os
import platform
import sys
import time

MARKER_BASE = 0x5843505200000000  # must match insncount.c
MARKER_BEGIN = 1
MARKER_RUN = 3  # after each counted run

RUNTIME_MODULES = {"ort": "onnxruntime", "litert": "ai-edge-litert (or tflite-runtime)"}


def _say(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _marker(code):
    try:
        os.lseek(-1, MARKER_BASE + code, os.SEEK_SET)
    except OSError:
        pass  # EBADF, as intended: only the plugin's syscall hook cares


# Same as xcompress.runtime.ort.session_options(threads, timing=True): one inter-op thread,
# quiet logs, and idle workers that do not spin while nothing runs (a test keeps them equal).
ORT_LOG_SEVERITY = 3
ORT_TIMING_CONFIG = {"session.intra_op.allow_spinning": "0"}


def _open_ort(path, threads, shape):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = ORT_LOG_SEVERITY
    for key, value in ORT_TIMING_CONFIG.items():
        so.add_session_config_entry(key, value)
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name

    def run(x):
        return sess.run([out_name], {in_name: x})[0]

    return run, ort.__version__


# -- LiteRT: the bucket rule of xcompress.runtime.litert, restated without xcompress ---------


def choose_bucket(buckets, h, w, content=None):
    """Index of the bucket (signature) an h x w batch runs in.

    A copy of ``xcompress.runtime.litert.choose_bucket`` (this file cannot import xcompress;
    a test checks that both choose alike): the smallest bucket that holds the batch; else the
    smallest that holds ``content()`` (its size without trailing zero padding); else the
    largest bucket of height h, else the largest.
    """

    def smallest(hh, ww):
        fits = [i for i, (bh, bw) in enumerate(buckets) if bh >= hh and bw >= ww]
        return min(fits, key=lambda i: (buckets[i][0] * buckets[i][1], i)) if fits else None

    idx = smallest(h, w)
    if idx is None and content is not None:
        idx = smallest(*content())
    if idx is None:
        same_h = [i for i, b in enumerate(buckets) if b[0] == h]
        pool = same_h or range(len(buckets))
        idx = max(pool, key=lambda i: buckets[i][0] * buckets[i][1])
    return idx


def _content_size(x):
    import numpy as np

    nz = np.abs(x).max(axis=(0, 1)) > 0
    rows, cols = np.flatnonzero(nz.any(axis=1)), np.flatnonzero(nz.any(axis=0))
    return (int(rows[-1]) + 1 if rows.size else 1, int(cols[-1]) + 1 if cols.size else 1)


def _resize(x, nh, nw):
    """Bilinear resize of [N, C, H, W] to (nh, nw), pixel centres as OpenCV's INTER_LINEAR."""
    import numpy as np

    def axis(n_in, n_out):
        pos = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), (pos - lo).astype(np.float32)

    y0, y1, fy = axis(x.shape[2], nh)
    x0, x1, fx = axis(x.shape[3], nw)
    top = x[:, :, y0, :] * (1 - fy)[:, None] + x[:, :, y1, :] * fy[:, None]
    return (top[..., x0] * (1 - fx) + top[..., x1] * fx).astype(np.float32)


def _fit(x, bucket):
    """x padded with zeros (trimmed, then scaled, if too large) to the bucket, as the host
    runner's ``fit_to_bucket``: (batch, valid region, original size if scaled)."""
    import numpy as np

    hb, wb = bucket
    n, c, h, w = x.shape
    scaled_from = None
    if h > hb or w > wb:
        h, w = _content_size(x)
        x = x[:, :, :h, :w]
    if h > hb or w > wb:
        scaled_from = (h, w)
        if h == hb:  # text lines: keep the height, squeeze the width
            nh, nw = hb, wb
        else:
            s = min(hb / h, wb / w)
            nh, nw = max(1, min(hb, round(h * s))), max(1, min(wb, round(w * s)))
        x, h, w = _resize(x, nh, nw), nh, nw
    out = np.zeros((n, c, hb, wb), np.float32)
    out[:, :, :h, :w] = x
    return out, (h, w), scaled_from


def _unfit(y, bucket, valid, scaled_from, size):
    """A spatial output (detector map) cropped, scaled and padded back to the input's size."""
    import numpy as np

    if y.ndim != 4 or tuple(y.shape[2:]) != tuple(bucket):
        return y
    y = y[:, :, : valid[0], : valid[1]]
    if scaled_from is not None:
        y = _resize(y, *scaled_from)
    if tuple(y.shape[2:]) != tuple(size):
        full = np.zeros(y.shape[:2] + tuple(size), np.float32)
        full[:, :, : y.shape[2], : y.shape[3]] = y
        y = full
    return y


def _io_quant(detail):
    scale, zero = detail.get("quantization", (0.0, 0))
    return (float(scale), int(zero)) if scale else None


def _quantize(x, quant, dtype):
    import numpy as np

    if quant is None:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / quant[0]) + quant[1], info.min, info.max).astype(dtype)


def _dequantize(y, quant):
    import numpy as np

    if quant is None:
        return np.asarray(y, np.float32)
    return (y.astype(np.float32) - quant[1]) * quant[0]


def _signatures(interp):
    """(runner, input, output, input detail, output detail, (H, W)) per bucket signature,
    or [] when the file is not an xcompress export (no 1xCxHxW single-input signatures)."""
    sigs = []
    for key in interp.get_signature_list():
        r = interp.get_signature_runner(key)
        ins, outs = r.get_input_details(), r.get_output_details()
        if len(ins) != 1:
            return []
        (in_name, ind), (out_name, outd) = next(iter(ins.items())), next(iter(outs.items()))
        shape = tuple(int(d) for d in ind["shape"])
        if len(shape) != 4 or shape[0] != 1:
            return []
        sigs.append((r, in_name, out_name, ind, outd, shape[2:]))
    return sigs


def _bucketed_run(sigs):
    """run(x) as the host's LiteRTRunner: pick a bucket, fit, run line by line, map back."""
    import numpy as np

    buckets = [s[5] for s in sigs]

    def run(x):
        n, _, h, w = x.shape
        idx = choose_bucket(buckets, h, w, content=lambda: _content_size(x))
        r, in_name, out_name, ind, outd, bucket = sigs[idx]
        fitted, valid, scaled_from = _fit(np.asarray(x, np.float32), bucket)
        in_q, out_q = _io_quant(ind), _io_quant(outd)
        outs = []
        for i in range(n):  # signatures have batch 1 (fixed shapes)
            feed = _quantize(fitted[i : i + 1], in_q, ind["dtype"])
            outs.append(_dequantize(r(**{in_name: feed})[out_name], out_q))
        return _unfit(np.concatenate(outs), bucket, valid, scaled_from, (h, w))

    return run


def _single_run(interp, shape):
    """run(x) for a one-graph .tflite file, resized to the input (NHWC if the model is)."""
    import numpy as np

    inp = interp.get_input_details()[0]
    shape = tuple(shape)
    # Cards give NCHW shapes; TFLite models are usually NHWC: feed them transposed.
    nhwc = len(shape) == 4 and tuple(inp["shape"]) == (shape[0], shape[2], shape[3], shape[1])
    if nhwc:
        shape = (shape[0], shape[2], shape[3], shape[1])
    if tuple(inp["shape"]) != shape:
        interp.resize_tensor_input(inp["index"], list(shape))
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    in_q, out_q = _io_quant(inp), _io_quant(out)

    def run(x):
        if nhwc:
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        interp.set_tensor(inp["index"], _quantize(x, in_q, inp["dtype"]))
        interp.invoke()
        return _dequantize(interp.get_tensor(out["index"]), out_q)

    return run


def _open_litert(path, threads, shape):
    try:
        from ai_edge_litert.interpreter import Interpreter

        version = _dist_version("ai-edge-litert")
    except ImportError:
        from tflite_runtime.interpreter import Interpreter

        version = _dist_version("tflite-runtime")
    interp = Interpreter(model_path=path, num_threads=threads)
    interp.allocate_tensors()
    sigs = _signatures(interp)
    # xcompress exports hold one fixed-shape signature per input size: run the one the host
    # runner would, so the board times the graph that was evaluated.
    return (_bucketed_run(sigs) if sigs else _single_run(interp, shape)), version


def _dist_version(name):
    try:
        from importlib import metadata

        return metadata.version(name)
    except Exception:  # noqa: BLE001 - old Pythons, odd installs: the version is only a label
        return "unknown"


OPENERS = {"ort": _open_ort, "litert": _open_litert}


def _board_facts():
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            cpuinfo = f.read(65536)
    except OSError:
        cpuinfo = ""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        load = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        load = None
    return {
        "isa": platform.machine(),
        "cores": cores,
        "cpuinfo": cpuinfo,
        "os": platform.system() + " " + platform.release(),
        "load_avg_1m": load,
        "python": platform.python_version(),
    }


def _args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--runtime", required=True, choices=sorted(OPENERS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--output")
    # Counting mode: say nothing that varies from run to run (load average, timings) before
    # counting; the size of such strings moves later heap allocations, and with them the
    # instruction count of alignment-dependent code (memcpy heads and tails).
    ap.add_argument("--deterministic", action="store_true")
    return ap.parse_args()


def _first_line(e):
    return str(e).strip().splitlines()[0][:300] if str(e).strip() else repr(e)


def _load(args, x):
    """(run, version), or the exit code (3 or 4) after saying why the model cannot run."""
    try:
        return OPENERS[args.runtime](args.model, args.threads, x.shape)
    except ImportError as e:
        _say(
            {
                "error": str(e),
                "kind": "missing_runtime",
                "missing": RUNTIME_MODULES[args.runtime],
                "python": sys.executable,
            }
        )
        return 3
    except Exception as e:  # noqa: BLE001 - runtimes raise their own types; report one line
        _say({"error": _first_line(e), "kind": "load"})
        return 4


def _time(run, x, n):
    times = []
    gc.disable()  # a collection inside a timed run would be charged to the model
    try:
        for _ in range(n):
            t0 = time.perf_counter_ns()
            run(x)
            times.append((time.perf_counter_ns() - t0) / 1e6)
    finally:
        gc.enable()
    return {"times_ms": times}


def _count(run, x, n, warmup):
    for _ in range(warmup):
        run(x)
    gc.collect()
    gc.disable()
    _marker(MARKER_BEGIN)
    for _ in range(n):
        run(x)
        _marker(MARKER_RUN)
    gc.enable()
    return {"ok": True}


def _serve(run, x):
    """Answer JSON-line requests on stdin until ``quit`` or end of input."""
    for line in sys.stdin:
        req = json.loads(line)
        op = req.get("op")
        n = int(req.get("n", 0))
        if op == "time":
            _say(_time(run, x, n))
        elif op == "count":
            _say(_count(run, x, n, int(req.get("warmup", 0))))
        elif op == "quit":
            _say({"ok": True})
            return 0
        else:
            _say({"error": "unknown op " + repr(op), "kind": "protocol"})
    return 0


def main():
    args = _args()
    try:
        import numpy as np
    except ImportError:
        _say(
            {
                "error": "numpy is not installed for " + sys.executable,
                "kind": "missing_runtime",
                "missing": "numpy",
            }
        )
        return 3
    x = np.load(args.input)
    loaded = _load(args, x)
    if isinstance(loaded, int):
        return loaded
    run, version = loaded
    try:
        y = run(x)
    except Exception as e:  # noqa: BLE001
        _say({"error": _first_line(e), "kind": "shape"})
        return 4
    if args.output:
        np.save(args.output, np.asarray(y))
    facts = {} if args.deterministic else _board_facts()
    facts.update({"ready": True, "runtime_version": version})
    _say(facts)
    return _serve(run, x)


if __name__ == "__main__":
    sys.exit(main())
