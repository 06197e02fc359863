"""`protodef convert`, one net: write ONNX or PyTorch, tell the user what the model assumes (made-up weights, the
preprocessing a data layer did), and with --fp16 or --verify run what was written against float32 or a second
backend."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable

from .errors import DependencyError
from .ir import Net
from .preprocessing import summary

TORCH_EXTRA = "pip install 'protodef[torch]'"


@dataclass(frozen=True)
class Target:
    to: str = "onnx"               # "onnx", "pytorch" or "caffe" (from an ONNX model)
    torch_format: str = "source"   # "source" (.py + .pt) or "export" (.pt2)
    opset: int | None = None
    dynamic_batch: bool = False
    fold: bool = True
    float16: bool = False
    check_onnx: bool = False       # onnx's full checker before writing (--verify): it imports onnx, which costs
                                   # more than the rest of a conversion

    @property
    def suffix(self) -> str:
        """The output's suffix: .onnx, .py (with its weights in .pt) or .pt2."""
        if self.to in ("onnx", "caffe"):
            return ".onnx" if self.to == "onnx" else ".prototxt"
        return ".py" if self.torch_format == "source" else ".pt2"


def require_torch() -> None:
    """PyTorch output needs torch, an optional dependency: say how to install it, in one line."""
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as error:
        if error.name != "torch":
            raise
        raise DependencyError(f"PyTorch output needs torch, which is not installed: {TORCH_EXTRA}") from None
    except ImportError as error:   # installed, but broken (a CUDA build without its libraries, say)
        raise DependencyError(f"PyTorch output needs torch, which does not import ({error}); reinstall it: "
                              f"{TORCH_EXTRA}") from None


def cautions(net: Net) -> list[str]:
    """What the user must know about a converted model, one line each: made-up weights, preprocessing. (Layers
    that --allow-missing-weights filled are named by attach_weights' own warning.)"""
    lines = []
    kind = net.metadata.get("weights")
    if kind in ("fillers", "random"):
        made = "the layers' fillers (Caffe's initialisers)" if kind == "fillers" else "random values"
        lines.append(f"warning: no --weights, so the weights are made up from {made}, seed "
                     f"{net.metadata.get('seed', 0)}: outputs mean nothing and may be NaN or Inf (recorded in the "
                     "model as protodef.weights)")
    for step in json.loads(net.metadata.get("preprocessing", "[]")):
        lines.append(f"note: the net's input '{step['top']}' comes from layer '{step['layer']}' ({step['type']}), "
                     f"which transforms the data: {summary(step)}; give the converted model inputs transformed "
                     "the same way (recorded as protodef.preprocessing)")
    return lines


def write(net: Net, output: str, target: Target) -> list[str]:
    """Convert and write; returns the files written."""
    if target.to == "onnx":
        from converters.onnx import save_onnx
        return save_onnx(net, output, opset=target.opset, dynamic_batch=target.dynamic_batch,
                         float16=target.float16, check=target.check_onnx)
    require_torch()
    from converters.pytorch import save_pytorch
    return save_pytorch(net, output, form=target.torch_format, float16=target.float16)


def float16_error(net: Net, written: list[str], target: Target, seed: int):
    """The float16 model against the same net in float32, on seeded random inputs."""
    from .verify import compare, random_inputs, torch_runner
    inputs = random_inputs(net, seed)
    subject = _written_runner(net, written, target)
    if target.to == "onnx":
        reference = ("onnxruntime in float32", _onnx_float32_runner(net, target))
    else:
        from converters.pytorch import to_torch
        reference = ("PyTorch in float32", torch_runner(to_torch(net)))
    return compare(subject, reference, inputs, tolerance=_tolerance(target))


def verification(net: Net, written: list[str], target: Target, seed: int):
    """What was written against a second backend, on seeded random inputs (see protodef.verify)."""
    from .verify import compare, random_inputs
    subject = _written_runner(net, written, target)
    return compare(subject, _second_backend(net, written, target), random_inputs(net, seed),
                   tolerance=_tolerance(target))


def _tolerance(target: Target) -> float:
    from .verify import FLOAT16_TOLERANCE, FLOAT32_TOLERANCE
    return FLOAT16_TOLERANCE if target.float16 else FLOAT32_TOLERANCE


def _written_runner(net: Net, written: list[str], target: Target) -> tuple[str, Callable]:
    from .verify import exported_module, generated_module, onnxruntime_runner, torch_runner
    dtype = "float16" if target.float16 else "float32"
    if target.to == "onnx":
        return f"onnxruntime on {written[0]}", onnxruntime_runner(written[0])
    if target.torch_format == "source":
        return f"{written[0]} (load_model())", torch_runner(generated_module(written[0]), dtype=dtype)
    from converters.pytorch import to_torch
    names = to_torch(net)
    return (f"torch.export program {written[0]}",
            torch_runner(exported_module(written[0]), dtype=dtype, input_names=names.input_names,
                         output_names=names.output_names))


def _second_backend(net: Net, written: list[str], target: Target) -> tuple[str, Callable]:
    from .verify import reference_runner, torch_available, torch_runner
    if target.to != "onnx":
        return "onnxruntime on the ONNX lowering", _onnx_float32_runner(net, target)
    if torch_available():
        from converters.pytorch import to_torch
        return "protodef's PyTorch lowering", torch_runner(to_torch(net))
    return ("onnx's reference evaluator (install torch for a check of the conversion itself: "
            f"{TORCH_EXTRA})", reference_runner(written[0]))


def _onnx_float32_runner(net: Net, target: Target) -> Callable:
    from converters.onnx import to_onnx

    from .verify import onnxruntime_runner
    model = to_onnx(net, opset=target.opset, dynamic_batch=target.dynamic_batch)
    return onnxruntime_runner(model.SerializeToString())
