"""ksqlDB SQL parser: the Lark grammar in ksql.lark plus a transformer into the typed AST of ast.py.

Lark was chosen over sqlglot because ksqlDB's dialect (KEY columns, WITH properties, EMIT CHANGES,
`->` dereference, `:=` constructors, backtick identifiers) is far from the dialects sqlglot ships, and a
grammar file is the clearest statement of what the engine accepts. LALR keeps parsing deterministic.
"""

from __future__ import annotations

import dataclasses
import math
import re
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer
from lark.exceptions import LarkError, UnexpectedInput, UnexpectedToken, VisitError

from . import ast
from .errors import KsqlError, KsqlStatementError, ParseError, UnsupportedError
from .types import INT_MAX, INT_MIN, LONG_MAX, LONG_MIN, ArrayType, DecimalType, MapType, SqlType, StructType, primitive

_GRAMMAR = Path(__file__).with_name("ksql.lark")


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(
        _GRAMMAR.read_text(),
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=False,
    )


def _tokens(children: list, *types: str) -> list[Token]:
    return [c for c in children if isinstance(c, Token) and c.type in types]


def _has(children: list, type_: str) -> bool:
    return any(isinstance(c, Token) and c.type == type_ for c in children)


def _trees(children: list, cls: type) -> list:
    return [c for c in children if isinstance(c, cls)]


def unquote_string(text: str) -> str:
    return text[1:-1].replace("''", "'")


class _Identifier(str):
    """An identifier after ksqlDB's normalisation (unquoted names upper-cased), and where it was written."""

    loc: ast.Location | None = None


def _tok_loc(tok: Token) -> ast.Location:
    return ast.Location(tok.line, tok.column)


_LAMBDA_PARAM = re.compile(r"`((?:[^`]|``)*)`|([A-Za-z_][A-Za-z0-9_@]*)")


def _lambda_params(text: str) -> list[str]:
    """The parameter names of a `(x, y)` LAMBDA_PARAMS token, normalised as identifiers are (unquoted ones
    upper-cased)."""
    return [m[1].replace("``", "`") if m[1] is not None else m[2].upper() for m in _LAMBDA_PARAM.finditer(text)]


class _Alias(str):
    pass


