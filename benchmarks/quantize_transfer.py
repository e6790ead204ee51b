"""Does ``xcompress quantize`` keep its budget on data it has never seen? (issue 13)

For each model, one run, one table:

* ``defaults``: ``xcompress quantize MODEL`` with no data (built-in synthetic calibration);
  ablations of the defaults where asked (``--ablate``): the generator's light damage instead
  of the photo preset, no per-group range search, no bias correction;
* ``own-data``: calibrated on the even-numbered samples of the held-out sets (the user's own
  data), its budget checked on a split of them, scored on the odd-numbered ones.

Held-out sets: ``benchmarks/heldout.py`` (Faker text and document text -- license texts,
zh_CN message catalogs, codes -- in 27 fonts the generator never uses, degraded as scans and
photos; detection pages mixing English and Chinese with rotated lines). Scores: the project's
evaluation core with paired bootstrap 95% intervals (``benchmarks/heldout_score.py``). Speed:
the quantize report's own alternating fp32/int8 comparison (same run, same shape, 2 threads).

Example:
    python benchmarks/quantize_transfer.py --out bench/transfer \\
        --models ppocr-v4-rec ppocr-v4-det ppocr-v5-rec ppocr-v4-cls --ablate ppocr-v4-rec
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import heldout  # noqa: E402
import heldout_score  # noqa: E402

REC_SETS = ("en", "zh", "doc-en", "doc-zh", "codes")
DET_SETS = ("det-mix", "doc-det")
#: ablations of the defaults: label -> QuantizeConfig fields
ABLATIONS = {
    "defaults, light synthetic damage": {"synth_augment": "default"},
    "defaults, no range search": {"range_search": ()},
    "defaults, no bias correction": {"bias_correction": False},
    "defaults, stem int8 (no float_stem)": {"float_stem": False},
    "int8-conv plan (--plan int8-conv)": {"plans": ("int8-conv",)},
}


def held_out_sets(root: Path, charset: set[str]) -> dict[str, Path]:
    """Every held-out set (written once; same seed, same files)."""
    sets = {}
    for kind in ("en", "zh", "digits", *heldout.DOC_KINDS):
        sets[kind] = heldout.make_set(root / kind, kind, 200, 7, charset)
    sets.update(heldout.det_sets(root, charset))
    return sets


def copy_set(parts: list[tuple[Path, slice]], out: Path) -> Path:
    """One set holding the ``slice`` of each part's samples (images copied, names prefixed
    by part), written once: into a temporary folder, then renamed."""
    from xcompress.data import (
        DetSample,
        RecSample,
        load_dataset,
        write_det_labels,
        write_rec_labels,
    )

    out = out.resolve()  # labels hold paths relative to their own folder
    if (out / "label.txt").is_file():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    moved, task = [], None
    for i, (src, part) in enumerate(parts):
        ds = load_dataset(src)
        task = ds.task
        for s in list(ds.samples)[part]:
            dst = tmp / f"{i}-{Path(s.image).name}"
            shutil.copyfile(s.image, dst)
            moved.append(RecSample(dst, s.text) if task == "rec" else DetSample(dst, s.boxes))
    (write_rec_labels if task == "rec" else write_det_labels)(tmp / "label.txt", moved)
    tmp.rename(out)
    return out


def half_set(src: Path, out: Path, parity: int) -> Path:
    """The even (0) or odd (1) samples of ``src`` as a set of its own."""
    return copy_set([(src, slice(parity, None, 2))], out)


def quantize_run(model: str, out: Path, calib: Path | None, fields: dict) -> dict:
    """One quantize run (an earlier run's finished output with the same config is reused,
    so an interrupted benchmark resumes)."""
    from xcompress.errors import XCompressError
    from xcompress.quantize import QuantizeConfig, quantize

    cfg = QuantizeConfig(**fields)
    done = out / "report.json"
    if done.is_file() and QuantizeConfig(**json.loads(done.read_text())["config"]) == cfg:
        r = json.loads(done.read_text())
    else:
        try:
            r = quantize(model, calib, out, cfg, progress=True, force=True).report
        except XCompressError as e:
            return {"error": str(e)}
    return {"path": str(out), "time_s": r["time_s"],
            "plan": r["plan"]["name"], "float_layers": len(r["layers"]["kept_float"]),
            "method": r["calibration"]["method"], "percentile": r["calibration"]["percentile"],
            "tensor_groups": r["calibration"].get("tensor_groups", {}),
            "bias_correction": r.get("bias_correction", {}).get("applied", False),
            "size_ratio": r["size"]["ratio"], "speedup": r["latency"]["ratio"],
            "fp32_ms": r["latency"]["fp32_median_ms"],
            "int8_ms": r["latency"]["int8_median_ms"],
            "shape": r["latency"]["shape"], "threads": r["latency"]["threads"],
            "budget_check": {k: {"drop": v["drop"], "n": v.get("n"), "ci95": v.get("drop_ci95")}
                             for k, v in r["accuracy"].items()}}


def run(out: Path, models: list[str], ablate: list[str], own_data: list[str] | None = None,
        ablations: list[str] | None = None) -> dict:
    from xcompress.artifact import resolve_model

    out.mkdir(parents=True, exist_ok=True)
    charset = set(resolve_model("ppocr-v4-rec").card.charset or [])
    sets = held_out_sets(out / "heldout", charset)
    jpath = out / "transfer.json"
    results = json.loads(jpath.read_text()) if jpath.is_file() else {"models": {}}
    from xcompress.profile.machine import host_machine

    results["machine"] = {"cpu": host_machine().describe(),
                          "python": platform.python_version(), "threads": 2}
    for name in models:
        art = resolve_model(name)
        task = art.card.task
        names = REC_SETS if task in ("rec", "cls") else DET_SETS
        if task == "cls":
            names = ()  # no held-out direction set: speed and the budget check only
        full = {k: sets[k] for k in names}
        odd = {k: half_set(sets[k], out / "halves" / f"{k}-odd", 1) for k in names}
        even = [half_set(sets[k], out / "halves" / f"{k}-even", 0) for k in names]
        mdir = out / name
        variants: dict[str, dict] = {"defaults": quantize_run(name, mdir / "defaults", None, {})}
        if name in ablate:
            for label, fields in ABLATIONS.items():
                if ablations is not None and label not in ablations:
                    continue
                variants[label] = quantize_run(name, mdir / label.replace(", ", "-").replace(
                    " ", "_"), None, fields)
        if even and (own_data is None or name in own_data):
            own = copy_set([(e, slice(None)) for e in even],
                           out / "halves" / f"own-{task}-{name}")
            variants["own-data"] = quantize_run(name, mdir / "own-data", own, {})
        entry = {"task": task, "variants": variants, "scores": {}}
        for label, v in variants.items():
            if "path" not in v or not names:
                continue
            # defaults on the whole sets; every variant on the odd halves (own-data's test)
            if label != "own-data":
                entry["scores"][f"{label} / full"] = heldout_score.score(
                    [name, v["path"]], list(full.values()))
            entry["scores"][f"{label} / odd half"] = heldout_score.score(
                [name, v["path"]], list(odd.values()))
        results["models"][name] = entry
        jpath.write_text(json.dumps(results, indent=2, default=str))
    return results


def markdown(results: dict) -> str:
    m = results.get("machine", {})
    lines = ["# xcompress quantize on held-out data it never saw", "",
             f"Machine: {m.get('cpu')}, Python {m.get('python')}, onnxruntime CPU, "
             f"{m.get('threads')} threads. Accuracy deltas are int8 - fp32 in points with "
             "paired bootstrap 95% intervals; speed-up is fp32/int8 median latency from the "
             "quantize run's alternating comparison.", ""]
    for name, e in results["models"].items():
        task = e["task"]
        keys = ("cer_nospace", "cer") if task == "rec" else ("hmean",)
        lines += [f"## {name} ({task})", ""]
        vhead = ("| variant | plan | float layers | method | size % | speed-up | fp32 ms | "
                 "int8 ms | time s |")
        lines += [vhead, "|---" * 9 + "|"]
        for label, v in e["variants"].items():
            if "error" in v:
                lines.append(f"| {label} | error: {v['error'][:200]} | | | | | | | |")
                continue
            meth = v["method"] + (f" {v['percentile']:g}" if v.get("percentile") else "")
            if v.get("tensor_groups"):
                meth += " (" + ", ".join(f"{g}: {x}" for g, x in v["tensor_groups"].items()) + ")"
            if v.get("bias_correction"):
                meth += " + bias correction"
            lines.append(f"| {label} | {v['plan']} | {v['float_layers']} | {meth} | "
                         f"{v['size_ratio'] * 100:.1f} | {v['speedup']:.2f}x | "
                         f"{v['fp32_ms']:.1f} | {v['int8_ms']:.1f} | {v['time_s']:.0f} |")
        lines.append("")
        for label, sc in e["scores"].items():
            lines += [f"**{label}**", "", "| set | n | " + " | ".join(
                f"fp32 {k} % | int8 {k} % | delta pt (95% CI)" for k in keys) + " |",
                "|---" * (2 + 3 * len(keys)) + "|"]
            for d, s in sc["sets"].items():
                fp, q = s["results"][0], s["results"][1]
                cells = []
                for k in keys:
                    lo, hi = q["ci95"][k]
                    cells += [f"{fp[k] * 100:.2f}", f"{q[k] * 100:.2f}",
                              f"{q['delta'][k] * 100:+.2f} ({lo * 100:+.2f}..{hi * 100:+.2f})"]
                lines.append(f"| {Path(d).name} | {s['n']} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench/transfer"))
    ap.add_argument("--models", nargs="+", default=["ppocr-v4-rec", "ppocr-v4-det",
                                                    "ppocr-v5-rec", "ppocr-v4-cls"])
    ap.add_argument("--ablate", nargs="*", default=["ppocr-v4-rec"])
    ap.add_argument("--ablations", nargs="*", choices=list(ABLATIONS),
                    help="only these ablations (default: all)")
    ap.add_argument("--own-data", nargs="*", help="models calibrated on own data too "
                    "(default: all)")
    a = ap.parse_args()
    res = run(a.out, a.models, a.ablate, a.own_data, a.ablations)
    md = markdown(res)
    (a.out / "transfer.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
