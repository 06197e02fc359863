"""Sizes that may be symbolic: an int, a named size (`H`), an expression of named sizes, or unknown (`?`).

Arithmetic keeps an expression in one canonical form (a polynomial whose atoms are names and floor
divisions with their remainders reduced), so two ways of computing one size compare equal:
`(H + 2 - 3) // 1 + 1` is `H`, and `((H - 1) // 2 + 1 - 1) // 2 + 1` is `(H + 3) // 4`. A named size is a
whole number >= 1. A comparison is a bool when it holds, or fails, for every such size; otherwise it is a
`Condition`, which refuses to be used as a bool (`UndecidedSize`): a shape rule never guesses. Rules that
must branch on a size use `where(condition, a, b)`; checks that only refuse use `definitely(...)`.
"""
from __future__ import annotations

import itertools
import math
import operator
from fractions import Fraction
from typing import Any, Callable, Iterable, Mapping

from .errors import ShapeError

INF = math.inf
_serials = itertools.count(1)


class UndecidedSize(ShapeError):
    """A rule needs a number, or a yes or no, that depends on sizes left symbolic; the message says which
    sizes to fix."""

    def __init__(self, message: str, symbols: Iterable[str] = ()):
        self.symbols = tuple(sorted(set(symbols) - {"?"}))
        if self.symbols:
            names = self.symbols[0] if len(self.symbols) == 1 else ", ".join(self.symbols[:-1]) + \
                " and " + self.symbols[-1]
            message += f"; give {names} as {'numbers' if len(self.symbols) > 1 else 'a number'} with " \
                       "--input-shape (input_shape= in Python)"
        super().__init__(message)


# ---- atoms: the non-polynomial parts of an expression ---------------------------------------------------------
class Symbol:
    """A named size, >= 1; an unknown one (`?`) is a fresh, anonymous size equal only to itself."""

    __slots__ = ("name", "key")

    def __init__(self, name: str, serial: int = 0):
        self.name = name
        self.key = f"{name}#{serial}" if serial else name

    def text(self) -> str:
        return self.name

    def names(self) -> set[str]:
        return {self.name}

    def interval(self) -> tuple:
        return (1, INF)

    def evaluate(self, values: Mapping[str, int]) -> int:
        if self.name not in values:
            raise UndecidedSize(f"no value for the size {self.name}", [self.name])
        return int(values[self.name])


class FloorDiv:
    """numerator // denominator; an int denominator > 1 with the numerator's coefficients reduced below it."""

    __slots__ = ("numerator", "denominator", "key")

    def __init__(self, numerator: "Dim", denominator: "int | Dim"):
        self.numerator, self.denominator = numerator, denominator
        self.key = f"({_key(numerator)})//({_key(denominator)})"

    def text(self) -> str:
        return f"{_grouped(self.numerator)} // {_grouped(self.denominator)}"

    def names(self) -> set[str]:
        return names_in(self.numerator) | names_in(self.denominator)

    def interval(self) -> tuple:
        lo, hi = bounds(self.numerator)
        if isinstance(self.denominator, int):
            k = self.denominator
            return (_floor(lo / k), _floor(hi / k))
        if lo >= 0 and bounds(self.denominator)[0] >= 1:
            return (0, hi)
        return (-INF, INF)

    def evaluate(self, values: Mapping[str, int]) -> int:
        return evaluate(self.numerator, values) // evaluate(self.denominator, values)


class Extreme:
    """min(...) or max(...) of sizes that no rule could order."""

    __slots__ = ("kind", "args", "key")

    def __init__(self, kind: str, args: tuple):
        self.kind, self.args = kind, args
        self.key = f"{kind}(" + ",".join(_key(a) for a in args) + ")"

    def text(self) -> str:
        return f"{self.kind}(" + ", ".join(str(a) for a in self.args) + ")"

    def names(self) -> set[str]:
        return set().union(*(names_in(a) for a in self.args))

    def interval(self) -> tuple:
        los, his = zip(*(bounds(a) for a in self.args))
        pick = min if self.kind == "min" else max
        return (pick(los), pick(his))

    def evaluate(self, values: Mapping[str, int]) -> int:
        pick = min if self.kind == "min" else max
        return pick(evaluate(a, values) for a in self.args)


