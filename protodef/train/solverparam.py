"""Reading a solver.prototxt (SolverParameter) as Caffe's ReadSolverParamsFromTextFileOrDie does: the legacy
`solver_type` enum upgraded to `type`, and Caffe's checks on the fields done once, up front."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from google.protobuf import text_format

from ..errors import Location, ParseError, SchemaError
from ..source import MAX_PROTOTXT_BYTES, _located_error, decode_text
from .policies import check_policy
from .updates import REGULARIZATION_TYPES, rule_named

# SolverParameter.SolverType -> the `type` string (upgrade_proto.cpp, UpgradeSolverType)
_LEGACY_TYPES = {0: "SGD", 1: "Nesterov", 2: "AdaGrad", 3: "RMSProp", 4: "AdaDelta", 5: "Adam"}
_TRAIN_NET_FIELDS = ("net", "net_param", "train_net", "train_net_param")


def read_solver_param(path: str | os.PathLike) -> Any:
    """Parse and check a solver prototxt; errors carry path:line:column."""
    from caffe_proto import caffe_pb2

    where = os.fspath(path)
    try:
        raw = Path(where).read_bytes() if os.path.getsize(where) <= MAX_PROTOTXT_BYTES else None
    except OSError as exc:
        raise ParseError(f"cannot read the solver file: {exc.strerror}", where=where) from None
    if raw is None:
        raise ParseError("the file is too large for a solver definition", where=where,
                         expected=f"at most {MAX_PROTOTXT_BYTES} bytes")
    param = caffe_pb2.SolverParameter()
    try:
        text_format.Merge(decode_text(raw), param)
    except text_format.ParseError as exc:
        raise _located_error(exc, where) from None
    return checked_solver_param(param, where)


def checked_solver_param(param: Any, where: str = "<solver>") -> Any:
    """Upgrade the legacy solver_type and apply Caffe's CHECKs (solver constructors, GetLearningRate)."""
    param = _upgraded(param, where)
    here = Location(where)
    rule_named(param.type, here)
    check_policy(param, here)
    if param.regularization_type not in REGULARIZATION_TYPES:
        raise SchemaError("unknown regularization_type", where=here, expected=" or ".join(REGULARIZATION_TYPES),
                          found=repr(param.regularization_type))
    if param.iter_size < 1:
        raise SchemaError("iter_size must be at least 1", where=here, expected=">= 1", found=param.iter_size)
    if param.type in ("AdaGrad", "RMSProp") and param.momentum != 0:
        raise SchemaError(f"momentum cannot be used with {param.type}", where=here, expected=0, found=param.momentum)
    if param.type == "RMSProp" and not 0 <= param.rms_decay < 1:
        raise SchemaError("rms_decay should lie between 0 and 1", where=here, expected="0 <= rms_decay < 1",
                          found=param.rms_decay)
    given = [name for name in _TRAIN_NET_FIELDS if param.HasField(name)]
    if len(given) > 1:
        raise SchemaError("more than one train net given", where=here, expected="one of " + ", ".join(
            _TRAIN_NET_FIELDS), found=", ".join(given))
    return param


def _upgraded(param: Any, where: str) -> Any:
    if not param.HasField("solver_type"):
        return param
    if param.HasField("type"):
        raise SchemaError("the legacy solver_type and type are both given", where=Location(where),
                          expected="one of them", found=f"solver_type and type: {param.type!r}")
    upgraded = type(param)()
    upgraded.CopyFrom(param)
    upgraded.type = _LEGACY_TYPES[param.solver_type]
    upgraded.ClearField("solver_type")
    return upgraded
