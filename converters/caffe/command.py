"""`protodef convert model.onnx --to caffe [-o model.prototxt] [--target bvlc]`."""
from __future__ import annotations

import argparse
from pathlib import Path

from protodef.errors import SchemaError


def convert_onnx_file(args: argparse.Namespace, path: str) -> str:
    """Export one ONNX file; returns what to print after the arrow."""
    if not path.lower().endswith(".onnx"):
        raise SchemaError("--to caffe converts an ONNX model (.onnx)", where=path)
    if args.to == "pytorch":
        raise SchemaError("an ONNX model converts to Caffe (--to caffe), not to PyTorch", where=path)
    if args.weights:
        raise SchemaError("an ONNX model carries its weights: --weights goes with a prototxt", where=path)
    from . import to_caffe
    output = args.output or str(Path(path).with_suffix(".prototxt"))
    export = to_caffe(path, target=args.target, input_shape=dict(args.input_shape), fold_batchnorm=not args.no_fold)
    prototxt, caffemodel = export.save(output)
    return f"{prototxt} + {caffemodel}"
