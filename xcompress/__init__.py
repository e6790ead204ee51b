"""xcompress: make trained OCR models small and fast for a target device.

Importing the package is cheap: onnxruntime, torch and tensorflow are imported only
by the modules that need them.
"""

__version__ = "0.1.0"