class Select:
    """`then if condition else otherwise`, for a rule whose branch depends on a symbolic size."""

    __slots__ = ("condition", "then", "otherwise", "key")

    def __init__(self, condition: "Condition", then: "int | Dim", otherwise: "int | Dim"):
        self.condition, self.then, self.otherwise = condition, then, otherwise
        self.key = f"({condition.key})?({_key(then)}):({_key(otherwise)})"

    def text(self) -> str:
        return f"({self.then} if {self.condition} else {self.otherwise})"

    def names(self) -> set[str]:
        return self.condition.names() | names_in(self.then) | names_in(self.otherwise)

    def interval(self) -> tuple:
        (a, b), (c, d) = bounds(self.then), bounds(self.otherwise)
        return (min(a, c), max(b, d))

    def evaluate(self, values: Mapping[str, int]) -> int:
        branch = self.then if self.condition.evaluate(values) else self.otherwise
        return evaluate(branch, values)


# ---- expressions --------------------------------------------------------------------------------------------
Monomial = tuple   # atoms sorted by key; () is the constant term


class Dim:
    """A size expression: a sum of coefficient * product-of-atoms, plus a constant. Never a plain number:
    arithmetic that ends in a constant returns an int."""

    __slots__ = ("terms", "const", "_key", "_bounds")

    def __init__(self, terms: tuple, const: int):
        self.terms, self.const = terms, const
        self._key: str | None = None
        self._bounds: tuple | None = None

    # arithmetic -------------------------------------------------------------------------------------------
    def __add__(self, other: Any) -> "int | Dim":
        other = _operand(other)
        return NotImplemented if other is None else _combine(self, other, 1)

    __radd__ = __add__

    def __sub__(self, other: Any) -> "int | Dim":
        other = _operand(other)
        return NotImplemented if other is None else _combine(self, other, -1)

    def __rsub__(self, other: Any) -> "int | Dim":
        other = _operand(other)
        return NotImplemented if other is None else _combine(other, self, -1)

    def __neg__(self) -> "int | Dim":
        return _combine(0, self, -1)

    def __pos__(self) -> "Dim":
        return self

    def __mul__(self, other: Any) -> "int | Dim":
        other = _operand(other)
        return NotImplemented if other is None else _multiply(self, other)

    __rmul__ = __mul__

    def __floordiv__(self, other: Any) -> "int | Dim":
        other = _operand(other)
        return NotImplemented if other is None else floordiv(self, other)

    def __rfloordiv__(self, other: Any) -> "int | Dim":
        other = _operand(other)
        return NotImplemented if other is None else floordiv(other, self)

    def __mod__(self, other: Any) -> "int | Dim":
        other = _operand(other)
        return NotImplemented if other is None else self - other * floordiv(self, other)

    def __rmod__(self, other: Any) -> "int | Dim":
        other = _operand(other)
        return NotImplemented if other is None else other - self * floordiv(other, self)

    def __truediv__(self, other: Any):
        raise UndecidedSize(f"a fraction of the size {self} is not a size", names_in(self))

    __rtruediv__ = __truediv__

    # comparisons ------------------------------------------------------------------------------------------
    def __eq__(self, other: Any):
        if isinstance(other, Dim) and other.key == self.key:
            return True
        other = _operand(other)
        return NotImplemented if other is None else compare(self, "==", other)

    def __ne__(self, other: Any):
        result = self.__eq__(other)
        return result if result is NotImplemented else negate(result)

    def __lt__(self, other: Any):
        return _compared(self, "<", other)

    def __le__(self, other: Any):
        return _compared(self, "<=", other)

    def __gt__(self, other: Any):
        return _compared(self, ">", other)

    def __ge__(self, other: Any):
        return _compared(self, ">=", other)

    def __hash__(self) -> int:
        return hash(self.key)

    # numbers are asked for: refuse, naming the sizes --------------------------------------------------------
    def __bool__(self) -> bool:
        return bool(compare(self, "!=", 0))

    def __int__(self) -> int:
        raise UndecidedSize(f"a fixed number is needed, but the size is {self}", names_in(self))

    __index__ = __int__

    def __float__(self) -> float:
        raise UndecidedSize(f"a fixed number is needed, but the size is {self}", names_in(self))

    # text -------------------------------------------------------------------------------------------------
    @property
    def key(self) -> str:
        if self._key is None:
            parts = [f"{c}*{'*'.join(a.key for a in m)}" for m, c in self.terms]
            self._key = "+".join(parts) + f"+{self.const}"
        return self._key

    def __str__(self) -> str:
        if "?" in names_in(self):
            return "?"
        text = ""
        for monomial, coefficient in sorted(self.terms, key=lambda mc: mc[1] < 0):
            body = "*".join(_factor_text(a, len(monomial) > 1 or coefficient != 1) for a in monomial)
            term = body if abs(coefficient) == 1 else f"{abs(coefficient)}*{body}"
            text = _signed(text, coefficient < 0, term)
        return _signed(text, self.const < 0, str(abs(self.const))) if self.const else text

    def __repr__(self) -> str:
        return f"Dim({self})"

    def __format__(self, spec: str) -> str:
        return format(str(self), spec if spec and spec[-1:] not in ",_dn" else "")


