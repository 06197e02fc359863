"""Caffe's learning-rate policies (sgd_solver.cpp, SGDSolver::GetLearningRate), in Caffe's float arithmetic.

Caffe computes the rate in `float` except where C++ promotes to double: `pow(float, int)` (step, exp, multistep)
is a double power, `pow(float, float)` and `exp(float)` (inv, poly, sigmoid) are single precision. The same
promotions here keep the rate equal to Caffe's to the last bit in the common cases.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..errors import SchemaError

f32 = np.float32

# lr_policy name -> rate(param, iteration, current_step)
_POLICIES: dict[str, Callable[[Any, int, int], tuple[np.float32, int]]] = {}


def policy(name: str):
    def register(function):
        _POLICIES[name] = function
        return function
    return register


def learning_rate(param: Any, iteration: int, current_step: int) -> tuple[np.float32, int]:
    """The rate Caffe applies at `iteration`, and the solver's current_step after computing it (step and
    multistep keep it; Caffe saves it in the .solverstate)."""
    return _POLICIES[param.lr_policy](param, iteration, current_step)


def check_policy(param: Any, where: Any = None) -> None:
    """Caffe's CHECKs on the policy's fields, raised up front instead of at the first update."""
    name = param.lr_policy
    if name not in _POLICIES:
        raise SchemaError("unknown lr_policy", where=where, expected=" / ".join(_POLICIES), found=repr(name))
    if name in ("step", "exp", "inv", "multistep", "sigmoid") and param.gamma < 0:
        raise SchemaError(f"lr_policy '{name}' needs gamma >= 0", where=where, expected=">= 0", found=param.gamma)
    if name in ("step", "sigmoid") and param.stepsize <= 0:
        raise SchemaError(f"lr_policy '{name}' needs stepsize > 0", where=where, expected="> 0",
                          found=param.stepsize)
    if name == "poly" and param.max_iter <= 0:
        raise SchemaError("lr_policy 'poly' needs max_iter > 0", where=where, expected="> 0", found=param.max_iter)


def _double_power(param: Any, exponent: int) -> np.float32:
    # float * pow(float, int): the power and the product are double, the result stored as float
    return f32(float(f32(param.base_lr)) * float(f32(param.gamma)) ** exponent)


@policy("fixed")
def fixed(param: Any, iteration: int, current_step: int) -> tuple[np.float32, int]:
    return f32(param.base_lr), current_step


@policy("step")
def step(param: Any, iteration: int, current_step: int) -> tuple[np.float32, int]:
    current_step = iteration // param.stepsize
    return _double_power(param, current_step), current_step


@policy("exp")
def exponential(param: Any, iteration: int, current_step: int) -> tuple[np.float32, int]:
    return _double_power(param, iteration), current_step


@policy("inv")
def inverse(param: Any, iteration: int, current_step: int) -> tuple[np.float32, int]:
    base = f32(1) + f32(param.gamma) * f32(iteration)
    return f32(param.base_lr) * np.power(base, -f32(param.power)), current_step


@policy("multistep")
def multistep(param: Any, iteration: int, current_step: int) -> tuple[np.float32, int]:
    # Caffe moves at most one step per update, so a restored run catches up one step at a time, as Caffe does.
    if current_step < len(param.stepvalue) and iteration >= param.stepvalue[current_step]:
        current_step += 1
    return _double_power(param, current_step), current_step


@policy("poly")
def polynomial(param: Any, iteration: int, current_step: int) -> tuple[np.float32, int]:
    left = f32(1) - f32(iteration) / f32(param.max_iter)
    with np.errstate(invalid="ignore"):   # past max_iter Caffe's pow gives NaN too
        return f32(param.base_lr) * np.power(left, f32(param.power)), current_step


@policy("sigmoid")
def sigmoid(param: Any, iteration: int, current_step: int) -> tuple[np.float32, int]:
    with np.errstate(over="ignore"):
        decay = np.exp(-f32(param.gamma) * (f32(iteration) - f32(param.stepsize)))
    return f32(param.base_lr) * (f32(1) / (f32(1) + decay)), current_step


POLICY_NAMES = tuple(_POLICIES)
