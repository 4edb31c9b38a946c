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
from decimal import Decimal, DivisionByZero, Inexact, InvalidOperation, localcontext
from typing import Any

from . import ast
from . import comparison as cmp
from . import values as V
from .errors import EvalError, KsqlStatementError, UnsupportedError
from .formatter import format_expr
from .functions import resolve
from .functions.datetime import TIME_UNITS, UNIT_FUNCTIONS
from .functions.maths import jdiv
from .functions.registry import REGISTRY
from .types import (
    BIGINT,
    BOOLEAN,
    DOUBLE,
    INTEGER,
    LONG_MAX,
    NULL,
    STRING,
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
    not_null: bool = False  # never NULL (a comparison, IS NULL, AND/OR/NOT): Java's unboxing cannot fail


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
    """ksqlDB's DecimalUtil.fromValue: a literal strictly between -1 and 1 has one digit before its scale
    (0.005 is DECIMAL(4, 3)); any other has its digits as precision."""
    sign, digits, exp = d.as_tuple()
    scale = max(-exp, 0) if isinstance(exp, int) else 0
    if -1 < d < 1:
        return DecimalType(scale + 1, scale)
    return DecimalType(max(len(digits), scale, 1), scale)


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
    """DECIMAL arithmetic as ksqlDB generates it: `a.op(b, new MathContext(p, UNNECESSARY)).setScale(s)`.
    Nothing is ever rounded: a result that needs more than p digits, or more than s decimals (1.0 / 3.0),
    fails the record (ksqlDB then yields NULL), as does a division by zero."""
    quantum = Decimal(1).scaleb(-t.scale)
    apply: Callable[[Decimal, Decimal], Decimal] = {
        "+": operator.add,
        "-": operator.sub,
        "*": operator.mul,
        "/": operator.truediv,
        "%": operator.mod,
    }[op]

    def fn(a: Decimal, b: Decimal) -> Decimal:
        with localcontext() as ctx:
            ctx.prec = t.precision
            ctx.traps[Inexact] = True
            try:
                r = apply(a, b)
            except (DivisionByZero, InvalidOperation):
                raise EvalError("Division by zero" if not b else "Division impossible") from None
            except Inexact:
                raise EvalError("Rounding necessary") from None
            ctx.prec = max(t.precision, 1) + 40
            scaled = r.quantize(quantum)
        if scaled != r:
            raise EvalError("Rounding necessary")
        return scaled

    return fn


#: what ksqlDB's code generator calls the expressions of each clause in its messages
_CODE_KINDS = {
    "SELECT": "Select",
    "WHERE": "Predicate",
    "HAVING": "Predicate",
    "GROUP BY": "Group By",
    "PARTITION BY": "SelectKey",
}


class ErrorSink:
    """Where a failing function call reports (ksqlDB logs it and the call yields null); the query running
    the expressions points `handler` at its processing log."""

    def __init__(self) -> None:
        self.handler: Callable[[str, str], None] | None = None
        #: reports so far: a memoized expression keeps no value whose computation reported (see `_memoized`)
        self.reports = 0

    def report(self, where: str, message: str) -> None:
        self.reports += 1
        if self.handler is not None:
            self.handler(where, message)


class _Reads:
    """What an expression being compiled reads: the row's slots, the frames of lambda parameters, and whether
    it calls a function whose value may change between calls with the same arguments (RANDOM, UUID, ...)."""

    __slots__ = ("slots", "frames_read", "frames_made", "volatile")

    def __init__(self) -> None:
        self.slots: set[int] = set()
        self.frames_read: set[int] = set()
        self.frames_made: set[int] = set()
        self.volatile = False

    def add(self, other: _Reads) -> None:
        """`other` is part of this expression."""
        self.slots |= other.slots
        self.frames_read |= other.frames_read
        self.frames_made |= other.frames_made
        self.volatile = self.volatile or other.volatile

    @property
    def pure(self) -> bool:
        """Its value depends on those slots alone: no lambda parameter from outside it, nothing volatile."""
        return not self.volatile and self.frames_read <= self.frames_made


class Compiler:
    """Compiles expressions against one scope. `clause` names the clause in error messages."""

    def __init__(self, scope: Scope, clause: str = "SELECT", errors: ErrorSink | None = None) -> None:
        self.scope = scope
        self.clause = clause
        self.errors = errors or ErrorSink()
        #: compiling a lambda's body, which ksqlDB runs as Java code: a NULL that Java unboxes (arithmetic,
        #: AND/OR/NOT, a CASE condition, a FILTER predicate) throws, and fails the lambda function's call
        self.strict = False
        #: the expressions being compiled that may be memoized, innermost last (shared with lambda bodies)
        self._tracked: list[_Reads] = []
        #: memoized expressions compiled so far, by expression: a repeated one is computed once per row
        self._shared: dict[Any, tuple[Compiled, _Reads]] = {}

    # ------------------------------------------------------------------ entry
    def compile(self, e: ast.Expr) -> Compiled:
        method = getattr(self, "_" + type(e).__name__, None)
        if method is None:
            raise UnsupportedError(f"expression {type(e).__name__}")
        if not self._worth_memoizing(e):
            return method(e)
        try:
            key: Any = (e, format_expr(e))  # equal nodes (locations aside) that also print alike
            shared = self._shared.get(key)
        except TypeError:  # a literal that cannot be hashed
            key, shared = None, None
        if shared is not None:  # the same expression again (a FILTER's count and its sum): one memo for both
            c, reads = shared
            for outer in self._tracked:
                outer.add(reads)
            return c
        reads = _Reads()
        self._tracked.append(reads)
        try:
            c = method(e)
        finally:
            self._tracked.pop()
        if c.constant or not reads.pure:
            return c
        c = _memoized(c, sorted(reads.slots), self.errors)
        if key is not None:
            self._shared[key] = (c, reads)
        return c

    def _worth_memoizing(self, e: ast.Expr) -> bool:
        """A call of FILTER, TRANSFORM or REDUCE (statements repeat them: the count and the sum of one
        FILTER), and in a lambda's body anything but a leaf (what does not read the lambda's parameters is
        then computed once per call, not once per element)."""
        if isinstance(e, ast.FunctionCall):
            return isinstance(self.scope, LambdaScope) or any(isinstance(a, ast.Lambda) for a in e.args)
        return isinstance(self.scope, LambdaScope) and not isinstance(e, (ast.Literal, ast.ColumnRef, ast.Lambda))

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
        if e.kind == "BIGINT" and e.value > LONG_MAX:  # 2^63, a literal only when negated (parser.py)
            where = f"line {e.loc.line}:{e.loc.column}: " if e.loc else ""
            raise KsqlStatementError(f"{where}Invalid numeric literal: {e.value}")
        t = {"BOOLEAN": BOOLEAN, "INTEGER": INTEGER, "BIGINT": BIGINT, "DOUBLE": DOUBLE, "STRING": STRING}[e.kind]
        return _const(t, e.value)

    def _ColumnRef(self, e: ast.ColumnRef) -> Compiled:
        param = self.scope.param(e) if isinstance(self.scope, LambdaScope) else None
        if param is not None:
            frame, i, t = param
            for reads in self._tracked:
                reads.frames_read.add(id(frame))
            return Compiled(t, lambda row: frame[i])
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
        for reads in self._tracked:
            reads.slots.add(idx)
        return Compiled(t, operator.itemgetter(idx), column_index=idx)

    # ------------------------------------------------------------------ arithmetic
    def _Arithmetic(self, e: ast.Arithmetic) -> Compiled:
        left, right = self.compile(e.left), self.compile(e.right)
        lt, rt = left.type, right.type
        if self.strict and e.op == "+" and lt == STRING and rt == STRING:
            # Java string concatenation: a null operand reads "null"
            jl, jr = left.fn, right.fn
            return Compiled(STRING, lambda row: _java_str(jl(row)) + _java_str(jr(row)))
        if self.strict and not (isinstance(lt, NullType) or isinstance(rt, NullType)):
            left, right = _npe(left), _npe(right)
        lf, rf = left.fn, right.fn
        if e.op == "+" and lt == STRING and rt == STRING:

            def concat(row):
                a, b = lf(row), rf(row)
                return None if a is None or b is None else a + b

            return Compiled(STRING, concat)
        if isinstance(lt, NullType) or isinstance(rt, NullType):  # Operator.checkForNullTypes
            shown = ["null" if isinstance(x, NullType) else str(x) for x in (lt, rt)]
            raise KsqlStatementError(
                f"Error processing expression: {format_expr(e)}. "
                f"Arithmetic on types {shown[0]} and {shown[1]} are not supported."
            )
        if not (is_numeric(lt) and is_numeric(rt)):
            raise KsqlStatementError(
                f"Error processing expression: {format_expr(e)}. Unsupported arithmetic types. "
                f"{cmp.base_name(lt)} {cmp.base_name(rt)}"
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
        fn = _npe(c).fn if self.strict else c.fn
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
        return self._comparison(e.op, e.left, e.right)

    def _comparison(self, op: str, left_e: ast.Expr, right_e: ast.Expr, negated: bool = False) -> Compiled:
        """A comparison or IS [NOT] DISTINCT FROM, typed by ksqlDB's rules (comparison.py): a NULL literal
        or types that do not compare fail the statement, with ksqlDB's message in the clause's words."""
        left, right = self.compile(left_e), self.compile(right_e)
        lt, rt = left.type, right.type
        if isinstance(lt, NullType) or isinstance(rt, NullType):
            err = cmp.with_null(None if isinstance(lt, NullType) else lt, op, None if isinstance(rt, NullType) else rt)
            raise KsqlStatementError(self._in_clause(err.message))
        if not cmp.is_valid(lt, op, rt):
            shown = [format_expr(unqualified_refs(x)) for x in (left_e, right_e)]
            raise KsqlStatementError(self._in_clause(cmp.invalid(shown[0], lt, op, shown[1], rt)))
        return self._compare(op, left, right, negated)

    def _in_clause(self, message: str) -> str:
        """ksqlDB's words for a type error: its filters (WHERE, HAVING) say in which one."""
        return f"Error in {self.clause} expression: {message}" if self.clause in ("WHERE", "HAVING") else message

    def _in_code(self, message: str) -> str:
        """ksqlDB's words for an error found while it generates an expression's code: in which kind of
        expression (CodeGenRunner's "Invalid Select: ...")."""
        kind = _CODE_KINDS.get(self.clause)
        return f"Invalid {kind}: {message}." if kind else message

    def _compare(self, op: str, left: Compiled, right: Compiled, negated: bool = False) -> Compiled:
        """Compare two typed operands; any NULL makes a comparison false and IS DISTINCT FROM true exactly
        when only one side is NULL (ksqlDB's generated Java)."""
        lconv, rconv = cmp.operand_converters(left.type, right.type)
        lf, rf = _converted(left, lconv), _converted(right, rconv)
        test = cmp.comparator(op, left.type, right.type)
        if op == "IS DISTINCT FROM":

            def distinct(row):
                a, b = lf(row), rf(row)
                if a is None or b is None:
                    return (a is None) != (b is None)
                return test(a, b)

            return Compiled(BOOLEAN, (lambda row: not distinct(row)) if negated else distinct, not_null=True)

        def fn(row):
            a = lf(row)
            if a is None:
                return False
            b = rf(row)
            if b is None:
                return False
            return test(a, b)

        return Compiled(BOOLEAN, fn, not_null=True)

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

    def _IsDistinct(self, e: ast.IsDistinct) -> Compiled:
        return self._comparison("IS DISTINCT FROM", e.left, e.right, e.negated)

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
            return Compiled(BOOLEAN, lambda row: f(row) is not None, not_null=True)
        return Compiled(BOOLEAN, lambda row: f(row) is None, not_null=True)

    # ------------------------------------------------------------------ logic
    def _bool(self, e: ast.Expr) -> Compiled:
        c = self.compile(e)
        if c.type != BOOLEAN and not isinstance(c.type, NullType):
            raise KsqlStatementError(f"Logical operators require BOOLEAN operands: {format_expr(e)} is {c.type}")
        return c

    def _Logical(self, e: ast.Logical) -> Compiled:
        """Java's && and || on Booleans, as ksqlDB generates them: short-circuit, and a NULL operand that is
        evaluated throws (the record's value is then NULL, or a WHERE drops it), so `NULL OR TRUE` is not
        TRUE as in SQL's three-valued logic, while `FALSE AND NULL` is FALSE."""
        jl, jr = _npe(self._bool(e.left)).fn, _npe(self._bool(e.right)).fn
        if e.op == "AND":
            return Compiled(BOOLEAN, lambda row: jl(row) and jr(row), not_null=True)
        return Compiled(BOOLEAN, lambda row: jl(row) or jr(row), not_null=True)

    def _Not(self, e: ast.Not) -> Compiled:
        jf = _npe(self._bool(e.operand)).fn  # Java's `!` unboxes its operand
        return Compiled(BOOLEAN, lambda row: not jf(row), not_null=True)

    # ------------------------------------------------------------------ conditional
    def _Case(self, e: ast.Case) -> Compiled:
        """A searched CASE, typed as ksqlDB's ExpressionTypeManager types it: every WHEN is BOOLEAN, every
        non-NULL THEN and the ELSE have one same type (no widening). ksqlDB does not implement the simple
        CASE (`CASE x WHEN v ...`)."""
        if e.operand is not None:
            raise UnsupportedError("simple CASE (CASE <value> WHEN ...), which ksqlDB does not implement either")
        conds, results = [], []
        then_type: SqlType | None = None
        for w in e.whens:
            cond = self.compile(w.condition)
            if cond.type != BOOLEAN:
                raise KsqlStatementError(
                    f"WHEN operand type should be boolean.\nType for '{format_expr(w.condition)}' is {cond.type}"
                )
            result = self.compile(w.result)
            if not isinstance(result.type, NullType):
                if then_type is not None and result.type != then_type:
                    raise KsqlStatementError(
                        "Invalid Case expression. Type for all 'THEN' clauses should be the same.\n"
                        f"THEN expression 'WHEN {format_expr(w.condition)} THEN {format_expr(w.result)}' has type: "
                        f"{result.type}.\nPrevious THEN expression(s) type: {then_type}."
                    )
                then_type = then_type or result.type
            conds.append(_npe(cond).fn)  # ksqlDB's SearchedCaseFunction unboxes each condition
            results.append(result)
        default = self.compile(e.default) if e.default is not None else None
        default_type = None if default is None or isinstance(default.type, NullType) else default.type
        if then_type is not None and default_type is not None and then_type != default_type:
            raise KsqlStatementError(
                "Invalid Case expression. Type for the default clause should be the same as for 'THEN' clauses.\n"
                f"THEN type: {then_type}.\nDEFAULT type: {default_type}."
            )
        t = then_type or default_type
        if t is None:
            raise KsqlStatementError("Invalid Case expression. All case branches have NULL type")
        pairs = list(zip(conds, [convert(r, t).fn for r in results]))
        df = convert(default, t).fn if default else (lambda row: None)

        def fn(row):
            for c, r in pairs:
                if c(row):
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
            raise KsqlStatementError(self._in_code(f"Cast of {src} to {target} is not supported"))
        if src == target and not isinstance(target, DecimalType):
            cast = Compiled(target, f, c.constant)
        else:
            cast = Compiled(target, lambda row: V.cast(f(row), src, target), c.constant)
        return _null_to_none(cast, "CAST", self.errors) if self.strict else cast

    # ------------------------------------------------------------------ constructors and access
    def _ArrayCtor(self, e: ast.ArrayCtor) -> Compiled:
        items = [self.compile(i) for i in e.items]
        if not items:
            raise KsqlStatementError(
                "Array constructor cannot be empty. Please supply at least one element (see https://github.com/confluentinc/ksql/issues/4239)."
            )
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
            raise KsqlStatementError(
                "Map constructor cannot be empty. Please supply at least one key value pair (see https://github.com/confluentinc/ksql/issues/4239)."
            )
        kt, vt = common_type([k.type for k in keys]), common_type([v.type for v in vals])
        if kt is None or vt is None:
            raise KsqlStatementError("Map keys and values must each share a type: " + format_expr(e))
        for what, t in (("key", kt), ("value", vt)):
            if isinstance(t, NullType):
                raise KsqlStatementError(
                    f"Cannot construct a map with all NULL {what}s (see https://github.com/confluentinc/ksql/issues/4239). As a workaround, you may cast a "
                    f"NULL {what} to the desired type."
                )
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
        hint = ""
        if isinstance(base.type, StructType):
            hint = f" Use the dereference operator for STRUCTS: {format_expr(e.base)}->{format_expr(e.index)}"
        raise KsqlStatementError(f"Subscript expression ({format_expr(e)}) do not apply to {base.type}.{hint}")

    def _Dereference(self, e: ast.Dereference) -> Compiled:
        base = self.compile(e.base)
        if not isinstance(base.type, StructType):
            raise KsqlStatementError(f"Can't dereference {format_expr(e.base)}: expected STRUCT but got {base.type}")
        ft = base.type.field(e.field)
        if ft is None:
            raise KsqlStatementError(f"Could not find field '{e.field}' in '{format_expr(e.base)}'.")
        bf, name = base.fn, e.field
        param = (
            self.scope.param(e.base)
            if isinstance(self.scope, LambdaScope) and isinstance(e.base, ast.ColumnRef)
            else None
        )
        if param is not None:  # a field of a lambda's parameter (`e->T`): read in one step, per element
            frame, i, _ = param
            return Compiled(ft, lambda row: None if (s := frame[i]) is None else s.get(name))
        if base.column_index is not None:
            idx = base.column_index
            return Compiled(ft, lambda row: None if (s := row[idx]) is None else s.get(name))
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
        if not args and not _deterministic(e.name):
            for reads in self._tracked:
                reads.volatile = True
        if self.strict:
            args = [
                _null_to_none(c, a.name.upper() if isinstance(a, ast.FunctionCall) else a.field, self.errors)
                if isinstance(a, (ast.FunctionCall, ast.Dereference))
                else c
                for a, c in zip(e.args, args)
            ]
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
        # the grammar only allows lambdas as call arguments; a function without lambda parameters refuses them
        raise KsqlStatementError("Lambda expressions are only allowed as arguments of TRANSFORM, FILTER and REDUCE")

    def _lambda_body(self, lam: ast.Lambda, param_types: Sequence[SqlType]) -> tuple[Compiled, list[Any]]:
        """The lambda's body compiled where its parameters shadow columns, with Java's null rules (strict)."""
        scope = LambdaScope(self.scope, list(zip(lam.params, param_types)))
        for reads in self._tracked:
            reads.frames_made.add(id(scope.frame))
        inner = Compiler(scope, self.clause, self.errors)
        inner.strict = True
        inner._tracked = self._tracked
        body = inner.compile(lam.body)
        return body, scope.frame

    def _higher_order(self, e: ast.FunctionCall) -> Compiled:
        """TRANSFORM, FILTER and REDUCE, typed as ksqlDB's UDF resolution types them: a first pass picks the
        overload from the argument shapes (a lambda counts by its number of parameters), a second pass types
        each lambda's parameters from the generics bound so far and checks its body's type against the
        declared lambda type (ksqlDB's GenericsUtil messages). A call's lambdas run as Java code would: a
        failure anywhere in them makes the whole call null (reported), as ksqlDB's UDF invocation does."""
        name = e.name.upper()
        shapes: list[SqlType | int] = [
            len(a.params) if isinstance(a, ast.Lambda) else self.compile(a).type for a in e.args
        ]
        spec = _lambda_overload(name, shapes)
        if spec is None:
            if name not in _LAMBDA_FUNCTIONS and name not in _known_functions():
                raise KsqlStatementError(f"Can't find any functions with the name '{name}'")
            shown = ", ".join("LAMBDA" if isinstance(s, int) else str(s) for s in shapes)
            raise KsqlStatementError(f"Function '{name}' does not accept parameters ({shown}).")
        coll = self.compile(e.args[0])
        if isinstance(coll.type, NullType):
            raise UnsupportedError(f"{name} of a NULL literal")
        is_map = isinstance(coll.type, MapType)
        elems: list[SqlType] = [coll.type.key, coll.type.value] if is_map else [coll.type.item]  # type: ignore[union-attr]
        generics = ["K", "V"] if is_map else ["T"]
        cf = coll.fn
        guard = _call_guard(name, self.errors)
        if name == "FILTER":
            lam = e.args[1]
            assert isinstance(lam, ast.Lambda)
            pred, frame = self._lambda_body(lam, elems)
            _check_lambda_return(generics, "BOOLEAN", elems, pred.type, BOOLEAN)
            filtered = _filter_map(cf, pred.fn, frame) if is_map else _filter_array(cf, pred.fn, frame)
            return Compiled(coll.type, guard(filtered))
        if name == "TRANSFORM":
            if is_map:
                k_lam, v_lam = e.args[1], e.args[2]
                assert isinstance(k_lam, ast.Lambda) and isinstance(v_lam, ast.Lambda)
                (kc, k_frame), (vc, v_frame) = self._lambda_body(k_lam, elems), self._lambda_body(v_lam, elems)
                for c in (kc, vc):
                    _check_lambda_return(generics, "R", elems, c.type, None)
                transformed = _transform_map(cf, kc.fn, vc.fn, k_frame, v_frame)
                return Compiled(MapType(kc.type, vc.type), guard(transformed))
            lam = e.args[1]
            assert isinstance(lam, ast.Lambda)
            body, frame = self._lambda_body(lam, elems)
            _check_lambda_return(generics, "R", elems, body.type, None)
            return Compiled(ArrayType(body.type), guard(_transform_array(cf, body.fn, frame)))
        if is_map:
            # ksqlDB folds a map in its Java HashMap's iteration order, which depends on how the map was built
            # (deserializer, capacity, key hashes); this engine keeps maps in record order and cannot promise
            # the same answer for an order-sensitive lambda
            raise UnsupportedError("REDUCE over a MAP (ksqlDB folds it in Java HashMap order)")
        init = self.compile(e.args[1])
        if isinstance(init.type, NullType):
            raise UnsupportedError("REDUCE with a NULL literal as its initial state")
        lam = e.args[2]
        assert isinstance(lam, ast.Lambda)
        body, frame = self._lambda_body(lam, [init.type, *elems])
        _check_lambda_return(["S", *generics], "S", [init.type, *elems], body.type, init.type)
        return Compiled(init.type, guard(_reduce(cf, init.fn, body.fn, frame)))


class LambdaScope(Scope):
    """The scope of a lambda's body: its parameters shadow unqualified names; everything else resolves in the
    enclosing scope (a join's `p.AMOUNT`, ROWTIME). The body runs over the enclosing row itself and reads its
    parameters from `frame`, which the lambda function sets per element: no row is copied per element."""

    def __init__(self, parent: Scope, params: Sequence[tuple[str, SqlType]]) -> None:
        super().__init__([], ())
        self.parent = parent
        self.params = {name: (parent.size + i, t) for i, (name, t) in enumerate(params)}
        self.columns = {**parent.columns, **self.params}
        self.source_names = parent.source_names
        self.size = parent.size + len(params)
        self.frame: list[Any] = [None] * len(params)

    def lookup(self, ref: ast.ColumnRef) -> tuple[int, SqlType] | None:
        if ref.source is None and ref.name in self.params:
            return self.params[ref.name]
        return self.parent.lookup(ref)

    def param(self, ref: ast.ColumnRef) -> tuple[list[Any], int, SqlType] | None:
        """(frame, position, type) of the lambda parameter `ref` names, in this lambda or an enclosing one."""
        if ref.source is None and ref.name in self.params:
            index, t = self.params[ref.name]
            return self.frame, index - self.parent.size, t
        return self.parent.param(ref) if isinstance(self.parent, LambdaScope) else None

    def reads_params(self, e: ast.Expr) -> bool:
        """Whether `e` reads a parameter of this lambda or of an enclosing one (else it is the same for every
        element, and the lambda function may compute it once per call)."""
        return any(isinstance(n, ast.ColumnRef) and self.param(n) is not None for n in e.walk())


#: ksqlDB's lambda functions: per name, the overloads as (collection kind, lambda arity per argument after
#: the collection; None for a plain argument).
_LAMBDA_FUNCTIONS: dict[str, tuple[tuple[type, tuple[int | None, ...]], ...]] = {
    "TRANSFORM": ((ArrayType, (1,)), (MapType, (2, 2))),
    "FILTER": ((ArrayType, (1,)), (MapType, (2,))),
    "REDUCE": ((ArrayType, (None, 2)), (MapType, (None, 3))),
}


def _known_functions() -> set[str]:
    return set(REGISTRY)


def _lambda_overload(name: str, shapes: Sequence[SqlType | int]) -> tuple[type, tuple[int | None, ...]] | None:
    """The overload of a lambda function these argument shapes select (first pass of ksqlDB's resolution)."""
    for kind, rest in _LAMBDA_FUNCTIONS.get(name, ()):
        if len(shapes) != 1 + len(rest) or not isinstance(shapes[0], kind):
            continue
        if all(
            (isinstance(s, int) and s == want) if want is not None else not isinstance(s, int)
            for s, want in zip(shapes[1:], rest)
        ):
            return kind, rest
    return None


def _check_lambda_return(
    generics: Sequence[str], declared: str, inputs: Sequence[SqlType], actual: SqlType, expected: SqlType | None
) -> None:
    """A lambda body's type against the declared lambda type, with ksqlDB's messages: a declared BOOLEAN
    must be BOOLEAN; a generic already bound (REDUCE's state S) must be bound to the same type again."""
    if isinstance(actual, NullType):
        raise UnsupportedError("a lambda whose body is a NULL literal")
    schema = f"LAMBDA ({', '.join(generics)}) => {declared}"
    instance = f"LAMBDA ({', '.join(str(t) for t in inputs)}) => {actual}"
    if expected is None or actual == expected:
        return
    if declared == "BOOLEAN":
        raise KsqlStatementError(
            f"Cannot infer generics for {schema} from {instance} because they do not have the same schema structure."
        )
    raise KsqlStatementError(
        f"Found invalid instance of generic schema when mapping {schema} to {instance}. "
        f"Cannot map {declared} to both {expected} and {actual}"
    )


def _call_guard(name: str, errors: ErrorSink) -> Callable[[Callable[[Row], Any]], Callable[[Row], Any]]:
    """A lambda function's call: whatever fails in it (a NULL unboxed by the lambda's Java code, duplicate map
    keys) makes the call null and is reported, as ksqlDB's invocation of the UDF does."""

    def wrap(fn: Callable[[Row], Any]) -> Callable[[Row], Any]:
        def call(row: Row) -> Any:
            try:
                return fn(row)
            except (EvalError, ArithmeticError, ValueError, OverflowError, IndexError) as err:
                errors.report(name, str(err))
                return None

        return call

    return wrap


def _filter_array(cf: Callable[[Row], Any], pred: Callable[[Row], Any], frame: list[Any]) -> Callable[[Row], Any]:
    def fn(row: Row) -> Any:
        items = cf(row)
        if items is None:
            return None
        out = []
        for x in items:
            frame[0] = x
            keep = pred(row)
            if keep is None:  # Java unboxes the predicate's Boolean
                raise EvalError("NullPointerException: FILTER's lambda returned null")
            if keep:
                out.append(x)
        return out

    return fn


def _filter_map(cf: Callable[[Row], Any], pred: Callable[[Row], Any], frame: list[Any]) -> Callable[[Row], Any]:
    def fn(row: Row) -> Any:
        m = cf(row)
        if m is None:
            return None
        out = {}
        for k, v in m.items():
            frame[0], frame[1] = k, v
            keep = pred(row)
            if keep is None:
                raise EvalError("NullPointerException: FILTER's lambda returned null")
            if keep:
                if v is None:  # Collectors.toMap refuses null values
                    raise EvalError("NullPointerException: null map value")
                out[k] = v
        return out

    return fn


def _transform_array(cf: Callable[[Row], Any], body: Callable[[Row], Any], frame: list[Any]) -> Callable[[Row], Any]:
    def fn(row: Row) -> Any:
        items = cf(row)
        if items is None:
            return None
        out = []
        for x in items:
            frame[0] = x
            out.append(body(row))
        return out

    return fn


def _transform_map(
    cf: Callable[[Row], Any],
    kf: Callable[[Row], Any],
    vf: Callable[[Row], Any],
    k_frame: list[Any],
    v_frame: list[Any],
) -> Callable[[Row], Any]:
    def fn(row: Row) -> Any:
        m = cf(row)
        if m is None:
            return None
        out: dict = {}
        for k, v in m.items():
            k_frame[0], k_frame[1] = v_frame[0], v_frame[1] = k, v
            nk, nv = kf(row), vf(row)
            if nv is None:  # Collectors.toMap refuses null values ...
                raise EvalError("NullPointerException: null map value")
            if nk in out:  # ... and duplicate keys
                raise EvalError(f"IllegalStateException: Duplicate key {nk}")
            out[nk] = nv
        return out

    return fn


def _reduce(
    cf: Callable[[Row], Any], init: Callable[[Row], Any], step: Callable[[Row], Any], frame: list[Any]
) -> Callable[[Row], Any]:
    def fn(row: Row) -> Any:
        coll = cf(row)
        state = init(row)
        if state is None:
            return None
        if coll is None:
            return state
        for x in coll:
            frame[0], frame[1] = state, x
            state = step(row)
        return state

    return fn


def _deterministic(name: str) -> bool:
    """Whether a call without arguments gives the same value every time (PI does; RANDOM, UUID and the
    current time do not). A call with arguments depends on them alone."""
    function = REGISTRY.get(name.upper())
    return function is not None and function.deterministic


def _memoized(c: Compiled, slots: Sequence[int], errors: ErrorSink) -> Compiled:
    """`c`, computed again only when a row slot it reads holds another object than the last time: the same
    FILTER in several columns of a row, or a lambda's body's part that does not read its parameters, runs
    once. Sound because the values in rows are never changed in place (functions and aggregates make new
    lists, maps and structs). A value whose computation reported an error is not kept (each call reports)."""
    fn = c.fn
    unset = object()
    memo: tuple[Any, Any] = (unset, None)  # (the slots' objects, the value): swapped as one
    single = len(slots) == 1
    get = operator.itemgetter(*slots) if slots else (lambda row: ())
    same = operator.is_

    def memoized(row: Row) -> Any:
        nonlocal memo
        key = get(row)
        last = memo
        if last[0] is not unset and (last[0] is key if single else all(map(same, key, last[0]))):
            return last[1]
        before = errors.reports
        value = fn(row)
        if errors.reports == before:
            memo = (key, value)
        return value

    return Compiled(c.type, memoized, not_null=c.not_null)


def _npe(c: Compiled) -> Compiled:
    """An operand Java unboxes (arithmetic, AND/OR/NOT, a CASE condition in lambda code): null throws."""
    if c.not_null:
        return c
    f = c.fn

    def fn(row: Row) -> Any:
        v = f(row)
        if v is None:
            raise EvalError("NullPointerException")
        return v

    return Compiled(c.type, fn, c.constant)


def _null_to_none(c: Compiled, name: str, errors: ErrorSink) -> Compiled:
    """ksqlDB's nested error handling: a function call or dereference that is an argument of a function, and
    a CAST, yield null (reported) when they fail, instead of failing the enclosing expression."""
    f = c.fn

    def fn(row: Row) -> Any:
        try:
            return f(row)
        except (EvalError, ArithmeticError, ValueError, OverflowError, IndexError) as err:
            errors.report(name, str(err))
            return None

    return Compiled(c.type, fn, c.constant, c.column_index)


def _guarded(impl: Callable, name: str, errors: ErrorSink) -> Callable:
    """A function call that fails on one record yields null and is reported, as in ksqlDB."""

    def call(*args):
        try:
            return impl(*args)
        except (EvalError, ArithmeticError, ValueError, OverflowError, IndexError) as e:
            errors.report(name, str(e))
            return None

    return call


def _java_str(v: Any) -> str:
    return "null" if v is None else v


def _as_decimal(t: SqlType) -> SqlType:
    return to_decimal_type(t) if not isinstance(t, DecimalType) else t


def unqualified_refs(e: ast.Expr) -> ast.Expr:
    """`e` with column qualifiers dropped, as ksqlDB prints an expression of one source in its messages."""
    return e.transform(lambda x: ast.ColumnRef(x.name) if isinstance(x, ast.ColumnRef) and x.source else None)


def _converted(c: Compiled, conv: Callable[[Any], Any]) -> Callable[[Row], Any]:
    """The operand's values through `conv`; a constant is converted once, here."""
    fn = c.fn
    if conv is cmp.same:
        return fn
    if c.constant:
        try:
            value = fn(())
            value = None if value is None else conv(value)
            return lambda row: value
        except (EvalError, ValueError, ArithmeticError):
            pass  # fails on every record, as in ksqlDB
    return lambda row: None if (v := fn(row)) is None else conv(v)


def _comparison_value(c: Compiled, as_double: bool = False) -> Callable[[Row], Any]:
    """Values in a form Python compares the way ksqlDB does: a DECIMAL compared with a DOUBLE is
    compared as a double (Python would compare the exact binary value of the float)."""
    fn = c.fn
    if as_double and isinstance(c.type, DecimalType):
        return lambda row: None if (v := fn(row)) is None else float(v)
    return fn


def _any_double(*cs: Compiled) -> bool:
    return any(c.type == DOUBLE for c in cs)