class Condition:
    """A comparison of sizes that holds for some values of its names and not for others."""

    __slots__ = ("left", "op", "right", "key")

    def __init__(self, left: "int | Dim", op: str, right: "int | Dim"):
        self.left, self.op, self.right = left, op, right
        self.key = f"{_key(left)}{op}{_key(right)}"

    def __bool__(self) -> bool:
        raise UndecidedSize(f"whether {self} holds depends on the sizes", self.names())

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"

    def __repr__(self) -> str:
        return f"Condition({self})"

    def names(self) -> set[str]:
        return names_in(self.left) | names_in(self.right)

    def evaluate(self, values: Mapping[str, int]) -> bool:
        return _OPS[self.op](evaluate(self.left, values), evaluate(self.right, values))


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_NEGATED = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}


# ---- making sizes ------------------------------------------------------------------------------------------------
def symbol(name: str) -> Dim:
    return _atom(Symbol(name))


def unknown() -> Dim:
    """A size nothing tells: equal to itself only, shown as `?`."""
    return _atom(Symbol("?", next(_serials)))


def as_dim(value: Any) -> "int | Dim":
    """An int, a Dim, or text: digits, a name (a letter, then letters, digits or _), or `?`."""
    if isinstance(value, Dim):
        return value
    if isinstance(value, bool):
        raise TypeError("a size is not a bool")
    if isinstance(value, str):
        text = value.strip()
        if text == "?":
            return unknown()
        if text.isdigit():
            return int(text)
        if not (text.isidentifier() and text.isascii()):
            raise ValueError(f"a size is a number, a name or ?, not {value!r}")
        return symbol(text)
    return operator.index(value)


def is_static(shape: Iterable[Any] | None) -> bool:
    return shape is not None and all(isinstance(d, int) for d in shape)


def is_known(shape: Iterable[Any] | None) -> bool:
    """Every dimension is a number or an expression of named sizes: none is `?`."""
    return shape is not None and not any(isinstance(d, Dim) and "?" in names_in(d) for d in shape)


def names_in(value: Any) -> set[str]:
    """The named sizes an expression (or a shape) depends on; `?` for unknown ones."""
    if isinstance(value, Dim):
        return set().union(*(a.names() for a in _atoms(value)))
    if isinstance(value, (tuple, list)):
        return set().union(set(), *(names_in(v) for v in value))
    return set()


