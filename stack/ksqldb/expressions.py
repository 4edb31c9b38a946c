"""Type-check expressions and compile them once into Python closures over a row tuple.

`Compiler.compile(expr)` returns a `Compiled` (SQL type + `fn(row)`); evaluation never re-walks the AST.
Null handling is SQL's three-valued logic; arithmetic follows Java (wrapping ints, IEEE doubles) and
ksqlDB's decimal precision rules. A failure on one record raises EvalError, which the query running it
logs to the processing log while it goes on.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, DivisionByZero, InvalidOperation, localcontext
from typing import Any

from . import ast
from . import values as V
from .errors import EvalError, KsqlStatementError, UnsupportedError
from .formatter import format_expr
from .functions import resolve
from .functions.datetime import TIME_UNITS, UNIT_FUNCTIONS
from .functions.maths import jdiv
from .types import (
    BIGINT,
    BOOLEAN,
    DATE,
    DOUBLE,
    INTEGER,
    NULL,
    STRING,
    TIMESTAMP,
    ArrayType,
    DecimalType,
    MapType,
    NullType,
    SqlType,
    StructType,
    arithmetic_result,
    common_type,
    is_integral,
    is_numeric,
    is_temporal,
    to_decimal_type,
)

Row = Sequence[Any]


@dataclass(frozen=True)
class Compiled:
    type: SqlType
    fn: Callable[[Row], Any]
    constant: bool = False
    column_index: int | None = None  # set when the expression is a bare column reference


class Scope:
    """Columns an expression may reference: name -> (index in the row tuple, type)."""

    def __init__(self, columns: Sequence[tuple[str, SqlType]], source_names: Sequence[str] = ()) -> None:
        self.columns: dict[str, tuple[int, SqlType]] = {}
        for i, (name, t) in enumerate(columns):
            self.columns.setdefault(name, (i, t))
        self.source_names = {s for s in source_names if s}
        self.size = len(columns)

    def with_lambda_params(self, params: Sequence[tuple[str, SqlType]]) -> Scope:
        """A scope where lambda parameters (appended to the row when the lambda runs) shadow columns."""
        inner = Scope([], ())
        inner.columns = dict(self.columns)
        for i, (name, t) in enumerate(params):
            inner.columns[name] = (self.size + i, t)
        inner.source_names = set(self.source_names)
        inner.size = self.size + len(params)
        return inner

    def lookup(self, ref: ast.ColumnRef) -> tuple[int, SqlType] | None:
        if ref.source is not None and ref.source not in self.source_names:
            return None
        return self.columns.get(ref.name)


def _const(t: SqlType, value: Any) -> Compiled:
    return Compiled(t, lambda row, _v=value: _v, constant=True)


def _decimal_literal_type(d: Decimal) -> DecimalType:
    sign, digits, exp = d.as_tuple()
    scale = max(-exp, 0) if isinstance(exp, int) else 0
    precision = max(len(digits), scale, 1)
    return DecimalType(precision, scale)


def _comparable(a: SqlType, b: SqlType) -> bool:
    if isinstance(a, NullType) or isinstance(b, NullType):
        return True
    if is_numeric(a) and is_numeric(b):
        return True
    if is_temporal(a) and is_temporal(b):
        return True
    if isinstance(a, ArrayType) and isinstance(b, ArrayType):
        return _comparable(a.item, b.item)
    if isinstance(a, MapType) and isinstance(b, MapType):
        return _comparable(a.key, b.key) and _comparable(a.value, b.value)
    if isinstance(a, StructType) and isinstance(b, StructType):
        return all(b.field(n) is None or _comparable(t, b.field(n)) for n, t in a.fields)
    return a == b


class _Mismatch(Exception):
    pass


def like_regex(pattern: str, escape: str | None) -> re.Pattern:
    """SQL LIKE as a regex: % and _ are wildcards (not crossing line breaks, as in Java's regex), the
    escape character makes the next character literal."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if escape is not None and c == escape:
            if i + 1 >= len(pattern):
                raise EvalError("LIKE pattern must not end with escape character")
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
        i += 1
    return re.compile("".join(out))


def convert(c: Compiled, target: SqlType) -> Compiled:
    """Widen a compiled expression's values to `target` (e.g. INT -> BIGINT, DECIMAL scale)."""
    if c.type == target or isinstance(target, NullType):
        return c
    if isinstance(c.type, NullType):
        return Compiled(target, c.fn, c.constant)
    src, fn = c.type, c.fn
    return Compiled(target, lambda row: V.cast(fn(row), src, target), c.constant)


def _java_int_div(a: int, b: int) -> int:
    if b == 0:
        raise EvalError("/ by zero")
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _java_int_mod(a: int, b: int) -> int:
    if b == 0:
        raise EvalError("/ by zero")
    r = abs(a) % abs(b)
    return r if a >= 0 else -r


def _java_fmod(a: float, b: float) -> float:
    if b == 0 or math.isinf(a) or math.isnan(a) or math.isnan(b):
        return float("nan")
    return math.fmod(a, b)


def _decimal_op(op: str, t: DecimalType) -> Callable[[Decimal, Decimal], Decimal]:
    quantum = Decimal(1).scaleb(-t.scale)

    def fn(a: Decimal, b: Decimal) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = max(t.precision + 20, 60)
            ctx.traps[DivisionByZero] = True
            try:
                if op == "+":
                    r = a + b
                elif op == "-":
                    r = a - b
                elif op == "*":
                    r = a * b
                elif op == "/":
                    r = a / b
                else:
                    r = a % b
            except (DivisionByZero, InvalidOperation):
                raise EvalError("Division by zero") from None
            return r.quantize(quantum, rounding=ROUND_HALF_UP)

    return fn


_CMP = {"=": operator.eq, "<>": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


class ErrorSink:
    """Where a failing function call reports (ksqlDB logs it and the call yields null); the query running
    the expressions points `handler` at its processing log."""

    def __init__(self) -> None:
        self.handler: Callable[[str, str], None] | None = None

    def report(self, where: str, message: str) -> None:
        if self.handler is not None:
            self.handler(where, message)


class Compiler:
    """Compiles expressions against one scope. `clause` names the clause in error messages."""

    def __init__(self, scope: Scope, clause: str = "SELECT", errors: ErrorSink | None = None) -> None:
        self.scope = scope
        self.clause = clause
        self.errors = errors or ErrorSink()

    # ------------------------------------------------------------------ entry
    def compile(self, e: ast.Expr) -> Compiled:
        method = getattr(self, "_" + type(e).__name__, None)
        if method is None:
            raise UnsupportedError(f"expression {type(e).__name__}")
        return method(e)

    def compile_predicate(self, e: ast.Expr) -> Compiled:
        c = self.compile(e)
        if c.type != BOOLEAN and not isinstance(c.type, NullType):
            raise KsqlStatementError(
                f"Type error in {self.clause} expression: Should evaluate to boolean but is "
                f"{format_expr(e)} ({c.type}) instead."
            )
        return c

    # ------------------------------------------------------------------ leaves
    def _Literal(self, e: ast.Literal) -> Compiled:
        if e.kind == "NULL":
            return _const(NULL, None)
        if e.kind == "DECIMAL":
            return _const(_decimal_literal_type(e.value), e.value)
        t = {"BOOLEAN": BOOLEAN, "INTEGER": INTEGER, "BIGINT": BIGINT, "DOUBLE": DOUBLE, "STRING": STRING}[e.kind]
        return _const(t, e.value)

    def _ColumnRef(self, e: ast.ColumnRef) -> Compiled:
        found = self.scope.lookup(e)
        if found is None:
            name = f"{e.source}.{e.name}" if e.source else e.name
            if self.clause == "PARTITION BY":
                raise KsqlStatementError(
                    f"{ast.at(e)}PARTITION BY column '{name}' cannot be resolved. '{name}' must be a column in "
                    "the source schema since PARTITION BY is applied on the input."
                )
            raise KsqlStatementError(f"{ast.at(e)}{self.clause} column '{name}' cannot be resolved.")
        idx, t = found
        return Compiled(t, operator.itemgetter(idx), column_index=idx)

    # ------------------------------------------------------------------ arithmetic
    def _Arithmetic(self, e: ast.Arithmetic) -> Compiled:
        left, right = self.compile(e.left), self.compile(e.right)
        lt, rt = left.type, right.type
        lf, rf = left.fn, right.fn
        if e.op == "+" and lt == STRING and rt == STRING:

            def concat(row):
                a, b = lf(row), rf(row)
                return None if a is None or b is None else a + b

            return Compiled(STRING, concat)
        if isinstance(lt, NullType) or isinstance(rt, NullType):
            other = rt if isinstance(lt, NullType) else lt
            if is_numeric(other) or isinstance(other, NullType):
                return _const(other if not isinstance(other, NullType) else INTEGER, None)
        if not (is_numeric(lt) and is_numeric(rt)):
            raise KsqlStatementError(
                f"Error processing expression: {format_expr(e)}. Unsupported arithmetic types. {lt} {rt}"
            )
        t = arithmetic_result(e.op, lt, rt)
        op = e.op
        if isinstance(t, DecimalType):
            left, right = convert(left, _as_decimal(lt)), convert(right, _as_decimal(rt))
            lf, rf = left.fn, right.fn
            dop = _decimal_op(op, t)

            def dec(row):
                a = lf(row)
                if a is None:
                    return None
                b = rf(row)
                return None if b is None else dop(a, b)

            return Compiled(t, dec)
        if t == DOUBLE:
            pyop: Callable = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": jdiv, "%": _java_fmod}[op]

            def dbl(row):
                a = lf(row)
                if a is None:
                    return None
                b = rf(row)
                if b is None:
                    return None
                try:
                    return pyop(float(a), float(b))
                except OverflowError:
                    return math.inf

            return Compiled(DOUBLE, dbl)
        wrap = V.wrap_int if t == INTEGER else V.wrap_long
        iop: Callable = {
            "+": operator.add,
            "-": operator.sub,
            "*": operator.mul,
            "/": _java_int_div,
            "%": _java_int_mod,
        }[op]

        def integral(row):
            a = lf(row)
            if a is None:
                return None
            b = rf(row)
            return None if b is None else wrap(iop(a, b))

        return Compiled(t, integral)

    def _Negate(self, e: ast.Negate) -> Compiled:
        c = self.compile(e.operand)
        if not is_numeric(c.type):
            raise KsqlStatementError(f"Unsupported arithmetic type for negation: {c.type}")
        fn = c.fn
        wrap = V.wrap_int if c.type == INTEGER else V.wrap_long if c.type == BIGINT else (lambda v: v)
        return Compiled(c.type, lambda row: None if (v := fn(row)) is None else wrap(-v))

    # ------------------------------------------------------------------ comparison
    def _coerce_item(self, e: ast.Expr, target: SqlType) -> Compiled:
        """Compile `e` for comparison with a `target`-typed value, coercing literals as ksqlDB does."""
        if isinstance(e, ast.Literal):
            if e.kind == "NULL":
                return _const(target, None)
            if e.kind == "STRING" and target != STRING:
                if is_numeric(target):
                    try:
                        return _const(DecimalType(38, 0), Decimal(e.value.strip()))
                    except InvalidOperation:
                        raise EvalError(f'invalid input syntax for type {target.name}: "{e.value}"') from None
                if target == BOOLEAN or is_temporal(target):
                    return _const(target, V.parse_text(e.value, target))
                raise _Mismatch()
            c = self.compile(e)
            if target == STRING and c.type != STRING and not isinstance(c.type, NullType):
                return _const(STRING, V.to_text(e.value, c.type))
            if not _comparable(c.type, target):
                raise _Mismatch()
            return c
        if isinstance(e, ast.ArrayCtor) and isinstance(target, ArrayType):
            items = [self._coerce_item(i, target.item) for i in e.items]
            fns = [i.fn for i in items]
            return Compiled(target, lambda row: [f(row) for f in fns])
        if isinstance(e, ast.MapCtor) and isinstance(target, MapType):
            pairs = [(self._coerce_item(k, target.key).fn, self._coerce_item(v, target.value).fn) for k, v in e.entries]
            return Compiled(target, lambda row: {k(row): v(row) for k, v in pairs})
        if isinstance(e, ast.StructCtor) and isinstance(target, StructType):
            given = dict(e.fields)
            fields = []
            for name, ft in target.fields:
                fields.append((name, self._coerce_item(given[name], ft).fn if name in given else (lambda row: None)))
            for name, fe in e.fields:
                if target.field(name) is None:
                    fields.append((name, self.compile(fe).fn))
            return Compiled(target, lambda row: {n: f(row) for n, f in fields})
        c = self.compile(e)
        if not _comparable(c.type, target):
            raise _Mismatch()
        return c

    def _operand_for(self, e: ast.Expr, target: SqlType, op: str, left_type: SqlType, ctx: str) -> Compiled:
        try:
            return self._coerce_item(e, target)
        except _Mismatch:
            natural = self.compile(e)
            raise KsqlStatementError(
                f"{ctx}operator does not exist: {left_type} {op} {natural.type} ({format_expr(e)})\n"
                "Hint: You might need to add explicit type casts."
            ) from None
        except EvalError as err:
            raise KsqlStatementError(f"{ctx}{err}.") from None

    def _Comparison(self, e: ast.Comparison) -> Compiled:
        left = self.compile(e.left)
        if isinstance(left.type, NullType) or (isinstance(e.right, ast.Literal) and e.right.kind == "NULL"):
            rt = "NULL" if isinstance(e.right, ast.Literal) and e.right.kind == "NULL" else self.compile(e.right).type
            lt = "NULL" if isinstance(left.type, NullType) else left.type
            raise KsqlStatementError(f"Comparison with NULL not supported: {lt} {e.op} {rt}")
        right = self._compare_operand(e.right, left.type, e.op, e)
        return self._compare(e.op, left, right, e)

    def _compare_operand(self, e: ast.Expr, target: SqlType, op: str, whole: ast.Expr) -> Compiled:
        try:
            return self._coerce_item(e, target)
        except _Mismatch:
            natural = self.compile(e)
            raise KsqlStatementError(
                f"Error in {self.clause} expression: Cannot compare {format_expr(whole)}: {target} {op} {natural.type}"
            ) from None
        except EvalError as err:
            raise KsqlStatementError(f"Error in {self.clause} expression: {err}") from None

    def _compare(self, op: str, left: Compiled, right: Compiled, e: ast.Expr) -> Compiled:
        lt, rt = left.type, right.type
        if op not in ("=", "<>") and (isinstance(lt, (ArrayType, MapType, StructType)) or lt == BOOLEAN):
            raise KsqlStatementError(f"Cannot compare {lt} with {op}: {format_expr(e)}")
        if {lt, rt} == {DATE, TIMESTAMP}:  # a DATE compares as midnight of that day
            left, right = convert(left, TIMESTAMP), convert(right, TIMESTAMP)
        elif is_temporal(lt) and is_temporal(rt) and lt != rt:
            raise KsqlStatementError(f"Cannot compare {lt} to {rt}: {format_expr(e)}")
        dbl = _any_double(left, right)
        lf, rf = _comparison_value(left, dbl), _comparison_value(right, dbl)
        cmp = _CMP[op]

        def fn(row):
            a = lf(row)
            if a is None:
                return False
            b = rf(row)
            if b is None:
                return False
            return cmp(a, b)

        return Compiled(BOOLEAN, fn)

    def _IsDistinct(self, e: ast.IsDistinct) -> Compiled:
        left = self.compile(e.left)
        right = self._compare_operand(e.right, left.type, "IS DISTINCT FROM", e)
        lf, rf = _comparison_value(left), _comparison_value(right)
        neg = e.negated

        def fn(row):
            a, b = lf(row), rf(row)
            distinct = (a is None) != (b is None) or (a is not None and a != b)
            return (not distinct) if neg else distinct

        return Compiled(BOOLEAN, fn)

    def _Between(self, e: ast.Between) -> Compiled:
        v = self.compile(e.value)
        lo = self._compare_operand(e.low, v.type, "BETWEEN", e)
        hi = self._compare_operand(e.high, v.type, "BETWEEN", e)
        dbl = _any_double(v, lo, hi)
        vf, lf, hf = _comparison_value(v, dbl), _comparison_value(lo, dbl), _comparison_value(hi, dbl)
        neg = e.negated

        def fn(row):
            x, a, b = vf(row), lf(row), hf(row)
            if x is None or a is None or b is None:
                return False
            r = a <= x <= b
            return not r if neg else r

        return Compiled(BOOLEAN, fn)

    def _InList(self, e: ast.InList) -> Compiled:
        v = self.compile(e.value)
        shown = v.type
        if is_numeric(v.type):
            naturals = []
            for i in e.items:
                if isinstance(i, ast.Literal) and i.kind == "STRING":
                    continue
                try:
                    t = self.compile(i).type
                except KsqlStatementError:
                    continue
                if is_numeric(t):
                    naturals.append(t)
            shown = common_type([v.type] + naturals) or v.type
        items = [self._operand_for(i, v.type, "=", shown, "Invalid Predicate: ") for i in e.items]
        dbl = _any_double(v, *items)
        vf = _comparison_value(v, dbl)
        fns = [_comparison_value(i, dbl) for i in items]
        neg = e.negated

        def fn(row):
            x = vf(row)
            if x is None:
                return neg
            for f in fns:
                y = f(row)
                if y is not None and x == y:
                    return not neg
            return neg

        return Compiled(BOOLEAN, fn)

    def _Like(self, e: ast.Like) -> Compiled:
        v = self.compile(e.value)
        p = self.compile(e.pattern)
        if v.type != STRING or p.type != STRING:
            raise KsqlStatementError(f"LIKE requires STRING operands: {format_expr(e)}")
        vf, pf, esc, neg = v.fn, p.fn, e.escape, e.negated
        if p.constant:
            pattern = pf(())
            try:
                rx = like_regex(pattern, esc) if pattern is not None else None
            except EvalError as err:
                raise KsqlStatementError(str(err)) from None

            def fn(row):
                x = vf(row)
                if x is None or rx is None:
                    return None
                return (rx.fullmatch(x) is None) if neg else (rx.fullmatch(x) is not None)

            return Compiled(BOOLEAN, fn)

        def dyn(row):
            x, pat = vf(row), pf(row)
            if x is None or pat is None:
                return None
            m = like_regex(pat, esc).fullmatch(x) is not None
            return not m if neg else m

        return Compiled(BOOLEAN, dyn)

    def _IsNull(self, e: ast.IsNull) -> Compiled:
        c = self.compile(e.value)
        f = c.fn
        if e.negated:
            return Compiled(BOOLEAN, lambda row: f(row) is not None)
        return Compiled(BOOLEAN, lambda row: f(row) is None)

    # ------------------------------------------------------------------ logic
    def _bool(self, e: ast.Expr) -> Compiled:
        c = self.compile(e)
        if c.type != BOOLEAN and not isinstance(c.type, NullType):
            raise KsqlStatementError(f"Logical operators require BOOLEAN operands: {format_expr(e)} is {c.type}")
        return c

    def _Logical(self, e: ast.Logical) -> Compiled:
        lf, rf = self._bool(e.left).fn, self._bool(e.right).fn
        if e.op == "AND":

            def fn(row):
                a = lf(row)
                if a is False:
                    return False
                b = rf(row)
                if b is False:
                    return False
                return None if a is None or b is None else True
        else:

            def fn(row):
                a = lf(row)
                if a is True:
                    return True
                b = rf(row)
                if b is True:
                    return True
                return None if a is None or b is None else False

        return Compiled(BOOLEAN, fn)

    def _Not(self, e: ast.Not) -> Compiled:
        f = self._bool(e.operand).fn
        return Compiled(BOOLEAN, lambda row: None if (v := f(row)) is None else not v)

    # ------------------------------------------------------------------ conditional
    def _Case(self, e: ast.Case) -> Compiled:
        if e.operand is not None:
            operand = self.compile(e.operand)
            conds = [
                self._compare("=", operand, self._compare_operand(w.condition, operand.type, "=", e), e).fn
                for w in e.whens
            ]
        else:
            conds = [self.compile_predicate(w.condition).fn for w in e.whens]
        results = [self.compile(w.result) for w in e.whens]
        default = self.compile(e.default) if e.default is not None else None
        all_results = results + ([default] if default else [])
        t = common_type([r.type for r in all_results])
        if t is None:
            raise KsqlStatementError(
                "Invalid Case expression. Type for all 'THEN' clauses should be the same. "
                + ", ".join(str(r.type) for r in all_results)
            )
        if isinstance(t, NullType):
            raise KsqlStatementError("Invalid Case expression. All case branches have NULL type")
        rfs = [convert(r, t).fn for r in results]
        df = convert(default, t).fn if default else (lambda row: None)
        pairs = list(zip(conds, rfs))

        def fn(row):
            for c, r in pairs:
                if c(row) is True:
                    return r(row)
            return df(row)

        return Compiled(t, fn)

    def _Cast(self, e: ast.Cast) -> Compiled:
        c = self.compile(e.operand)
        target = e.type
        if isinstance(c.type, NullType):
            return _const(target, None)
        src, f = c.type, c.fn
        if not V.cast_supported(src, target):
            raise KsqlStatementError(f"Cast of {src} to {target} is not supported")
        if src == target and not isinstance(target, DecimalType):
            return Compiled(target, f, c.constant)
        return Compiled(target, lambda row: V.cast(f(row), src, target), c.constant)

    # ------------------------------------------------------------------ constructors and access
    def _ArrayCtor(self, e: ast.ArrayCtor) -> Compiled:
        items = [self.compile(i) for i in e.items]
        if not items:
            raise UnsupportedError("empty ARRAY[] constructor")
        t = common_type([i.type for i in items])
        if t is None:
            raise KsqlStatementError("invalid input syntax: array elements must share a type: " + format_expr(e))
        if isinstance(t, NullType):
            raise KsqlStatementError(
                "Cannot construct an array with all NULL elements (see https://github.com/confluentinc/ksql/issues/4239). As a workaround, you may cast a NULL value to the desired type."
            )
        fns = [convert(i, t).fn for i in items]
        return Compiled(ArrayType(t), lambda row: [f(row) for f in fns])

    def _MapCtor(self, e: ast.MapCtor) -> Compiled:
        keys = [self.compile(k) for k, _ in e.entries]
        vals = [self.compile(v) for _, v in e.entries]
        if not keys:
            raise UnsupportedError("empty MAP() constructor")
        kt, vt = common_type([k.type for k in keys]), common_type([v.type for v in vals])
        if kt is None or vt is None:
            raise KsqlStatementError("Map keys and values must each share a type: " + format_expr(e))
        if isinstance(vt, NullType) or isinstance(kt, NullType):
            raise KsqlStatementError("Cannot construct a map with all NULL values")
        pairs = [(convert(k, kt).fn, convert(v, vt).fn) for k, v in zip(keys, vals)]
        return Compiled(MapType(kt, vt), lambda row: {k(row): v(row) for k, v in pairs})

    def _StructCtor(self, e: ast.StructCtor) -> Compiled:
        fields = [(n, self.compile(v)) for n, v in e.fields]
        t = StructType(tuple((n, c.type) for n, c in fields))
        fns = [(n, c.fn) for n, c in fields]
        return Compiled(t, lambda row: {n: f(row) for n, f in fns})

    def _Subscript(self, e: ast.Subscript) -> Compiled:
        base = self.compile(e.base)
        idx = self.compile(e.index)
        bf, xf = base.fn, idx.fn
        if isinstance(base.type, ArrayType):
            if not is_integral(idx.type):
                raise KsqlStatementError(f"Array index must be an INTEGER: {format_expr(e)}")

            def arr(row):
                a = bf(row)
                if a is None:
                    return None
                i = xf(row)
                if i is None:
                    return None
                n = len(a)
                pos = i - 1 if i > 0 else n + i if i < 0 else -1
                return a[pos] if 0 <= pos < n else None

            return Compiled(base.type.item, arr)
        if isinstance(base.type, MapType):
            key = convert(idx, base.type.key) if not isinstance(idx.type, NullType) else idx
            kf = key.fn

            def mp(row):
                m = bf(row)
                if m is None:
                    return None
                return m.get(kf(row))

            return Compiled(base.type.value, mp)
        raise KsqlStatementError(f"Subscript expression is only supported on ARRAY and MAP: {format_expr(e)}")

    def _Dereference(self, e: ast.Dereference) -> Compiled:
        base = self.compile(e.base)
        if not isinstance(base.type, StructType):
            raise KsqlStatementError(f"Can't dereference {format_expr(e.base)}: expected STRUCT but got {base.type}")
        ft = base.type.field(e.field)
        if ft is None:
            raise KsqlStatementError(f"Could not find field '{e.field}' in '{format_expr(e.base)}'.")
        bf, name = base.fn, e.field
        return Compiled(ft, lambda row: None if (s := bf(row)) is None else s.get(name))

    def _FunctionCall(self, e: ast.FunctionCall) -> Compiled:
        if (
            e.name.upper() in UNIT_FUNCTIONS
            and e.args
            and isinstance(e.args[0], ast.ColumnRef)
            and e.args[0].source is None
            and e.args[0].name.upper() in TIME_UNITS
        ):
            # `TIMESTAMPADD(SECONDS, 5, ts)`: the first argument is a time unit keyword, not a column
            e = ast.FunctionCall(e.name, (ast.Literal(e.args[0].name.upper(), "STRING"),) + e.args[1:])
        if any(isinstance(a, ast.Lambda) for a in e.args):
            return self._higher_order(e)
        args = [self.compile(a) for a in e.args]
        literals = [isinstance(a, ast.Literal) for a in e.args]
        resolved = resolve(e.name, [a.type for a in args], literals)
        impl = _guarded(resolved.impl, e.name.upper(), self.errors)
        # widen arguments to the parameter types; constants once, here, rather than per record
        for i, conv in enumerate(resolved.conversions):
            if conv is not None:
                arg = args[i]
                if arg.constant:
                    try:
                        args[i] = _const(conv[1], V.cast(arg.fn(()), conv[0], conv[1]))
                    except EvalError as err:
                        raise KsqlStatementError(f"Invalid argument to {e.name.upper()}: {err}") from None
                else:
                    args[i] = convert(arg, conv[1])
        fns = [a.fn for a in args]
        null_safe = resolved.null_safe

        if not fns:
            return Compiled(resolved.return_type, lambda row: impl())
        if len(fns) == 1:
            f0 = fns[0]
            if null_safe:
                return Compiled(resolved.return_type, lambda row: None if (v := f0(row)) is None else impl(v))
            return Compiled(resolved.return_type, lambda row: impl(f0(row)))

        def call(row):
            vals = [f(row) for f in fns]
            if null_safe and None in vals:
                return None
            return impl(*vals)

        return Compiled(resolved.return_type, call)

    def _Lambda(self, e: ast.Lambda) -> Compiled:
        raise KsqlStatementError("Lambda expressions are only allowed as arguments of TRANSFORM, FILTER and REDUCE")

    def _lambda(self, lam: ast.Expr, param_types: list[SqlType], fname: str) -> Compiled:
        if not isinstance(lam, ast.Lambda):
            raise KsqlStatementError(f"Function '{fname}' expects a lambda function here: {format_expr(lam)}")
        if len(lam.params) != len(param_types):
            raise KsqlStatementError(
                f"Lambda for {fname} takes {len(param_types)} argument(s), got {len(lam.params)}: {format_expr(lam)}"
            )
        inner = Compiler(self.scope.with_lambda_params(list(zip(lam.params, param_types))), self.clause, self.errors)
        return inner.compile(lam.body)

    def _higher_order(self, e: ast.FunctionCall) -> Compiled:
        """TRANSFORM, FILTER and REDUCE over arrays and maps; the lambda sees its parameters appended to the row."""
        name = e.name.upper()
        if name not in ("TRANSFORM", "FILTER", "REDUCE") or not e.args:
            raise UnsupportedError(f"lambda arguments to {name}")
        coll = self.compile(e.args[0])
        cf = coll.fn
        ct = coll.type
        is_map = isinstance(ct, MapType)
        if not isinstance(ct, (ArrayType, MapType)):
            raise KsqlStatementError(f"Function '{name}' expects an ARRAY or MAP as its first argument, got {ct}")
        elems = [ct.key, ct.value] if is_map else [ct.item]
        if name == "FILTER":
            if len(e.args) != 2:
                raise KsqlStatementError("FILTER takes a collection and a lambda")
            pred = self._lambda(e.args[1], elems, name).fn
            if is_map:
                return Compiled(
                    ct,
                    lambda row: (
                        None if (m := cf(row)) is None else {k: v for k, v in m.items() if pred((*row, k, v)) is True}
                    ),
                )
            return Compiled(
                ct, lambda row: None if (a := cf(row)) is None else [x for x in a if pred((*row, x)) is True]
            )
        if name == "TRANSFORM":
            if is_map:
                if len(e.args) != 3:
                    raise KsqlStatementError("TRANSFORM of a MAP takes a key lambda and a value lambda")
                kc, vc = self._lambda(e.args[1], elems, name), self._lambda(e.args[2], elems, name)
                kf, vf = kc.fn, vc.fn
                return Compiled(
                    MapType(kc.type, vc.type),
                    lambda row: (
                        None if (m := cf(row)) is None else {kf((*row, k, v)): vf((*row, k, v)) for k, v in m.items()}
                    ),
                )
            if len(e.args) != 2:
                raise KsqlStatementError("TRANSFORM of an ARRAY takes one lambda")
            body = self._lambda(e.args[1], elems, name)
            bf = body.fn
            return Compiled(
                ArrayType(body.type), lambda row: None if (a := cf(row)) is None else [bf((*row, x)) for x in a]
            )
        if len(e.args) != 3:
            raise KsqlStatementError("REDUCE takes a collection, an initial state and a lambda")
        init = self.compile(e.args[1])
        body = self._lambda(e.args[2], [init.type] + elems, name)
        state_t = init.type
        step = convert(body, state_t).fn if body.type != state_t else body.fn
        inf = init.fn

        def reduce_(row):
            coll_v = cf(row)
            state = inf(row)
            if coll_v is None:
                return state
            items = coll_v.items() if is_map else ((x,) for x in coll_v)
            for parts in items:
                state = step((*row, state, *parts))
            return state

        return Compiled(state_t, reduce_)


def _guarded(impl: Callable, name: str, errors: ErrorSink) -> Callable:
    """A function call that fails on one record yields null and is reported, as in ksqlDB."""

    def call(*args):
        try:
            return impl(*args)
        except (EvalError, ArithmeticError, ValueError, OverflowError, IndexError) as e:
            errors.report(name, str(e))
            return None

    return call


def _as_decimal(t: SqlType) -> SqlType:
    return to_decimal_type(t) if not isinstance(t, DecimalType) else t


def _comparison_value(c: Compiled, as_double: bool = False) -> Callable[[Row], Any]:
    """Values in a form Python compares the way ksqlDB does: a DECIMAL compared with a DOUBLE is
    compared as a double (Python would compare the exact binary value of the float)."""
    fn = c.fn
    if as_double and isinstance(c.type, DecimalType):
        return lambda row: None if (v := fn(row)) is None else float(v)
    return fn


def _any_double(*cs: Compiled) -> bool:
    return any(c.type == DOUBLE for c in cs)


def _and3(a, b):
    if a is False or b is False:
        return False
    if a is None or b is None:
        return None
    return True
