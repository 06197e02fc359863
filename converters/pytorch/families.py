"""Importing this module registers every built-in PyTorch converter (one module per layer family)."""
from . import activation, conv, dense, merge, misc, norm, pool, reshape, softmax  # noqa: F401
from . import loss  # noqa: F401,E402  (TRAIN-phase lowerings only)
from . import detection  # noqa: F401,E402  (SSD and YOLO fork layers)
from . import activation_extra, misc_extra, norm_extra, pool_extra, resize_extra  # noqa: F401,E402  (long-tail layers)
