"""Importing this module registers every built-in layer type."""
from . import activation, conv, data, dense, loss, merge, norm, pool, reshape, softmax  # noqa: F401
from . import internal  # noqa: F401,E402  (protodef-internal types made by passes)
from . import detection  # noqa: F401,E402  (SSD and YOLO fork layers)
from . import resize  # noqa: F401
from . import activation_extra  # noqa: F401
from . import misc  # noqa: F401
from . import norm_extra  # noqa: F401
from . import pool_extra  # noqa: F401
