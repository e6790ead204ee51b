"""`import xcompress` and the CLI's start-up must not load heavy backends (STYLE: lean imports)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "onnxruntime", "tensorflow", "ai_edge_litert", "litert_torch", "jax", "cv2")


def _loaded_after(stmt: str) -> list[str]:
    report = f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    code = f"import sys, json\n{stmt}\n{report}"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_package_and_cli_import_no_backend():
    assert _loaded_after("import xcompress, xcompress.cli.main") == []


def test_the_check_sees_a_backend():
    assert _loaded_after("import onnxruntime") == ["onnxruntime"]


def test_api_packages_import_no_backend():
    stmt = "import xcompress.data, xcompress.export, xcompress.pipeline, xcompress.zoo"
    assert _loaded_after(stmt) == []