class _ToAst(Transformer):
    def _call_userfunc(self, tree, new_children=None):
        """Every expression node records where its rule starts (Lark's 1-based line and column over the
        whole text, which is how ksqlDB counts); nodes that point at an operator set `loc` themselves."""
        result = super()._call_userfunc(tree, new_children)
        if isinstance(result, ast.Expr) and result.loc is None and not tree.meta.empty:
            result = dataclasses.replace(result, loc=ast.Location(tree.meta.line, tree.meta.column))
        return result

    # ---------------------------------------------------------- atoms
    def identifier(self, children):
        tok: Token = children[0]
        if tok.type == "QUOTED_IDENTIFIER":
            ident = _Identifier(tok.value[1:-1].replace("``", "`"))
        else:
            ident = _Identifier(tok.value.upper())
        ident.loc = _tok_loc(tok)
        return ident

    def alias(self, children):
        return _Alias(children[-1])

    def null_lit(self, _):
        return ast.Literal(None, "NULL")

    def true_lit(self, _):
        return ast.Literal(True, "BOOLEAN")

    def false_lit(self, _):
        return ast.Literal(False, "BOOLEAN")

    @staticmethod
    def _int(value: int) -> ast.Literal:
        return ast.Literal(value, "INTEGER" if INT_MIN <= value <= INT_MAX else "BIGINT")

    def int_lit(self, children):
        tok = children[0]
        value = int(tok)
        if value > LONG_MAX + 1:  # 2^63 itself is a BIGINT when negated: unary_op folds it, the compiler checks
            raise ParseError(f"line {tok.line}:{tok.column}: Invalid numeric literal: {tok.value}")
        return ast.Literal(value, "INTEGER" if INT_MIN <= value <= INT_MAX else "BIGINT", loc=_tok_loc(tok))

    def decimal_lit(self, children):
        return ast.Literal(Decimal(children[0].value), "DECIMAL")

    def double_lit(self, children):
        tok = children[0]
        value = float(tok.value)
        if math.isinf(value):  # Java's Double.parseDouble overflows to infinity, which ksqlDB refuses
            raise ParseError(f"line {tok.line}:{tok.column}: Number overflows DOUBLE: {tok.value}")
        return ast.Literal(value, "DOUBLE")

    def string_lit(self, children):
        return ast.Literal(unquote_string(children[0].value), "STRING")

    def signed_int_lit(self, children):
        text = children[0].value + children[1].value
        if not LONG_MIN <= int(text) <= LONG_MAX:
            raise ParseError(f"line {children[0].line}:{children[0].column}: Invalid numeric literal: {text}")
        return self._int(int(text))

    def signed_decimal_lit(self, children):
        return ast.Literal(Decimal(children[0].value + children[1].value), "DECIMAL")

    # ---------------------------------------------------------- types
    def simple_type(self, children):
        name = str(children[0])
        args = [int(t) for t in _tokens(children, "INTEGER_LIT")]
        if _has(children, "STRING_KW"):  # ksqlDB's grammar takes VARCHAR(STRING): the same as STRING
            if name in ("STRING", "VARCHAR") and len(children) == 2:
                return primitive(name)
            raise KsqlError(f"Unknown type: {name}({', '.join(str(c) for c in children[1:])})")
        if name in ("DECIMAL", "NUMERIC"):
            if len(args) != 2:
                raise ParseError("Syntax Error: DECIMAL requires precision and scale")
            precision, scale = args
            # SqlDecimal.validateParameters' checks and words
            if precision < 1:
                raise KsqlError(f"DECIMAL precision must be >= 1: DECIMAL({precision},{scale})")
            if scale < 0:
                raise KsqlError(f"DECIMAL scale must be >= 0: DECIMAL({precision},{scale})")
            if scale > precision:
                raise KsqlError(f"DECIMAL precision must be >= scale: DECIMAL({precision},{scale})")
            return DecimalType(precision, scale)
        t = primitive(name)
        if t is None or args:
            if name == "NULL":
                raise ParseError("Syntax Error: NULL is not a type")
            raise KsqlError(f"Unknown type: {name}")
        return t

    def array_type(self, children):
        return ArrayType(_trees(children, SqlType)[0])

    def map_type(self, children):
        k, v = _trees(children, SqlType)
        return MapType(k, v)

    def struct_type_field(self, children):
        return (str(children[0]), children[1])

    def struct_type(self, children):
        return StructType(tuple(c for c in children if isinstance(c, tuple)))

    # ---------------------------------------------------------- expressions
    def column(self, children):
        return ast.ColumnRef(str(children[0]))

    def qualified_column(self, children):
        return ast.ColumnRef(str(children[1]), str(children[0]))

    def call_star(self, children):
        return ast.FunctionCall(str(children[0]), (), star=True)

    def call(self, children):
        return ast.FunctionCall(str(children[0]), tuple(children[1:]))

    def or_op(self, c):
        return ast.Logical("OR", c[0], c[2], loc=_tok_loc(c[1]))

    def and_op(self, c):
        return ast.Logical("AND", c[0], c[2], loc=_tok_loc(c[1]))

    def not_op(self, c):
        return ast.Not(c[1])

    def comparison(self, c):
        op = c[1].value
        return ast.Comparison("<>" if op == "!=" else op, c[0], c[2], loc=_tok_loc(c[1]))

    def equals(self, c):
        return ast.Comparison("=", c[0], c[2], loc=_tok_loc(c[1]))

    def between(self, c):
        exprs = _trees(c, ast.Expr)
        return ast.Between(exprs[0], exprs[1], exprs[2], negated=_has(c[:2], "NOT"))

    def in_list(self, c):
        exprs = _trees(c, ast.Expr)
        return ast.InList(exprs[0], tuple(exprs[1:]), negated=_has(c[:2], "NOT"))

    def like(self, c):
        exprs = _trees(c, ast.Expr)
        esc = _tokens(c, "STRING")
        escape = unquote_string(esc[0].value) if esc else None
        return ast.Like(exprs[0], exprs[1], escape, negated=_has(c[:2], "NOT"))

    def is_null(self, c):
        return ast.IsNull(c[0], negated=_has(c, "NOT"))

    def is_distinct(self, c):
        exprs = _trees(c, ast.Expr)
        return ast.IsDistinct(exprs[0], exprs[1], negated=_has(c, "NOT"))

    def arithmetic(self, c):
        return ast.Arithmetic(c[1].value, c[0], c[2], loc=_tok_loc(c[1]))

    def concat_op(self, c):
        # `a || b` is ksqlDB's CONCAT(a, b) (its AstBuilder builds exactly that call)
        return ast.FunctionCall("CONCAT", (c[0], c[2]), loc=_tok_loc(c[1]))

    def multiply(self, c):
        return ast.Arithmetic("*", c[0], c[2], loc=_tok_loc(c[1]))

    def unary_op(self, c):
        operand = c[1]
        if c[0].value == "+":
            return operand
        if isinstance(operand, ast.Literal) and operand.kind in ("INTEGER", "BIGINT"):
            return self._int(-operand.value)
        if isinstance(operand, ast.Literal) and operand.kind in ("DECIMAL", "DOUBLE"):
            return ast.Literal(-operand.value, operand.kind)
        return ast.Negate(operand)

    def map_column(self, c):
        return ast.ColumnRef("MAP")

    def lambda_expr(self, c):
        if isinstance(c[0], Token) and c[0].type == "LAMBDA_PARAMS":
            params = tuple(_lambda_params(c[0].value))
        else:
            params = (str(c[0]),)
        if len(set(params)) < len(params):
            raise KsqlStatementError(f"Lambda arguments have duplicates: [{', '.join(params)}]")
        return ast.Lambda(params, _trees(c, ast.Expr)[-1])

    def when_clause(self, c):
        exprs = _trees(c, ast.Expr)
        return ast.WhenClause(exprs[0], exprs[1])

    def case(self, c):
        whens = tuple(_trees(c, ast.WhenClause))
        operand = None
        default = None
        seen_when = False
        after_else = False
        for child in c:
            if isinstance(child, ast.WhenClause):
                seen_when = True
            elif isinstance(child, Token) and child.type == "ELSE":
                after_else = True
            elif isinstance(child, ast.Expr):
                if after_else:
                    default = child
                elif not seen_when:
                    operand = child
        return ast.Case(operand, whens, default)

    def cast(self, c):
        return ast.Cast(_trees(c, ast.Expr)[0], _trees(c, SqlType)[0])

    def array_ctor(self, c):
        return ast.ArrayCtor(tuple(_trees(c, ast.Expr)))

    def map_entry(self, c):
        return (c[0], c[1])

    def map_ctor(self, c):
        return ast.MapCtor(tuple(x for x in c if isinstance(x, tuple)))

    def struct_entry(self, c):
        return (str(c[0]), c[1])

    def struct_ctor(self, c):
        return ast.StructCtor(tuple(x for x in c if isinstance(x, tuple)))

    def subscript(self, c):
        return ast.Subscript(c[0], c[1])

    def dereference(self, c):
        return ast.Dereference(c[0], str(c[2]))

    # ---------------------------------------------------------- queries
    def select_all(self, _):
        return ast.SelectItem(None)

    def select_source_all(self, c):
        return ast.SelectItem(None, star_source=str(c[0]))

    def select_expr(self, c):
        alias = next((str(x) for x in c if isinstance(x, _Alias)), None)
        return ast.SelectItem(c[0], alias)

    def relation(self, c):
        alias = next((str(x) for x in c if isinstance(x, _Alias)), None)
        return ast.Relation(str(c[0]), alias)

    def window_tokens(self, c):
        return " ".join(str(x) for x in c)

    def within(self, c):
        return ("within", ", ".join(x for x in c if isinstance(x, str) and not isinstance(x, Token)))

    def join_type(self, c):
        return ("join_type", " ".join(t.value.upper() for t in c))

    def join_clause(self, c):
        opts = dict(x for x in c if isinstance(x, tuple))
        rel = _trees(c, ast.Relation)[0]
        on = _trees(c, ast.Expr)[0]
        return ast.Join(opts.get("join_type", "INNER"), rel, on, opts.get("within"))

    def window_clause(self, c):
        # 'TUMBLING (SIZE 30 SECONDS, GRACE PERIOD 1 MINUTE)': windows.parse_window reads it
        kind = next(x for x in c if isinstance(x, _Identifier))
        parts = [x for x in c if isinstance(x, str) and not isinstance(x, (Token, _Identifier))]
        return ("window", (f"{kind} ({', '.join(parts)})", kind.loc))

    def where_clause(self, c):
        return ("where", c[1])

    def group_by(self, c):
        return ("group_by", tuple(_trees(c, ast.Expr)))

    def partition_by(self, c):
        exprs = tuple(_trees(c, ast.Expr))
        if not exprs:
            raise KsqlStatementError("PARTITION BY requires at least one expression")
        return ("partition_by", exprs)

    def having(self, c):
        return ("having", c[1])

    def emit(self, c):
        return ("emit", str(c[1]))

    def limit(self, c):
        return ("limit", int(c[1]))

    def query(self, c):
        clauses = dict(x for x in c if isinstance(x, tuple))
        window, window_loc = clauses.get("window", (None, None))
        return ast.Query(
            select=tuple(_trees(c, ast.SelectItem)),
            source=_trees(c, ast.Relation)[0],
            joins=tuple(_trees(c, ast.Join)),
            where=clauses.get("where"),
            window=window,
            window_loc=window_loc,
            group_by=clauses.get("group_by", ()),
            partition_by=clauses.get("partition_by", ()),
            having=clauses.get("having"),
            emit=clauses.get("emit"),
            limit=clauses.get("limit"),
        )

    # ---------------------------------------------------------- statements
    def source_kind(self, c):
        return c[0].value.upper()

    def column_constraint(self, c):
        if _has(c, "PRIMARY"):
            return ("PRIMARY KEY", None)
        if _has(c, "HEADER"):
            return ("HEADER", unquote_string(_tokens(c, "STRING")[0].value))
        return (c[0].value.upper(), None)

    def table_element(self, c):
        constraint, header_key = c[2] if len(c) > 2 else (None, None)
        return ast.TableElement(str(c[0]), c[1], constraint, header_key, loc=c[0].loc)

    def table_elements(self, c):
        return tuple(c)

    def property(self, c):
        lit = c[1]
        return (str(c[0]).upper(), lit.value)

    def with_clause(self, c):
        return ("with", tuple(x for x in c if isinstance(x, tuple)))

    def create_source(self, c):
        kind = next(x for x in c if isinstance(x, str) and x in ("STREAM", "TABLE") and not isinstance(x, Token))
        name = next(x for x in c if isinstance(x, _Identifier))
        elements = next((x for x in c if isinstance(x, tuple) and (not x or isinstance(x[0], ast.TableElement))), None)
        props = next((x[1] for x in c if isinstance(x, tuple) and len(x) == 2 and x[0] == "with"), ())
        query = next((x for x in c if isinstance(x, ast.Query)), None)
        return ast.CreateSource(
            kind=kind,
            name=str(name),
            elements=elements,
            properties=props,
            query=query,
            or_replace=_has(c, "REPLACE"),
            is_source=_has(c, "SOURCE"),
            if_not_exists=_has(c, "EXISTS"),
        )

    def insert_query(self, c):
        props = next((x[1] for x in c if isinstance(x, tuple) and x and x[0] == "with"), ())
        # ksqlDB's AstSanitizer points after "INSERT INTO" when the target is unknown
        where = ast.Location(c[0].line, c[0].column + len("INSERT INTO")) if isinstance(c[0], Token) else None
        return ast.InsertInto(str(c[2]), _trees(c, ast.Query)[0], props, loc=where)

    def column_list(self, c):
        return ("columns", tuple(str(x) for x in c))

    def insert_values(self, c):
        cols = next((x[1] for x in c if isinstance(x, tuple) and x and x[0] == "columns"), None)
        return ast.InsertValues(str(c[2]), cols, tuple(_trees(c, ast.Expr)))

    def drop_source(self, c):
        return ast.DropSource(
            kind=c[1],
            name=str(next(x for x in c if isinstance(x, _Identifier))),
            if_exists=_has(c, "EXISTS"),
            delete_topic=_has(c, "TOPIC"),
        )

    def show(self, c):
        return ast.ShowList(str(c[1]), extended=_has(c, "EXTENDED"))

    def describe(self, c):
        return ast.Describe(str(next(x for x in c if isinstance(x, _Identifier))), extended=_has(c, "EXTENDED"))

    def terminate(self, c):
        qid = str(c[1])
        return ast.Terminate(None if qid == "ALL" else qid)

    def set_prop(self, c):
        strings = _tokens(c, "STRING")
        return ast.SetProperty(unquote_string(strings[0].value), unquote_string(strings[1].value))

    def unset_prop(self, c):
        return ast.UnsetProperty(unquote_string(_tokens(c, "STRING")[0].value))

    def alter_op(self, c):
        idents = [x for x in c if isinstance(x, _Identifier)]
        return ast.TableElement(str(idents[0]), _trees(c, SqlType)[0], loc=idents[0].loc)

    def alter_source(self, c):
        return ast.AlterSource(c[1], str(c[2]), tuple(_trees(c, ast.TableElement)))

    def push_query(self, c):
        return ast.PushQuery(c[0])

    def start(self, c):
        return list(c)


