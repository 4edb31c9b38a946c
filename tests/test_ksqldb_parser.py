"""Unit tests of the ksqlDB grammar and AST (no server)."""

from decimal import Decimal

import pytest

from stack.ksqldb import ast
from stack.ksqldb.errors import KsqlError, ParseError
from stack.ksqldb.parser import parse, parse_expression
from stack.ksqldb.types import BIGINT, INTEGER, STRING, ArrayType, DecimalType, MapType, StructType


def test_create_stream_with_key_columns_and_properties():
    (stmt,) = parse(
        "create stream Payments (`id` varchar key, Amount decimal(10, 2), tags array<string>, "
        "m MAP<STRING, BIGINT>, s STRUCT<a INT, `b` STRING>) "
        "with (kafka_topic='payments', value_format='delimited', partitions=4, wrap_single_value=false);"
    )
    assert isinstance(stmt, ast.CreateSource)
    assert stmt.name == "PAYMENTS" and stmt.kind == "STREAM" and stmt.query is None
    assert [(e.name, e.type, e.constraint) for e in stmt.elements] == [
        ("id", STRING, "KEY"),
        ("AMOUNT", DecimalType(10, 2), None),
        ("TAGS", ArrayType(STRING), None),
        ("M", MapType(STRING, BIGINT), None),
        ("S", StructType((("A", INTEGER), ("b", STRING))), None),
    ]
    assert stmt.prop("KAFKA_TOPIC") == "payments"
    assert stmt.prop("PARTITIONS") == 4
    assert stmt.prop("WRAP_SINGLE_VALUE") is False


def test_keywords_are_usable_as_column_names_where_unambiguous():
    (stmt,) = parse("CREATE STREAM S AS SELECT source, value, start FROM t WHERE source = 'x';")
    names = [item.expr.name for item in stmt.query.select]
    assert names == ["SOURCE", "VALUE", "START"]


def test_csas_insert_drop_show_describe_terminate_set():
    stmts = parse(
        "CREATE STREAM out WITH (kafka_topic='o') AS SELECT * FROM src WHERE x > 1 EMIT CHANGES;"
        "INSERT INTO out SELECT * FROM other;"
        "INSERT INTO out (a, b) VALUES (1, 'x');"
        "DROP STREAM IF EXISTS out DELETE TOPIC;"
        "SHOW STREAMS; LIST TOPICS; SHOW QUERIES; SHOW PROPERTIES;"
        "DESCRIBE EXTENDED out; TERMINATE CSAS_OUT_0;"
        "SET 'auto.offset.reset' = 'earliest'; UNSET 'auto.offset.reset';"
        "SELECT a FROM src EMIT CHANGES LIMIT 5;"
    )
    kinds = [type(s).__name__ for s in stmts]
    assert kinds == [
        "CreateSource",
        "InsertInto",
        "InsertValues",
        "DropSource",
        "ShowList",
        "ShowList",
        "ShowList",
        "ShowList",
        "Describe",
        "Terminate",
        "SetProperty",
        "UnsetProperty",
        "PushQuery",
    ]
    assert stmts[0].query.emit == "CHANGES"
    assert stmts[2].columns == ("A", "B")
    assert stmts[3].if_exists and stmts[3].delete_topic
    assert stmts[8].extended and stmts[8].name == "OUT"
    assert stmts[10].name == "auto.offset.reset" and stmts[10].value == "earliest"
    assert stmts[12].query.limit == 5


def test_operator_precedence():
    e = parse_expression("1 + 2 * 3 > 4 AND NOT a OR b")
    assert isinstance(e, ast.Logical) and e.op == "OR"
    left = e.left
    assert isinstance(left, ast.Logical) and left.op == "AND"
    cmp = left.left
    assert isinstance(cmp, ast.Comparison) and cmp.op == ">"
    assert cmp.left == ast.Arithmetic(
        "+", ast.Literal(1, "INTEGER"), ast.Arithmetic("*", ast.Literal(2, "INTEGER"), ast.Literal(3, "INTEGER"))
    )
    assert isinstance(left.right, ast.Not)


