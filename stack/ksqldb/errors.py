"""Errors raised by the embedded ksqlDB-compatible engine.

The class names mirror ksqlDB's exception types so that callers (the REST server, the QTT runner)
can report the same `@type`/message pairs a real ksqlDB would.
"""

from __future__ import annotations


class KsqlError(Exception):
    """Base class: a user-facing error with a ksqlDB-style message."""

    java_type = "io.confluent.ksql.util.KsqlException"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class KsqlStatementError(KsqlError):
    """A statement is invalid (unknown source or column, type mismatch, ...)."""

    java_type = "io.confluent.ksql.util.KsqlStatementException"


class ParseError(KsqlError):
    """The statement text does not parse."""

    java_type = "io.confluent.ksql.parser.exception.ParseFailedException"


class UnsupportedError(KsqlError):
    """Valid ksqlDB that this engine does not implement: reported loudly, never answered wrongly."""

    java_type = "io.confluent.ksql.util.KsqlException"

    def __init__(self, feature: str) -> None:
        super().__init__(f"Unsupported by the embedded engine: {feature}")
        self.feature = feature


class SerdeError(Exception):
    """A record cannot be (de)serialised; it goes to the processing log, the query goes on."""


class EvalError(Exception):
    """An expression failed on one record (e.g. integer division by zero): logged, value is null."""