def evaluate(value: "int | Dim", values: Mapping[str, int]) -> int:
    """The number an expression is when its names have `values`."""
    if not isinstance(value, Dim):
        return int(value)
    total = value.const
    for monomial, coefficient in value.terms:
        total += coefficient * math.prod(atom.evaluate(values) for atom in monomial)
    return total


def definitely(result: Any) -> bool:
    """True only where a comparison holds for every size: a check refuses only what is certainly wrong."""
    return not isinstance(result, Condition) and bool(result)


def negate(result: "bool | Condition") -> "bool | Condition":
    if isinstance(result, Condition):
        return Condition(result.left, _NEGATED[result.op], result.right)
    return not result


def where(condition: "bool | Condition", then: "int | Dim", otherwise: "int | Dim") -> "int | Dim":
    """`then if condition else otherwise`, kept symbolic where the condition depends on the sizes."""
    if not isinstance(condition, Condition):
        return then if condition else otherwise
    if definitely(compare(then, "==", otherwise)):
        return then
    return _atom(Select(condition, then, otherwise))


def minimum(a: "int | Dim", b: "int | Dim") -> "int | Dim":
    return _extreme("min", a, b)


def maximum(a: "int | Dim", b: "int | Dim") -> "int | Dim":
    return _extreme("max", a, b)


def ceildiv(a: "int | Dim", k: "int | Dim") -> "int | Dim":
    """Caffe's rounding up; for a whole k > 0, (a + k - 1) // k, whose canonical form reads better."""
    if isinstance(k, int) and k > 0:
        return floordiv(a + k - 1, k)
    return -floordiv(-a, k)


def _extreme(kind: str, a: "int | Dim", b: "int | Dim") -> "int | Dim":
    for low, high in ((a, b), (b, a)):
        if definitely(compare(low, "<=", high)):
            return low if kind == "min" else high
    return _atom(Extreme(kind, (a, b)))


# ---- canonical arithmetic -------------------------------------------------------------------------------------
def _operand(value: Any) -> "int | Dim | None":
    if isinstance(value, (Dim, int)) and not isinstance(value, bool):
        return value
    if hasattr(value, "__index__") and not isinstance(value, float):
        return operator.index(value)
    return None


def _parts(value: "int | Dim") -> tuple[tuple, int]:
    return (value.terms, value.const) if isinstance(value, Dim) else ((), int(value))


def _make(terms: dict, const: int) -> "int | Dim":
    kept = tuple(sorted(((m, c) for m, c in terms.values() if c), key=lambda mc: _monomial_key(mc[0])))
    return Dim(kept, const) if kept else const


def _atom(atom: Any) -> Dim:
    return Dim((((atom,), 1),), 0)


def _monomial_key(monomial: Monomial) -> tuple:
    return (len(monomial), "*".join(a.key for a in monomial))


def _combine(a: "int | Dim", b: "int | Dim", sign: int) -> "int | Dim":
    terms: dict = {}
    for scale, value in ((1, a), (sign, b)):
        value_terms, _ = _parts(value)
        for monomial, coefficient in value_terms:
            key = _monomial_key(monomial)
            previous = terms.get(key, (monomial, 0))[1]
            terms[key] = (monomial, previous + scale * coefficient)
    return _make(terms, _parts(a)[1] + sign * _parts(b)[1])


def _multiply(a: "int | Dim", b: "int | Dim") -> "int | Dim":
    (a_terms, a_const), (b_terms, b_const) = _parts(a), _parts(b)
    terms: dict = {}
    for m1, c1 in (*a_terms, ((), a_const)):
        for m2, c2 in (*b_terms, ((), b_const)):
            if not (m1 or m2):
                continue
            monomial = tuple(sorted(m1 + m2, key=lambda atom: atom.key))
            key = _monomial_key(monomial)
            terms[key] = (monomial, terms.get(key, (monomial, 0))[1] + c1 * c2)
    return _make(terms, a_const * b_const)


