"""What named sizes mean for a whole Net: where each is read from at run time, which layers need them fixed,
the smallest values a net accepts, and the values to run it at."""
from __future__ import annotations

from typing import Any

from .errors import ShapeError
from .ir import Net, Value
from .symbolic import Dim, Extreme, FloorDiv, Select, Symbol, UndecidedSize, bounds, evaluate, names_in


def size_sources(net: Net) -> dict[str, tuple[Value, int]]:
    """For each named size, the net input and axis that carries it (the first one, in input order)."""
    found: dict[str, tuple[Value, int]] = {}
    for net_input in net.inputs:
        for axis, d in enumerate(net.shapes.get(net_input.value) or ()):
            name = _bare_name(d)
            if name is not None:
                found.setdefault(name, (net_input.value, axis))
    return found


def _bare_name(d: object) -> str | None:
    if isinstance(d, Dim) and not d.const and len(d.terms) == 1:
        (monomial, coefficient), = d.terms
        if coefficient == 1 and len(monomial) == 1 and isinstance(monomial[0], Symbol) and monomial[0].name != "?":
            return monomial[0].name
    return None


def symbolic_names(net: Net) -> set[str]:
    return set().union(set(), *(names_in(tuple(net.shapes[i.value])) for i in net.inputs if i.value in net.shapes))


def require_fixed_weights(net: Net) -> None:
    """A weight blob's shape must be a number: an InnerProduct that flattens the image, or a convolution
    reading a symbolic number of channels, needs those sizes given."""
    from .attach import expected_weight_shapes
    for layer in net.layers():
        for shape in expected_weight_shapes(net, layer):
            names = names_in(tuple(shape))
            if names:
                shown = "(" + ", ".join(str(d) for d in shape) + ")"
                raise UndecidedSize(f"its weights' shape {shown} depends on sizes left symbolic",
                                    names).at(layer.where, layer)


def needs_fixed_error(names: set[str], what: str) -> UndecidedSize:
    """The error for a lowering that needs sizes which are symbolic here (the driver names the layer)."""
    return UndecidedSize(f"{what} needs fixed sizes", names)


def smallest_sizes(net: Net, limit: int = 4096) -> dict[str, int]:
    """The smallest value, the same for every named size, from which on every size in the net that depends
    on them is at least 2 (up to `limit`): the lower bound of an exported program's dynamic dimensions (a
    size of 1 would broadcast, which torch.export treats apart)."""
    names = sorted(symbolic_names(net) - {"?"})
    sizes = _symbolic_sizes(net)
    for value in range(1, limit + 1):
        values = dict.fromkeys(names, value)
        if _all_at_least(sizes, values, 2):
            return values
    return dict.fromkeys(names, limit)


# Values tried for named image sizes when a net built with them is run (convert --verify, check), in order.
RUN_SIZES = (224, 256, 300, 320, 384, 416, 512, 128, 96, 64, 32, 16, 8)


def sizes_to_run(net: Net) -> dict[str, int]:
    """Numbers to run a net built with named sizes at: 1 for a batch (a name on axis 0 of an input), and for
    the other names the first of RUN_SIZES at which every size in the net is positive. A net that takes none
    of those is refused in one line, naming the sizes to give."""
    names = symbolic_names(net) - {"?"}
    if not names:
        return {}
    batch = {name for name, (_, axis) in size_sources(net).items() if axis == 0}
    sizes = _symbolic_sizes(net)
    for candidate in RUN_SIZES:
        values = {name: 1 if name in batch else candidate for name in names}
        try:
            if _all_at_least(sizes, values, 1):
                return values
        except ArithmeticError:     # a size divides by one that is 0 at these values
            continue
    raise ShapeError("no size tried makes every blob of the net positive, so it cannot run on random inputs",
                     expected="numbers for " + ", ".join(sorted(names - batch)) + " in --input-shape")


def _symbolic_sizes(net: Net) -> set[Dim]:
    return {d for shape in net.shapes.values() if shape is not None for d in shape if isinstance(d, Dim)}


def _all_at_least(sizes: set[Dim], values: dict[str, int], low: int) -> bool:
    """Every size whose names `values` gives is at least `low` there."""
    return all(evaluate(d, values) >= low for d in sizes if names_in(d) <= set(values))


class SizeProgram:
    """How a backend computes size expressions at run time, each sub-expression once. A backend says how to
    make a number, read a named size, and apply one operation: `operation(name, *operands)` with name one of
    add, sub, mul, floordiv (operands: the numerator, the denominator, and whether the numerator is never
    negative), min, max, where (condition, then, otherwise) and the comparisons (<, <=, >, >=, ==, !=)."""

    def __init__(self):
        self.made: dict[str, Any] = {}

    def constant(self, number: int) -> Any:
        raise NotImplementedError

    def symbol(self, name: str) -> Any:
        raise NotImplementedError

    def operation(self, name: str, *operands: Any) -> Any:
        raise NotImplementedError

    def of(self, value: Any) -> Any:
        """The computation of `value` (an int or an expression)."""
        if not isinstance(value, Dim):
            return self.constant(int(value))
        return self._once(value.key, lambda: self._sum(value))

    def _once(self, key: str, make) -> Any:
        if key not in self.made:
            self.made[key] = make()
        return self.made[key]

    def _sum(self, value: Dim) -> Any:
        """Terms added, the negative ones then subtracted, as the expression reads."""
        added = [self._term(m, c) for m, c in value.terms if c > 0]
        added += [self.constant(value.const)] if value.const > 0 else []
        taken = [self._term(m, -c) for m, c in value.terms if c < 0]
        taken += [self.constant(-value.const)] if value.const < 0 else []
        total = added[0] if added else self.constant(0)
        for part in added[1:]:
            total = self.operation("add", total, part)
        for part in taken:
            total = self.operation("sub", total, part)
        return total

    def _term(self, monomial: tuple, coefficient: int) -> Any:
        product = None
        for atom in monomial:
            factor = self._once(f"atom:{atom.key}", lambda atom=atom: self._atom(atom))
            product = factor if product is None else self.operation("mul", product, factor)
        if coefficient == 1:
            return product
        key = f"term:{coefficient}*" + "*".join(atom.key for atom in monomial)
        return self._once(key, lambda: self.operation("mul", self.constant(coefficient), product))

    def _atom(self, atom: Any) -> Any:
        if isinstance(atom, Symbol):
            return self.symbol(atom.name)
        if isinstance(atom, FloorDiv):
            never_negative = isinstance(atom.denominator, int) and bounds(atom.numerator)[0] >= 0
            return self.operation("floordiv", self.of(atom.numerator), self.of(atom.denominator), never_negative)
        if isinstance(atom, Extreme):
            return self.operation(atom.kind, *(self.of(a) for a in atom.args))
        if isinstance(atom, Select):
            condition = atom.condition
            test = self.operation(condition.op, self.of(condition.left), self.of(condition.right))
            return self.operation("where", test, self.of(atom.then), self.of(atom.otherwise))
        raise TypeError(f"no run-time form for {atom!r}")