def _with_text(stmt: ast.Statement, text: str) -> ast.Statement:
    return dataclasses.replace(stmt, text=text) if hasattr(stmt, "text") else stmt


#: Valid ksqlDB statements this engine does not implement: refused as unsupported, not as syntax errors.
_UNSUPPORTED_STATEMENTS = re.compile(
    r"\s*(EXPLAIN|PRINT|CREATE\s+TYPE|DROP\s+TYPE|CREATE\s+(?:SINK|SOURCE)\s+CONNECTOR|DROP\s+CONNECTOR|"
    r"DESCRIBE\s+CONNECTOR|DESCRIBE\s+FUNCTION|DEFINE|UNDEFINE|ASSERT|PAUSE|RESUME|ALTER\s+SYSTEM|RUN\s+SCRIPT)\b",
    re.IGNORECASE,
)


def _statement_at(sql: str, pos: int) -> str:
    start = sql.rfind(";", 0, pos) + 1
    return sql[start:]


_TOKEN_NAMES = {
    "INTEGER_LIT": "INTEGER_VALUE",
    "DECIMAL_LIT": "DECIMAL_VALUE",
    "DOUBLE_LIT": "FLOATING_POINT_VALUE",
    "COMP_OP": "COMPARISON_OPERATOR",
    "CONCAT_OP": "'||'",
    "ADD_OP": "'+', '-'",
    "MUL_OP": "'/', '%'",
    "LT": "'<'",
    "GT": "'>'",
    "ARROW": "'->'",
    "LAMBDA_ARROW": "'=>'",
    "LAMBDA_PARAMS": "'('",
}