def test_literals():
    assert parse_expression("1.50") == ast.Literal(Decimal("1.50"), "DECIMAL")
    assert parse_expression("1.5E3") == ast.Literal(1500.0, "DOUBLE")
    assert parse_expression("2147483648") == ast.Literal(2147483648, "BIGINT")
    assert parse_expression("-3") == ast.Literal(-3, "INTEGER")
    assert parse_expression("'it''s'") == ast.Literal("it's", "STRING")


def test_predicates_and_accessors():
    e = parse_expression("s->`end` LIKE 'a!%%' ESCAPE '!'")
    assert e == ast.Like(ast.Dereference(ast.ColumnRef("S"), "end"), ast.Literal("a!%%", "STRING"), "!")
    e = parse_expression("arr[1][2] NOT IN (1, 2)")
    assert isinstance(e, ast.InList) and e.negated
    assert e.value == ast.Subscript(
        ast.Subscript(ast.ColumnRef("ARR"), ast.Literal(1, "INTEGER")), ast.Literal(2, "INTEGER")
    )
    e = parse_expression("x IS NOT DISTINCT FROM y")
    assert e == ast.IsDistinct(ast.ColumnRef("X"), ast.ColumnRef("Y"), negated=True)
    e = parse_expression("CASE WHEN a < 2 THEN 'small' ELSE 'big' END")
    assert isinstance(e, ast.Case) and e.operand is None and len(e.whens) == 1


def test_aliases_including_digit_identifiers():
    (stmt,) = parse("CREATE STREAM o AS SELECT ROUND(v, -1) AS 1R, v x FROM t;")
    assert [i.alias for i in stmt.query.select] == ["1R", "X"]


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE STREAM s (a NULL) WITH (kafka_topic='t', value_format='JSON');",
        "SELECT * FROM s WHERE x IN ();",
        "CREATE STREAM s (a INT WITH (kafka_topic='t');",
    ],
)
def test_syntax_errors(sql):
    with pytest.raises(ParseError, match="Syntax Error"):
        parse(sql)


def test_nodes_carry_their_position_in_the_whole_text():
    """1-based line and column over every statement of the request; equality ignores positions."""
    stmts = parse(
        "CREATE STREAM s (id INT KEY, v INT) WITH (kafka_topic='t', value_format='JSON');\n"
        "SELECT abs(s.v) * 2 AS x FROM s\n  WINDOW TUMBLING (SIZE 1 SECOND) WHERE v = 1 AND v > 0 "
        "EMIT CHANGES;"
    )
    assert [e.loc for e in stmts[0].elements] == [ast.Location(1, 18), ast.Location(1, 30)]
    q = stmts[1].query
    product = q.select[0].expr
    assert product.loc == ast.Location(2, 17)  # an operator node points at its operator, as ksqlDB's do
    assert product.left.loc == ast.Location(2, 8)  # a function call at its name
    assert product.left.args[0].loc == ast.Location(2, 12)  # a qualified column at its qualifier
    assert q.where.loc == ast.Location(3, 47)
    assert q.where.left.loc == ast.Location(3, 43) and q.where.left.left.loc == ast.Location(3, 41)
    assert q.window_loc == ast.Location(3, 10)
    assert product.left.args[0] == ast.ColumnRef("V", "S")
    assert ast.at(product.left.args[0]) == "Line: 2, Col: 12: " and ast.at(ast.ColumnRef("V")) == ""


def test_syntax_error_counts_lines_over_the_request_and_shows_the_failed_line():
    sql = "CREATE STREAM s (a INT) WITH (kafka_topic='t', value_format='JSON');\nSELECT * FROM s WHERE a IN 1;"
    with pytest.raises(ParseError) as e:
        parse(sql)
    assert e.value.message.startswith("line 2:28: Syntax Error\n")
    assert e.value.message.endswith("\nStatement: SELECT * FROM s WHERE a IN 1;")


