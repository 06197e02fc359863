"""Small helpers for the files a solver or data layer names (no torch here: data_transform uses them)."""
from __future__ import annotations

import os

import numpy as np


def path_beside(path: str, anchor: str) -> str:
    """A relative path from a Caffe file: beside `anchor` (the file naming it) when it is there, else as
    Caffe reads it, from the working directory."""
    beside = os.path.join(os.path.dirname(anchor), path)
    return beside if not os.path.isabs(path) and os.path.exists(beside) else path


def blob_values(blob) -> tuple[tuple[int, ...], np.ndarray]:
    """A BlobProto's shape and float32 values as Blob::FromProto takes them: the legacy 4-D fields win when
    any is set; double_data when there is any."""
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        shape = (blob.num, blob.channels, blob.height, blob.width)
    else:
        shape = tuple(blob.shape.dim)
    return shape, np.array(blob.double_data if len(blob.double_data) else blob.data, dtype=np.float32)