def _token_name(name: str) -> str:
    """ksqlDB (ANTLR) spelling of an expected token: literals quoted, value tokens by kind."""
    if name == "$END":
        return "<EOF>"
    if name in _TOKEN_NAMES:
        return _TOKEN_NAMES[name]
    term = next((t for t in _lark().terminals if t.name == name), None)
    if term is not None and term.pattern.type == "str":
        return f"'{term.pattern.value.upper()}'"
    return name


_PUNCTUATION_ORDER = {"'('": 0, "','": 1, "')'": 2}  # ANTLR lists literals in grammar order


def _token_order(name: str) -> tuple:
    return (name != "<EOF>", not name.startswith("'"), _PUNCTUATION_ORDER.get(name, -1), name)  # EOF is type -1


def _token_display(tok: Token) -> str:
    """How ANTLR shows the offending token: quoted text, `<EOF>` at the end of the input."""
    if tok.type == "$END":
        return "<EOF>"
    text = tok.value.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f"'{text}'"


def _missing_token(sql: str, e: UnexpectedInput) -> str | None:
    """ANTLR's single-token insertion report (`missing ')' at ','`): exactly one token can come next, the
    token after the offending one is not it (ANTLR would then report the offending token as extraneous),
    and with the expected token inserted the offending token fits."""
    if not isinstance(e, UnexpectedToken) or e.interactive_parser is None or len(e.expected) != 1:
        return None
    (name,) = e.expected
    tok = e.token
    if tok.type != "$END":
        try:
            after = next(iter(_lark().lex(sql[tok.end_pos :])), None)
        except LarkError:
            after = None
        if after is not None and after.type == name:
            return None
    recovered = e.interactive_parser.copy()
    try:
        recovered.feed_token(Token(name, ""))
    except LarkError:
        return None
    if tok.type not in recovered.accepts():
        return None
    return f"missing {_token_name(name)} at {_token_display(tok)}"


