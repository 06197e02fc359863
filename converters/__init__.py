"""Backends: lower a protodef Net to other formats (ONNX, PyTorch, graphviz drawings)."""