@pytest.mark.parametrize(
    "sql, detail",
    [
        # ANTLR inserts the one token that fits and reports it missing
        ("SELECT a FROM b GROUP BY c, (d, e);", "line 1:31: Syntax Error\nmissing ')' at ','"),
        ("SELECT a FROM b WHERE (c = 1;", "line 1:29: Syntax Error\nmissing ')' at ';'"),
        # no insertion fits: ANTLR lists what it expected
        ("SELECT a FROM b WHERE (c = 1 1;", "line 1:30: Syntax Error\nExpecting {')'}"),
        (
            "CREATE STREAM INPUT (K INT (KEY)) WITH (kafka_topic='input',value_format='JSON');",
            "line 1:29: Syntax Error\nExpecting {'STRING', INTEGER_VALUE}",
        ),
    ],
)
def test_syntax_error_wording_follows_antlr_recovery(sql, detail):
    with pytest.raises(ParseError) as e:
        parse(sql)
    assert e.value.message.startswith(detail + "\nStatement: ")


def test_unknown_type_is_a_clear_error():
    with pytest.raises(KsqlError, match="Unknown type: FOO"):
        parse("CREATE STREAM s (a FOO) WITH (kafka_topic='t', value_format='JSON');")


@pytest.mark.parametrize(
    "sql",
    [
        "EXPLAIN SELECT * FROM s EMIT CHANGES;",
        "PRINT 'topic' FROM BEGINNING;",
        "CREATE TYPE address AS STRUCT<street STRING>;",
        "DESCRIBE FUNCTION ucase;",
    ],
)
def test_valid_ksqldb_statements_not_implemented_are_unsupported_not_syntax_errors(sql):
    from stack.ksqldb.errors import UnsupportedError

    with pytest.raises(UnsupportedError):
        parse(sql)


def test_walk_visits_every_node_of_any_statement_parents_first():
    (stmt,) = parse(
        "CREATE STREAM X AS SELECT CASE WHEN s.a > 1 THEN MAP('k' := b) ELSE STRUCT(f := c) END AS z, "
        "TRANSFORM(arr, x => x + d) AS t FROM s JOIN r WITHIN 1 MINUTE ON s.k = r.k WHERE e IN (1, f) EMIT CHANGES;"
    )
    assert [ref.name for ref in stmt.find_all(ast.ColumnRef)] == ["A", "B", "C", "ARR", "X", "D", "K", "K", "E", "F"]
    inside_no_lambda = stmt.find_all(ast.ColumnRef, prune=lambda node: isinstance(node, ast.Lambda))
    assert [ref.name for ref in inside_no_lambda] == ["A", "B", "C", "ARR", "K", "K", "E", "F"]
    nodes = list(stmt.walk())
    assert nodes[0] is stmt and all(isinstance(n, ast.Node) for n in nodes)
    assert {type(n) for n in nodes} >= {ast.Query, ast.SelectItem, ast.Relation, ast.Join, ast.WhenClause}
    case = stmt.find(ast.Case)
    assert case is not None and list(case.children())[0] is case.whens[0]
    assert stmt.find(ast.Subscript) is None


def test_transform_replaces_top_down_and_keeps_what_it_does_not_change():
    e = parse_expression("CONCAT(UCASE(a), COALESCE(s.b, a))")
    renamed = e.transform(lambda n: ast.ColumnRef("Z") if isinstance(n, ast.ColumnRef) and n.name == "B" else None)
    assert [ref.name for ref in renamed.find_all(ast.ColumnRef)] == ["A", "Z", "A"]
    assert [ref.name for ref in e.find_all(ast.ColumnRef)] == ["A", "B", "A"]  # nodes are immutable
    assert renamed.args[0] is e.args[0]  # an unchanged subtree is the same object
    assert e.transform(lambda n: None) is e

    def fn(n: ast.Node) -> ast.Node | None:
        if isinstance(n, ast.FunctionCall) and n.name.upper() == "UCASE":
            return ast.FunctionCall("LCASE", (ast.ColumnRef("A"),))
        return ast.ColumnRef("Z") if isinstance(n, ast.ColumnRef) else None

    # what fn returns is not descended into: the A of the new call stays
    assert [ref.name for ref in e.transform(fn).find_all(ast.ColumnRef)] == ["A", "Z", "Z"]
