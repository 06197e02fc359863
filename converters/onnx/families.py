"""Importing this module registers every built-in ONNX converter (one module per layer family)."""
from . import activation, conv, dense, merge, misc, norm, pool, reshape, softmax  # noqa: F401
from . import activation_extra, misc_extra, norm_extra, pool_extra, resize_extra  # noqa: F401,E402  (long-tail layers)
from . import detection  # noqa: F401,E402  (SSD and YOLO fork layers)