def _syntax_error(sql: str, e: UnexpectedInput) -> str:
    """ksqlDB's message: position in the whole text, what went wrong, and the line that failed (ksqlDB
    shows only that line of a multi-statement request)."""
    failed_line = sql.split("\n")[e.line - 1].rstrip("\r") if e.line >= 1 else sql
    lines = [f"line {e.line}:{e.column}: Syntax Error"]
    missing = _missing_token(sql, e)
    if missing is not None:
        lines.append(missing)
    else:
        names = set(getattr(e, "expected", None) or getattr(e, "allowed", None) or ())
        if {"KEY", "PRIMARY", "HEADERS"} <= names:
            # after a column's type, ANTLR skips the optional parts and reports what the column list expects
            names = {"COMMA", "RPAR"}
        expected = sorted({_token_name(n) for n in names}, key=_token_order)
        if expected:
            lines.append("Expecting {" + ", ".join(expected) + "}")
    lines.append(f"Statement: {failed_line}")
    return "\n".join(lines)


#: valid ksqlDB syntax inside a statement that this engine does not implement (refused, not a syntax error)
_UNSUPPORTED_SYNTAX = re.compile(r"(?P<struct_all>->\s*\*)|(?P<at_time_zone>\bAT\s+TIME\s+ZONE\b)", re.IGNORECASE)
_UNSUPPORTED_SYNTAX_NAMES = {"struct_all": "the ->* operator (all STRUCT fields)", "at_time_zone": "AT TIME ZONE"}


