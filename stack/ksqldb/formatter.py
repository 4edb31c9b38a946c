"""Expression text as ksqlDB prints it in error messages and generated names."""

from __future__ import annotations

import re

from . import ast
from .values import decimal_str, java_double_str

_PLAIN = re.compile(r"^[A-Z_][A-Z0-9_@]*$")


def quote_ident(name: str) -> str:
    return name if _PLAIN.match(name) else f"`{name}`"


def format_expr(e: ast.Expr) -> str:
    f = format_expr
    if isinstance(e, ast.Literal):
        if e.value is None:
            return "null"
        if e.kind == "STRING":
            return "'" + e.value.replace("'", "''") + "'"
        if e.kind == "BOOLEAN":
            return "true" if e.value else "false"
        if e.kind == "DECIMAL":
            return decimal_str(e.value)
        if e.kind == "DOUBLE":
            return java_double_str(e.value)
        return str(e.value)
    if isinstance(e, ast.ColumnRef):
        return f"{quote_ident(e.source)}.{quote_ident(e.name)}" if e.source else quote_ident(e.name)
    if isinstance(e, ast.FunctionCall):
        return f"{e.name}({'*' if e.star else ', '.join(f(a) for a in e.args)})"
    if isinstance(e, ast.Arithmetic):
        return f"({f(e.left)} {e.op} {f(e.right)})"
    if isinstance(e, ast.Negate):
        return f"-{f(e.operand)}"
    if isinstance(e, ast.Comparison):
        return f"({f(e.left)} {e.op} {f(e.right)})"
    if isinstance(e, ast.Logical):
        return f"({f(e.left)} {e.op} {f(e.right)})"
    if isinstance(e, ast.Not):
        return f"(NOT {f(e.operand)})"
    if isinstance(e, ast.Between):
        return f"({f(e.value)} {'NOT ' if e.negated else ''}BETWEEN {f(e.low)} AND {f(e.high)})"
    if isinstance(e, ast.InList):
        return f"({f(e.value)} {'NOT ' if e.negated else ''}IN ({', '.join(f(i) for i in e.items)}))"
    if isinstance(e, ast.Like):
        esc = f" ESCAPE '{e.escape}'" if e.escape else ""
        return f"({f(e.value)} {'NOT ' if e.negated else ''}LIKE {f(e.pattern)}{esc})"
    if isinstance(e, ast.IsNull):
        return f"({f(e.value)} IS {'NOT ' if e.negated else ''}NULL)"
    if isinstance(e, ast.IsDistinct):
        return f"({f(e.left)} IS {'NOT ' if e.negated else ''}DISTINCT FROM {f(e.right)})"
    if isinstance(e, ast.Case):
        parts = ["CASE"]
        if e.operand is not None:
            parts.append(f(e.operand))
        parts += [f"WHEN {f(w.condition)} THEN {f(w.result)}" for w in e.whens]
        if e.default is not None:
            parts.append(f"ELSE {f(e.default)}")
        parts.append("END")
        return "(" + " ".join(parts) + ")"
    if isinstance(e, ast.Cast):
        return f"CAST({f(e.operand)} AS {e.type})"
    if isinstance(e, ast.ArrayCtor):
        return f"ARRAY[{', '.join(f(i) for i in e.items)}]"
    if isinstance(e, ast.MapCtor):
        return f"MAP({', '.join(f'{f(k)}:={f(v)}' for k, v in e.entries)})"
    if isinstance(e, ast.StructCtor):
        return f"STRUCT({', '.join(f'{quote_ident(n)}:={f(v)}' for n, v in e.fields)})"
    if isinstance(e, ast.Subscript):
        return f"{f(e.base)}[{f(e.index)}]"
    if isinstance(e, ast.Dereference):
        return f"{f(e.base)}->{quote_ident(e.field)}"
    if isinstance(e, ast.Lambda):  # as ksqlDB prints it: parameters in parentheses, whatever was written
        return f"({', '.join(e.params)}) => {f(e.body)}"
    return repr(e)
