"""Native PyTorch OCR architectures whose structure (stages, blocks, channels) tools address.

Importing this package imports torch; ``import xcompress`` does not import it.

Example:
    >>> from xcompress.models import build_model, list_archs
    >>> list_archs()
    ['crnn', 'ppocrv4-det', 'ppocrv4-rec']
"""

from xcompress.models.registry import (
    ArchConfig,
    ArchEntry,
    build_model,
    get_arch,
    list_archs,
    register_arch,
)

__all__ = ["ArchConfig", "ArchEntry", "build_model", "get_arch", "list_archs", "register_arch"]
