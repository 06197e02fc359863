"""Importing this module registers every built-in layer type."""
from . import activation, conv, data, dense, loss, merge, norm, pool, reshape, softmax  # noqa: F401