#: A statement whose expressions nest deeper than Python's stack lets the parser follow (thousands of levels).
TOO_DEEP = "Syntax Error: the statement nests too deeply to parse"


def parse(sql: str) -> list[ast.Statement]:
    """Parse one or more `;`-separated statements; raises ParseError ('Syntax Error ...') on bad input."""
    try:
        tree = _lark().parse(sql)
    except UnexpectedInput as e:
        unsupported = _UNSUPPORTED_STATEMENTS.match(_statement_at(sql, getattr(e, "pos_in_stream", 0) or 0))
        if unsupported:
            raise UnsupportedError(f"{' '.join(unsupported.group(1).upper().split())} statements") from None
        syntax = _UNSUPPORTED_SYNTAX.search(_statement_at(sql, getattr(e, "pos_in_stream", 0) or 0))
        if syntax:
            raise UnsupportedError(_UNSUPPORTED_SYNTAX_NAMES[syntax.lastgroup or ""]) from None
        raise ParseError(_syntax_error(sql, e)) from None
    except LarkError as e:
        raise ParseError(f"Syntax Error: {e}") from None
    except RecursionError:
        raise ParseError(TOO_DEEP) from None
    statements: list[ast.Statement] = []
    for child in tree.children:
        try:
            stmt = _ToAst().transform(child)
        except VisitError as e:
            if isinstance(e.orig_exc, KsqlError):
                raise e.orig_exc from None
            if isinstance(e.orig_exc, RecursionError):
                raise ParseError(TOO_DEEP) from None
            raise
        except RecursionError:
            raise ParseError(TOO_DEEP) from None
        text = sql[child.meta.start_pos : child.meta.end_pos] if not child.meta.empty else sql
        statements.append(_with_text(stmt, text.strip() + ";"))
    return statements


def parse_expression(text: str) -> ast.Expr:
    """Parse a bare expression (used by tests and the REST layer)."""
    stmts = parse(f"SELECT {text} FROM __X;")
    item = stmts[0].query.select[0]  # type: ignore[attr-defined]
    return item.expr
