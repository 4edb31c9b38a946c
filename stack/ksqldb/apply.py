"""`fraudstream ksql`: an interactive prompt, and `apply [DIR]` to run statement files idempotently.

Both talk to the server over its REST API only, so they work the same against the embedded server and
a real ksqlDB. `apply` compares each CREATE with what the server already has (DESCRIBE's statement):
the same SQL is "unchanged", new sources are "created", a different one is "changed" and left alone
unless `--replace` is given for a CREATE ... AS SELECT (sent as CREATE OR REPLACE).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx
from rich.table import Table

from fraudstream.config import Addresses
from fraudstream.credentials import Credentials
from fraudstream.terminal import make_console

from . import ast
from .errors import KsqlError
from .parser import parse

_CREATE_PREFIX = re.compile(r"^\s*CREATE\s+(OR\s+REPLACE\s+)?(STREAM|TABLE)\s+(IF\s+NOT\s+EXISTS\s+)?", re.IGNORECASE)


class KsqlRestError(Exception):
    """The server answered with a ksqlDB error body."""

    def __init__(self, body: dict[str, Any], status: int) -> None:
        super().__init__(body.get("message", str(body)))
        self.code = body.get("error_code")
        self.status = status


class KsqlRest:
    """The few REST calls `apply` and the prompt need."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        credentials = Credentials.from_env()
        self.http = httpx.Client(
            timeout=timeout, auth=credentials.http_auth("ksqldb"), verify=credentials.http_verify()
        )

    def ksql(self, sql: str, properties: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        try:
            response = self.http.post(
                f"{self.url}/ksql",
                json={"ksql": sql, "streamsProperties": properties or {}},
                headers={"Accept": "application/vnd.ksql.v1+json"},
            )
        except httpx.HTTPError as e:
            raise click.ClickException(f"cannot reach ksqlDB at {self.url}: {e}") from None
        body = response.json() if response.content else []
        if response.status_code != 200:
            raise KsqlRestError(body if isinstance(body, dict) else {"message": str(body)}, response.status_code)
        return body

    def describe(self, name: str) -> dict[str, Any] | None:
        try:
            return self.ksql(f"DESCRIBE {name};")[0]["sourceDescription"]
        except KsqlRestError as e:
            if e.code == 40001:
                return None
            raise


def normalise(sql: str) -> str:
    """Statement text compared modulo whitespace, a trailing `;`, and the CREATE [OR REPLACE] / IF NOT EXISTS prefix."""
    text = " ".join(sql.split()).rstrip(";").strip()
    return _CREATE_PREFIX.sub(lambda m: f"CREATE {m.group(2).upper()} ", text)


def as_replace(sql: str) -> str:
    return _CREATE_PREFIX.sub(lambda m: f"CREATE OR REPLACE {m.group(2).upper()} ", sql, count=1)


@dataclass
class Outcome:
    file: str
    statement: str
    status: str  # created, unchanged, changed, replaced, applied, error
    detail: str = ""


def _label(stmt: ast.Statement) -> str:
    if isinstance(stmt, ast.CreateSource):
        return f"{stmt.kind} {stmt.name}"
    if isinstance(stmt, ast.InsertInto):
        return f"INSERT INTO {stmt.target}"
    return " ".join(getattr(stmt, "text", "").split())[:50]


def apply_directory(client: KsqlRest, directory: Path, replace: bool = False) -> list[Outcome]:
    """Apply every `*.sql` file of `directory` in name order; stop at the first error."""
    outcomes: list[Outcome] = []
    props: dict[str, Any] = {}
    for path in sorted(directory.glob("*.sql")):
        try:
            statements = parse(path.read_text())
        except KsqlError as e:
            outcomes.append(Outcome(path.name, "-", "error", e.message))
            return outcomes
        for stmt in statements:
            outcome = Outcome(path.name, _label(stmt), "applied")
            try:
                _apply_one(client, stmt, props, replace, outcome)
            except KsqlRestError as e:
                outcome.status, outcome.detail = "error", str(e)
            outcomes.append(outcome)
            if outcome.status == "error":
                return outcomes
    return outcomes


def _apply_one(client: KsqlRest, stmt: ast.Statement, props: dict[str, Any], replace: bool, outcome: Outcome) -> None:
    text = stmt.text  # type: ignore[attr-defined]
    if isinstance(stmt, ast.SetProperty):
        props[stmt.name] = stmt.value
        outcome.status = "set"
        return
    if isinstance(stmt, ast.UnsetProperty):
        props.pop(stmt.name, None)
        outcome.status = "unset"
        return
    if isinstance(stmt, ast.CreateSource):
        existing = client.describe(stmt.name)
        if existing is None:
            client.ksql(text, props)
            outcome.status = "created"
        elif normalise(existing.get("statement", "")) == normalise(text):
            outcome.status = "unchanged"
        elif replace and stmt.query is not None:
            client.ksql(as_replace(text), props)
            outcome.status = "replaced"
        else:
            outcome.status = "changed"
            outcome.detail = (
                "differs from the running statement; re-run with --replace"
                if stmt.query is not None
                else "differs from the existing source; drop it to change it"
            )
        return
    if isinstance(stmt, ast.InsertInto):
        queries = client.ksql("SHOW QUERIES;")[0].get("queries", [])
        if any(normalise(q.get("queryString", "")) == normalise(text) for q in queries):
            outcome.status = "unchanged"
            return
        client.ksql(text, props)
        outcome.status = "created"
        return
    client.ksql(text, props)


STATUS_STYLE = {"created": "green", "replaced": "yellow", "changed": "yellow", "unchanged": "dim", "error": "red"}


def _url_option(f: Any) -> Any:
    return click.option(
        "--url",
        envvar="KSQLDB_URL",
        default=lambda: Addresses.from_env().ksqldb_url,
        show_default="KSQLDB_URL or http://127.0.0.1:8088",
        help="ksqlDB REST address",
    )(f)


@click.group("ksql", invoke_without_command=True)
@_url_option
@click.pass_context
def ksql_group(ctx: click.Context, url: str) -> None:
    """ksqlDB statements: with no subcommand, an interactive prompt (statements in, tables out)."""
    ctx.obj = url
    if ctx.invoked_subcommand is None:
        prompt(KsqlRest(url))


@ksql_group.command("apply")
@click.argument("directory", default="ksql", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="replace changed CREATE ... AS SELECT statements (CREATE OR REPLACE)")
@click.pass_obj
def apply_command(url: str, directory: Path, replace: bool) -> None:
    """Apply DIRECTORY's .sql files in name order; running it again changes nothing."""
    console = make_console()
    outcomes = apply_directory(KsqlRest(url), directory, replace)
    table = Table("file", "statement", "status", "detail")
    for o in outcomes:
        style = STATUS_STYLE.get(o.status, "")
        table.add_row(o.file, o.statement, f"[{style}]{o.status}[/]" if style else o.status, o.detail)
    console.print(table)
    if any(o.status == "error" for o in outcomes):
        raise click.ClickException(next(o.detail for o in outcomes if o.status == "error").splitlines()[0])


# ------------------------------------------------------------------------------------------- the prompt
def prompt(client: KsqlRest) -> None:
    """Read statements (ending in `;`) until EOF or `exit`; print each answer as ksqlDB's CLI would.

    On a terminal the prompt is prompt_toolkit's, as ksqlDB's CLI has JLine: line editing, Ctrl-L, history
    kept across sessions (Up, Ctrl-R), and a statement over several lines until its `;`. Piped input is read
    line by line.
    """
    console = make_console()
    console.print(f"ksqlDB at {client.url}; statements end with ';', 'exit' to leave.")
    props: dict[str, Any] = {}
    statements = _terminal_statements(history_path()) if sys.stdin.isatty() else _piped_statements()
    for text in statements:
        if text.strip().rstrip(";").strip().lower() in ("exit", "quit"):
            break
        _run(client, text, props, console)


def history_path() -> Path:
    """Where the prompt keeps its history: the per-user state directory (XDG), as fraudstream keeps its own."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "fraudstream" / "ksql-history"


def statement_session(history: Path, **io: Any) -> Any:
    """A prompt_toolkit session where Enter ends a statement only after its `;` (else it starts a new line)."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings

    bindings = KeyBindings()

    @bindings.add("enter")
    def _enter(event: Any) -> None:
        buffer = event.current_buffer
        text = buffer.text.strip()
        if not text or text.endswith(";") or text.lower() in ("exit", "quit"):
            buffer.validate_and_handle()
        else:
            buffer.insert_text("\n")

    history.parent.mkdir(parents=True, exist_ok=True)
    return PromptSession(
        "ksql> ",
        history=FileHistory(str(history)),
        key_bindings=bindings,
        multiline=True,
        prompt_continuation="   -> ",
        **io,
    )


def _terminal_statements(history: Path, **io: Any) -> Iterator[str]:
    session = statement_session(history, **io)
    while True:
        try:
            text = session.prompt()
        except EOFError:
            return
        except KeyboardInterrupt:  # Ctrl-C drops the statement being typed, as ksqlDB's CLI does
            continue
        if text.strip():
            yield text.strip()


def _piped_statements() -> Iterator[str]:
    """Statements from a pipe: lines gathered until one ends a statement with `;` (or says exit)."""
    buffer: list[str] = []
    while True:
        try:
            line = input()
        except EOFError:
            return
        if not buffer and line.strip().rstrip(";").lower() in ("exit", "quit"):
            yield line
            return
        buffer.append(line)
        text = "\n".join(buffer).strip()
        if not text:
            buffer = []
        elif text.endswith(";"):
            buffer = []
            yield text


def _run(client: KsqlRest, text: str, props: dict[str, Any], console: Any) -> None:
    try:
        statements = parse(text)
    except KsqlError as e:
        console.print(f"[red]{e.message}[/]")
        return
    for stmt in statements:
        sql = stmt.text  # type: ignore[attr-defined]
        try:
            if isinstance(stmt, ast.SetProperty):
                props[stmt.name] = stmt.value
                console.print(f"Successfully changed local property '{stmt.name}' to '{stmt.value}'.")
            elif isinstance(stmt, ast.UnsetProperty):
                props.pop(stmt.name, None)
                console.print(f"Successfully unset local property '{stmt.name}'.")
            elif isinstance(stmt, ast.PushQuery):
                _push(client, sql, props, console)
            else:
                for item in client.ksql(sql, props):
                    console.print(render(item))
        except KsqlRestError as e:
            console.print(f"[red]{e}[/]")


def _push(client: KsqlRest, sql: str, props: dict[str, Any], console: Any) -> None:
    """Stream a push query's rows until its LIMIT or Ctrl-C (which closes it on the server)."""
    body = {"sql": sql, "properties": props}
    query_id = None
    try:
        with client.http.stream("POST", f"{client.url}/query-stream", json=body, timeout=None) as response:
            if response.status_code != 200:
                error = json.loads(response.read() or b"{}")
                raise KsqlRestError(error, response.status_code)
            lines = response.iter_lines()
            header = json.loads(next(lines))
            query_id = header.get("queryId")
            console.print(" | ".join(header["columnNames"]), style="bold")
            console.print(_waiting(props), style="dim")
            for line in lines:
                if line.strip():
                    console.print(" | ".join(json.dumps(v) if not isinstance(v, str) else v for v in json.loads(line)))
    except KeyboardInterrupt:
        if query_id:
            client.http.post(f"{client.url}/close-query", json={"queryId": query_id})
        console.print("Query terminated")


def _waiting(props: dict[str, Any]) -> str:
    """What a push query does until rows come, so that a quiet one does not look hung."""
    if str(props.get("auto.offset.reset", "latest")).lower() == "earliest":
        return "Reading from the earliest offset, then waiting for new rows; Ctrl-C stops the query."
    return (
        "Waiting for new rows: a push query starts at the latest offset, so rows already in the topic are not shown "
        "(SET 'auto.offset.reset'='earliest'; reads from the start). Ctrl-C stops the query."
    )


def render(item: dict[str, Any]) -> Any:
    """A /ksql response entity as a rich table or a status line."""
    kind = item.get("@type")
    if kind == "currentStatus":
        status = item.get("commandStatus", {})
        return f"{status.get('message', '')}" + (f" (query {status['queryId']})" if status.get("queryId") else "")
    if kind == "streams":
        return _table(
            ["Stream Name", "Kafka Topic", "Key Format", "Value Format"],
            [[s["name"], s["topic"], s["keyFormat"], s["valueFormat"]] for s in item["streams"]],
        )
    if kind == "tables":
        return _table(["Table Name", "Kafka Topic"], [[t["name"], t["topic"]] for t in item["tables"]])
    if kind == "kafka_topics":
        return _table(["Kafka Topic", "Partitions"], [[t["name"], str(len(t["replicaInfo"]))] for t in item["topics"]])
    if kind == "queries":
        return _table(
            ["Query ID", "Status", "Sink Name", "Query String"],
            [[q["id"], q["state"], ",".join(q["sinks"]), q["queryString"]] for q in item["queries"]],
        )
    if kind == "properties":
        return _table(["Property", "Value"], [[p["name"], str(p["value"])] for p in item["properties"]])
    if kind == "sourceDescription":
        d = item["sourceDescription"]
        rows = [[f["name"], f["schema"]["type"] + (" (key)" if f.get("type") == "KEY" else "")] for f in d["fields"]]
        return _table(
            ["Field", "Type"],
            rows,
            title=f"{d['type']} {d['name']} (topic {d['topic']}, {d['keyFormat']}/{d['valueFormat']})",
        )
    return json.dumps(item, indent=2)


def _table(columns: list[str], rows: list[list[str]], title: str | None = None) -> Table:
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*row)
    return table
