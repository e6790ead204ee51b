"""PP-OCR pre-processing, post-processing and metrics, matching PaddleOCR's numerics.

- :mod:`xcompress.ocr.preprocess` — images (BGR uint8) to normalized NCHW float32 batches.
- :mod:`xcompress.ocr.postprocess` — model outputs to text (CTC), boxes (DB) or labels (cls).
- :mod:`xcompress.ocr.metrics` — line accuracy / CER / NED, detection P/R/Hmean, accuracy.

Submodules import numpy/opencv only; nothing here imports a runtime.
"""
