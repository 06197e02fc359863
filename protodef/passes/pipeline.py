"""The ordered pass list and what each pass did to the net."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


from ..errors import ProtodefError, UnsupportedError
from ..ir import Layer, Net
from .batchnorm_scale_to_affine import batchnorm_scale_to_affine
from .fold_affine_into_producer import fold_affine_into_producer
from .remove_dropout import remove_dropout
from .remove_split import remove_split
from .remove_training_layers import remove_training_layers

Pass = Callable[[Net], Net]

CLEANUP: tuple[Pass, ...] = (remove_training_layers, remove_split, remove_dropout)
FOLDING: tuple[Pass, ...] = (batchnorm_scale_to_affine, fold_affine_into_producer)
# A TRAIN-phase net keeps its losses, Dropouts and BatchNorms: training needs them as Caffe runs them.
TRAINING: tuple[Pass, ...] = (remove_split,)

FOLDING_REFUSED = ("folding BatchNorm is a deploy transformation: a TRAIN-phase module keeps Caffe's BatchNorm, "
                   "whose statistics training updates (load with fold=False)")


def default_passes(*, fold: bool = True, training: bool = False) -> list[Pass]:
    if training:
        if fold:
            raise UnsupportedError(FOLDING_REFUSED)
        return list(TRAINING)
    return [*CLEANUP, *(FOLDING if fold else ())]


@dataclass
class PassResult:
    """What one pass did: layers (name, type) removed and added, layers whose type, params or weights changed
    (name, type before, type after), layers that only read or write other values now, and its notes."""

    name: str
    layers_before: int
    layers_after: int
    removed: list[tuple[str, str]] = field(default_factory=list)
    added: list[tuple[str, str]] = field(default_factory=list)
    changed: list[tuple[str, str, str]] = field(default_factory=list)
    rewired: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pass": self.name, "layers_before": self.layers_before, "layers_after": self.layers_after,
            "removed": [{"name": n, "type": t} for n, t in self.removed],
            "added": [{"name": n, "type": t} for n, t in self.added],
            "changed": [{"name": n, "type_before": a, "type": b} for n, a, b in self.changed],
            "rewired": list(self.rewired), "notes": list(self.notes),
        }


@dataclass
class PassReport:
    layers_in: int
    passes: list[PassResult] = field(default_factory=list)
    training: bool = False       # lowered for training: losses, Dropout and BatchNorm kept

    def as_dicts(self) -> list[dict[str, Any]]:
        return [result.as_dict() for result in self.passes]

    def format(self) -> str:
        width = max([len("pass")] + [len(r.name) for r in self.passes])
        head = f"{'pass':<{width}}  {'before':>6}  {'after':>6}  {'removed':>7}  {'added':>5}  {'changed':>7}  " \
               f"{'rewired':>7}"
        lines = [head, "-" * len(head)]
        for r in self.passes:
            lines.append(f"{r.name:<{width}}  {r.layers_before:>6}  {r.layers_after:>6}  {len(r.removed):>7}  "
                         f"{len(r.added):>5}  {len(r.changed):>7}  {len(r.rewired):>7}")
        for r in self.passes:
            details = _details(r)
            if details:
                lines += ["", f"{r.name}:", *details]
        return "\n".join(lines)


def _details(result: PassResult) -> list[str]:
    rows = [("removed", [f"{n} ({t})" for n, t in result.removed]),
            ("added", [f"{n} ({t})" for n, t in result.added]),
            ("changed", [f"{n} ({a} -> {b})" if a != b else f"{n} ({b})" for n, a, b in result.changed]),
            ("rewired", list(result.rewired))]
    lines = []
    for label, items in rows:
        if items:
            lines += _packed(items, first=f"  {label + ':':<9}", width=110)
    lines += [f"  note:    {note}" for note in result.notes]
    return lines


def _packed(items: list[str], *, first: str, width: int) -> list[str]:
    """Comma-separated items over as many lines as needed, never breaking an item."""
    lines, line = [], first
    for index, item in enumerate(items):
        piece = item + ("," if index < len(items) - 1 else "")
        if len(line) + len(piece) > width and line.strip():
            lines.append(line.rstrip())
            line = " " * len(first)
        line += piece + " "
    lines.append(line.rstrip())
    return lines


def run_pipeline(net: Net, *, fold: bool = True, training: bool = False, passes: Sequence[Pass] | None = None
                 ) -> tuple[Net, PassReport]:
    """The one lowering driver: run the passes in order (by default remove_training_layers, remove_split,
    remove_dropout, then when `fold` batchnorm_scale_to_affine and fold_affine_into_producer; for `training`,
    remove_split alone); returns the net as every backend takes it (its `pass_report`
    set) and the report."""
    if training and fold:
        raise UnsupportedError(FOLDING_REFUSED, where=net.source)
    chosen = list(passes) if passes is not None else default_passes(fold=fold, training=training)
    report = PassReport(len(net), training=training)
    current = net
    for step in chosen:
        name = getattr(step, "__name__", repr(step))
        ran = ", ".join(r.name for r in report.passes) or "none"
        try:
            result = step(current)
        except ProtodefError as error:
            error.message = f"in pass {name} (passes run before it: {ran}): {error.message}"
            error.args = (error.format(),)
            raise
        except Exception as error:
            error.add_note(f"raised in pass {name}; passes run before it: {ran}")
            raise
        report.passes.append(diff(current, result, name))
        current = result
    if current is net:
        current = net.copy()
    current.pass_report = report      # what the backends take (Net.require_lowered)
    return current, report


def diff(before: Net, after: Net, name: str) -> PassResult:
    """Compare two nets layer by layer (by name)."""
    old = {layer.name: layer for layer in before.layers()}
    new = {layer.name: layer for layer in after.layers()}
    result = PassResult(name, len(before), len(after))
    result.removed = [(n, layer.type) for n, layer in old.items() if n not in new]
    result.added = [(n, layer.type) for n, layer in new.items() if n not in old]
    for n, now in new.items():
        was = old.get(n)
        if was is None or was is now:
            continue
        if was.type != now.type or not _same_params(was, now) or not _same_weights(was, now):
            result.changed.append((n, was.type, now.type))
        elif was.inputs != now.inputs or was.outputs != now.outputs:
            result.rewired.append(n)
    kept = len(before.notes)
    result.notes = list(after.notes[kept:]) if after.notes[:kept] == before.notes else \
        [note for note in after.notes if note not in before.notes]
    return result


def _same_params(a: Layer, b: Layer) -> bool:
    if a.params is b.params:
        return True
    try:
        return bool(a.params == b.params)
    except ValueError:      # params holding arrays
        return False


def _same_weights(a: Layer, b: Layer) -> bool:
    """The same arrays, not equal ones: a pass that computed new weights changed the layer even where the
    numbers come out the same (folding a BatchNorm of fillers into a convolution of zeros)."""
    return len(a.weights) == len(b.weights) and all(x is y for x, y in zip(a.weights, b.weights))
