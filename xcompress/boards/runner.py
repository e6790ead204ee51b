"""The model runner that runs *on the board* (an emulated one or a real one over SSH).

This file is copied to the board and run there by its own Python, so it imports only the
standard library, numpy and the runtime it is asked for, and keeps to Python 3.8 syntax.
It is never imported by xcompress on the host.

Usage on the board::

    python3 -u runner.py --model m.onnx --input x.npy --runtime ort --threads 4 \
        [--output y.npy]

It loads the model, runs the input once (a wrong shape fails here), optionally saves that
output, then prints one JSON line ``{"ready": ...}`` with the runtime version and the board's
facts, or ``{"error": ..., "kind": ...}`` and exits. After that it serves JSON-line requests
on stdin, one JSON line of answer each:

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


def _open_ort(path, threads, shape):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    # Same as the host profiler: idle workers must not spin while nothing runs.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name

    def run(x):
        return sess.run([out_name], {in_name: x})[0]

    return run, ort.__version__


def _open_litert(path, threads, shape):
    import numpy as np

    try:
        from ai_edge_litert.interpreter import Interpreter

        version = _dist_version("ai-edge-litert")
    except ImportError:
        from tflite_runtime.interpreter import Interpreter

        version = _dist_version("tflite-runtime")
    interp = Interpreter(model_path=path, num_threads=threads)
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
    in_scale, in_zero = inp.get("quantization", (0.0, 0))
    out_scale, out_zero = out.get("quantization", (0.0, 0))

    def run(x):
        if nhwc:
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        if in_scale:  # a fully integer model: quantize the float input the way it asks
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / in_scale + in_zero), info.min, info.max)
        interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interp.invoke()
        y = interp.get_tensor(out["index"])
        if out_scale:
            y = (y.astype(np.float32) - out_zero) * out_scale
        return y

    return run, version


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


def main():
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
    args = ap.parse_args()

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
    try:
        run, version = OPENERS[args.runtime](args.model, args.threads, x.shape)
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
        _say(
            {
                "error": str(e).strip().splitlines()[0][:300] if str(e).strip() else repr(e),
                "kind": "load",
            }
        )
        return 4
    try:
        y = run(x)
    except Exception as e:  # noqa: BLE001
        _say(
            {
                "error": str(e).strip().splitlines()[0][:300] if str(e).strip() else repr(e),
                "kind": "shape",
            }
        )
        return 4
    if args.output:
        np.save(args.output, np.asarray(y))
    facts = {} if args.deterministic else _board_facts()
    facts.update({"ready": True, "runtime_version": version})
    _say(facts)

    for line in sys.stdin:
        req = json.loads(line)
        op = req.get("op")
        n = int(req.get("n", 0))
        if op == "time":
            times = []
            gc.disable()  # a collection inside a timed run would be charged to the model
            try:
                for _ in range(n):
                    t0 = time.perf_counter_ns()
                    run(x)
                    times.append((time.perf_counter_ns() - t0) / 1e6)
            finally:
                gc.enable()
            _say({"times_ms": times})
        elif op == "count":
            for _ in range(int(req.get("warmup", 0))):
                run(x)
            gc.collect()
            gc.disable()
            _marker(MARKER_BEGIN)
            for _ in range(n):
                run(x)
                _marker(MARKER_RUN)
            gc.enable()
            _say({"ok": True})
        elif op == "quit":
            _say({"ok": True})
            return 0
        else:
            _say({"error": "unknown op " + repr(op), "kind": "protocol"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