def floordiv(a: "int | Dim", k: "int | Dim") -> "int | Dim":
    if isinstance(k, Dim):
        return _divide_by_size(a, k)
    if k == 0:
        raise ZeroDivisionError("integer division by zero")
    if not isinstance(a, Dim):
        return a // k
    if k < 0:
        return floordiv(-a, -k)
    return _floordiv_int(a, k)


def _floordiv_int(a: Dim, k: int) -> "int | Dim":
    """Whole multiples of k leave the division; what remains has coefficients in [0, k), then a common factor
    of those and k is divided out, and floor(floor(n / j) / k) becomes floor(n / (j * k)). A numerator of
    negative terms only is turned round first (floor(-x / k) = -floor((x + k - 1) / k)), so that Caffe's
    rounding up, -(-x // k), reads as (x + k - 1) // k."""
    if all(c < 0 for _, c in a.terms):
        return -_floordiv_int(-a + (k - 1), k)
    quotient, rest = {}, {}
    for monomial, coefficient in a.terms:
        q, r = divmod(coefficient, k)
        quotient[_monomial_key(monomial)] = (monomial, q)
        rest[_monomial_key(monomial)] = (monomial, r)
    q0, r0 = divmod(a.const, k)
    whole = _make(quotient, q0)
    remainder = _make(rest, r0)
    if not isinstance(remainder, Dim):
        return whole
    common = math.gcd(k, *(c for _, c in remainder.terms))
    if common > 1:
        remainder = _make({_monomial_key(m): (m, c // common) for m, c in remainder.terms}, r0 // common)
        k //= common
        if k == 1:
            return whole + remainder
    inner = _single_floor(remainder)
    if inner is not None:
        return whole + _floordiv_int_any(inner.numerator + remainder.const * inner.denominator, inner.denominator * k)
    return whole + _atom(FloorDiv(remainder, k))


def _floordiv_int_any(a: "int | Dim", k: int) -> "int | Dim":
    return a // k if not isinstance(a, Dim) else _floordiv_int(a, k)


def _single_floor(value: Dim) -> FloorDiv | None:
    if len(value.terms) == 1:
        (monomial, coefficient), = value.terms
        if coefficient == 1 and len(monomial) == 1 and isinstance(monomial[0], FloorDiv) \
                and isinstance(monomial[0].denominator, int):
            return monomial[0]
    return None


def _divide_by_size(a: "int | Dim", b: Dim) -> "int | Dim":
    """Exact where `b` is one monomial that divides every term of `a` (a count divided by some of its axes)."""
    if len(b.terms) == 1 and b.const == 0 and isinstance(a, Dim) and a.const == 0:
        (divisor, scale), = b.terms
        quotient, constant = {}, 0
        for monomial, coefficient in a.terms:
            left = _without(monomial, divisor)
            if left is None or coefficient % scale:
                break
            if left:
                quotient[_monomial_key(left)] = (left, coefficient // scale)
            else:
                constant += coefficient // scale
        else:
            return _make(quotient, constant)
    if not isinstance(a, Dim) and a == 0:
        return 0
    return _atom(FloorDiv(a, b))


def _without(monomial: Monomial, divisor: Monomial) -> Monomial | None:
    left = list(monomial)
    for atom in divisor:
        match = next((i for i, other in enumerate(left) if other.key == atom.key), None)
        if match is None:
            return None
        del left[match]
    return tuple(left)


# ---- deciding comparisons -------------------------------------------------------------------------------------
def compare(left: "int | Dim", op: str, right: "int | Dim") -> "bool | Condition":
    """The comparison's answer where every value of the names gives the same one; else a Condition."""
    difference = left - right
    if not isinstance(difference, Dim):
        return _OPS[op](difference, 0)
    lo, hi = bounds(difference)
    always = {"==": lo == hi == 0, "!=": lo > 0 or hi < 0, "<": hi < 0, "<=": hi <= 0, ">": lo > 0, ">=": lo >= 0}
    never = {"==": always["!="], "!=": always["=="], "<": lo >= 0, "<=": lo > 0, ">": hi <= 0, ">=": hi < 0}
    if always[op]:
        return True
    if never[op]:
        return False
    return Condition(left, op, right)


def _compared(left: Dim, op: str, right: Any):
    right = _operand(right)
    return NotImplemented if right is None else compare(left, op, right)


def bounds(value: "int | Dim") -> tuple:
    """Whole-number bounds (lo, hi) of an expression over all sizes >= 1 (±inf where unbounded). A floor
    division is its numerator / k less something in [0, (k-1)/k], so 2 * (H // 2) - H is in [-1, 0]."""
    if not isinstance(value, Dim):
        return (value, value)
    if value._bounds is None:
        coefficients: dict[str, Fraction] = {}
        intervals: dict[str, tuple] = {}
        constant = [Fraction(0), Fraction(0)]
        _linearise(value, Fraction(1), coefficients, intervals, constant)
        lo, hi = constant
        for key, coefficient in coefficients.items():
            if coefficient:
                a, b = _scaled(coefficient, *intervals[key])
                lo, hi = lo + a, hi + b
        value._bounds = (_ceil(lo), _floor(hi))
    return value._bounds


def _linearise(value: Dim, scale: Fraction, coefficients: dict, intervals: dict, constant: list) -> None:
    constant[0] += scale * value.const
    constant[1] += scale * value.const
    for monomial, coefficient in value.terms:
        factor = scale * coefficient
        floor = monomial[0] if len(monomial) == 1 else None
        if isinstance(floor, FloorDiv) and isinstance(floor.denominator, int):
            k = floor.denominator
            _linearise(floor.numerator, factor / k, coefficients, intervals, constant)
            low, high = _scaled(factor, Fraction(1 - k, k), Fraction(0))
            constant[0] += low
            constant[1] += high
            continue
        key = "*".join(a.key for a in monomial)
        coefficients[key] = coefficients.get(key, Fraction(0)) + factor
        intervals[key] = _product_interval(monomial)


def _product_interval(monomial: Monomial) -> tuple:
    intervals = [atom.interval() for atom in monomial]
    if any(lo < 0 for lo, _ in intervals):
        return intervals[0] if len(intervals) == 1 else (-INF, INF)
    lo = math.prod(lo for lo, _ in intervals)
    hi = INF if any(hi == INF for _, hi in intervals) else math.prod(hi for _, hi in intervals)
    return (lo, hi)


def _scaled(factor: Fraction, lo: Any, hi: Any) -> tuple:
    products = [_times(factor, lo), _times(factor, hi)]
    return (min(products), max(products))


def _times(factor: Fraction, bound: Any) -> Any:
    if bound in (INF, -INF):
        return bound if factor > 0 else -bound
    return factor * bound


def _floor(x: Any) -> Any:
    return x if x in (INF, -INF) else math.floor(x)


def _ceil(x: Any) -> Any:
    return x if x in (INF, -INF) else math.ceil(x)


# ---- text ----------------------------------------------------------------------------------------------------
def _key(value: "int | Dim") -> str:
    return value.key if isinstance(value, Dim) else str(value)


def _atoms(value: Dim) -> Iterable[Any]:
    return (atom for monomial, _ in value.terms for atom in monomial)


def _grouped(value: "int | Dim") -> str:
    text = str(value)
    return f"({text})" if " " in text or text.startswith("-") or "*" in text else text


def _factor_text(atom: Any, in_product: bool) -> str:
    text = atom.text()
    return f"({text})" if in_product and isinstance(atom, FloorDiv) else text


def _signed(text: str, negative: bool, term: str) -> str:
    if not text:
        return f"-{term}" if negative else term
    return f"{text} {'-' if negative else '+'} {term}"
