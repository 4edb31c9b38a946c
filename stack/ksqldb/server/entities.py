"""ksqlDB's REST response objects (`@type` entities and error bodies) built from engine results."""

from __future__ import annotations

import base64
import datetime as dt
import math
from decimal import Decimal
from typing import Any

from .. import values as V
from ..engine import Result

#: ksqlDB's error codes (io.confluent.ksql.rest.Errors).
BAD_REQUEST = 40000
BAD_STATEMENT = 40001
QUERY_ENDPOINT = 40002
NOT_FOUND = 40400
TOO_LARGE = 41300
SERVER_ERROR = 50000
NOT_READY = 50300


#: ksqlDB's answer to a request without valid credentials (HTTP 401; Errors.ERROR_CODE_UNAUTHORIZED is 40100).
UNAUTHORIZED = {"@type": "generic_error", "error_code": 40100, "message": "Unauthorized"}
#: The realm ksqlDB's documentation configures for basic authentication.
REALM = "KsqlServer-Props"


def error_body(
    kind: str, code: int, message: str, statement: str | None = None, entities: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"@type": kind, "error_code": code, "message": message}
    if statement is not None:
        body["statementText"] = statement
        body["entities"] = entities or []
    return body


def command_status(result: Result) -> dict[str, Any]:
    """A command's status, in /ksql's answer and at GET /status/<commandId> (statements run synchronously)."""
    return {"status": "SUCCESS", "message": result.message, "queryId": result.query_id}


def entity(result: Result, sequence: int | None, command_id: str) -> dict[str, Any]:
    """One element of a /ksql response array."""
    base: dict[str, Any] = {"@type": result.kind, "statementText": result.statement, "warnings": []}
    data = result.data
    if result.kind == "currentStatus":
        base.update(
            {
                "commandId": command_id,
                "commandStatus": command_status(result),
                "commandSequenceNumber": sequence if sequence is not None else -1,
            }
        )
    elif result.kind == "streams":
        base["streams"] = data
    elif result.kind == "tables":
        base["tables"] = data
    elif result.kind == "kafka_topics":
        base["topics"] = data
    elif result.kind == "queries":
        base["queries"] = [{**q, "statusCount": {q["state"]: 1}} for q in data]
    elif result.kind == "properties":
        base["properties"] = [
            {"name": k, "scope": "KSQL", "value": None if v is None else str(v)} for k, v in sorted(data.items())
        ]
        base["overwrittenProperties"] = []
        base["defaultProperties"] = []
    elif result.kind == "function_names":
        base["@type"] = "function_names"
        base["functions"] = [{"name": n, "type": "SCALAR", "category": ""} for n in data]
    elif result.kind == "sourceDescription":
        base["sourceDescription"] = data
    else:
        base["data"] = data
    return base


def json_value(value: Any) -> Any:
    """A column value as ksqlDB's REST API writes it in rows."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else V.java_double_str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, dt.datetime):
        return V.format_timestamp(value)
    if isinstance(value, dt.date):
        return V.format_date(value)
    if isinstance(value, dt.time):
        return V.format_time(value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    return str(value)
