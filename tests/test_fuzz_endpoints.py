"""Hostile input at every REST edge (issue 17, item 5): a bounded, seeded fuzz run against the Schema Registry,
the ksqlDB server, the Connect worker and a scoring worker's `POST /score`, over loopback with httpx.

Bodies are malformed and truncated JSON, invalid UTF-8, deeply nested documents, the right keys holding the
wrong types, huge statements and wrong content types. Each must get a 4xx with a clear error body
(`{"error_code": ..., "message": ...}`, as Confluent's components answer), never a 5xx, a hang or a crash,
and the service must keep serving. The counts (requests and status codes per service) are kept as the
test's `fuzz` property and printed in pytest's summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraudstream.bench.passthrough import create_topics
from fraudstream.requestbody import MAX_BODY_BYTES
from models.baseline import LogisticBaseline
from models.datasets import GeneratedSource
from models.training import train
from stack.supervisor import free_port, probe
from streams.cli import start_worker

pytestmark = pytest.mark.integration

#: Examples per service (each one request); `derandomize` makes the run the same every time.
EXAMPLES = 250
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
#: No request may take longer than this to be answered (a hang is a failure, not a slow answer).
TIMEOUT = httpx.Timeout(60.0)

# -- bodies ---------------------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)


def nested(depth: int, kind: str) -> bytes:
    """A document `depth` levels deep: arrays, objects, or an object that names a key at every level."""
    if kind == "array":
        return b"[" * depth + b"]" * depth
    if kind == "object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    return b'{"ksql":' * depth + b'"x"' + b"}" * depth


def as_body(value: Any) -> bytes:
    return json.dumps(value).encode()


def bodies(shaped: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Every kind of hostile body; `shaped` draws objects with the endpoint's own keys holding anything."""
    documents = (json_values | shaped).map(as_body)
    return st.one_of(
        documents,
        st.tuples(documents, st.floats(0, 1)).map(lambda d: d[0][: int(len(d[0]) * d[1])]),  # truncated
        st.binary(max_size=200),  # invalid UTF-8 and control bytes
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.tuples(documents, st.binary(min_size=1, max_size=4)).map(lambda d: d[0][:-1] + b"\xff" + d[1]),
        st.builds(nested, st.sampled_from([64, 1_000, 100_000]), st.sampled_from(["array", "object", "key"])),
    )


CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/vnd.schemaregistry.v1+json",
        "application/vnd.ksql.v1+json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=fuzz",
        "application/xml",
        "application/json; charset=latin-1",
        b"\xe9\xe9/\xe9",  # not ASCII
        "",
        None,
    ]
)
names = st.text(st.characters(codec="utf-8", exclude_characters="/?#"), min_size=1, max_size=30)


# -- checking answers -----------------------------------------------------------------------------------


class Tally:
    """Requests and status codes per service, kept as the test's `fuzz` property (a dict filled as it runs)."""

    def __init__(self, service: str, record: Callable[[str, object], None]) -> None:
        self.codes = Counter[int]()
        self.row: dict[str, Any] = {"service": service, "requests": 0, "codes": {}}
        record("fuzz", self.row)

    def count(self, status: int) -> None:
        self.codes[status] += 1
        self.row.update(requests=self.codes.total(), codes=dict(self.codes))


def send(
    client: httpx.Client, tally: Tally, method: str, path: str, body: bytes | None, content_type: str | None
) -> httpx.Response:
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.request(method, path, content=body, headers=headers)
    tally.count(response.status_code)
    return response


def check_refused(response: httpx.Response, allowed: tuple[int, ...] = ()) -> None:
    """A 4xx with a JSON error body naming the code and saying why (or a success the request earned)."""
    request = f"{response.request.method} {response.request.url.path}"
    status = response.status_code
    assert status < 500, f"{request}: {status} {response.text[:500]}"
    if status in allowed or status < 400:
        return
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"{request}: {status} without a JSON body: {response.text[:300]!r}") from None
    assert isinstance(body, dict), f"{request}: {status} {body!r}"
    assert body.get("error_code"), f"{request}: {status} without error_code: {body!r}"
    assert isinstance(body.get("message"), str) and body["message"], f"{request}: {status} without message: {body!r}"


def check_edges(client: httpx.Client, tally: Tally, method: str, path: str, valid: dict[str, Any]) -> None:
    """The stated limits, each on purpose: a body one byte over MAX_BODY_BYTES (declared, and chunked with no
    length) is a 413, a form or XML body a 415, and a deeply nested one a 400."""
    padding = MAX_BODY_BYTES - len(as_body(valid)) + 1
    oversized = as_body({**valid, "padding": "x" * padding})
    for body in (oversized, iter([oversized[:1000], oversized[1000:]])):
        response = send(client, tally, method, path, body, "application/json")
        check_refused(response)
        assert response.status_code == 413, response.text
    for content_type in ("application/x-www-form-urlencoded", "application/xml", "text/plain"):
        response = send(client, tally, method, path, as_body(valid), content_type)
        check_refused(response)
        assert response.status_code == 415, response.text
    response = send(client, tally, method, path, nested(100_000, "array"), "application/json")
    check_refused(response)
    assert response.status_code == 400, response.text


def fuzz(client: httpx.Client, tally: Tally, routes: list[tuple[str, str]], shaped: st.SearchStrategy[Any]) -> None:
    """EXAMPLES requests to `routes` (`{name}` in a path is drawn too), each answered and checked."""

    @FUZZ
    @given(route=st.sampled_from(routes), name=names, body=bodies(shaped), content_type=CONTENT_TYPES)
    def run(route: tuple[str, str], name: str, body: bytes, content_type: str | None) -> None:
        method, path = route
        path = path.format(name=quote(name, safe=""))
        check_refused(send(client, tally, method, path, body if method != "GET" else None, content_type))

    run()


@pytest.fixture
def tally(request: pytest.FixtureRequest, record_property: Callable[[str, object], None]) -> Tally:
    return Tally(request.node.name.removeprefix("test_fuzz_"), record_property)


# -- Schema Registry ------------------------------------------------------------------------------------

REGISTRY_ROUTES = [
    ("POST", "/subjects/{name}"),
    ("POST", "/subjects/{name}/versions"),
    ("POST", "/compatibility/subjects/{name}/versions"),
    ("POST", "/compatibility/subjects/{name}/versions/latest"),
    ("PUT", "/config/{name}"),
    ("GET", "/subjects/{name}/versions/{name}"),
    ("GET", "/schemas/ids/{name}"),
]
registry_shaped = st.fixed_dictionaries(
    {},
    optional={
        "schema": json_values | st.text(max_size=60),
        "schemaType": json_values | st.sampled_from(["AVRO", "JSON", "PROTOBUF", "avro"]),
        "references": json_values,
        "compatibility": json_values,
    },
)


def test_fuzz_schema_registry(stack, tally: Tally) -> None:
    url = stack.addresses.schema_registry_url
    with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
        fuzz(client, tally, REGISTRY_ROUTES, registry_shaped)
        check_edges(client, tally, "POST", "/subjects/fuzz/versions", {"schema": '"string"'})
        assert client.get("/subjects").status_code == 200  # still serving


# -- ksqlDB ---------------------------------------------------------------------------------------------

KSQL_ROUTES = ["/ksql", "/query", "/query-stream", "/close-query", "/inserts-stream"]
ksql_shaped = st.fixed_dictionaries(
    {},
    optional={
        "ksql": json_values | st.text(max_size=200),
        "sql": json_values | st.text(max_size=200),
        "streamsProperties": json_values,
        "properties": json_values,
        "queryId": json_values,
        "target": json_values,
    },
)


def test_fuzz_ksqldb(stack, tally: Tally) -> None:
    url = stack.addresses.ksqldb_url
    with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
        fuzz(client, tally, [("POST", path) for path in KSQL_ROUTES] + [("GET", "/status/{name}")], ksql_shaped)
        for path in KSQL_ROUTES:
            check_edges(client, tally, "POST", path, {"ksql": "SHOW STREAMS;", "sql": "SELECT * FROM X;"})
        huge = "SELECT " + ", ".join(f"C{i}" for i in range(20_000)) + " FROM X EMIT CHANGES;"
        for path, key in (("/ksql", "ksql"), ("/query", "ksql"), ("/query-stream", "sql")):
            response = send(client, tally, "POST", path, as_body({key: huge}), "application/json")
            check_refused(response)
            assert response.status_code == 413 and "exceeds the limit" in response.json()["message"]
        deep = "SELECT " + "+".join(["1"] * 5_000) + " FROM X EMIT CHANGES;"
        for path, key in (("/ksql", "ksql"), ("/query", "ksql")):
            check_refused(send(client, tally, "POST", path, as_body({key: deep}), "application/json"))
        for path in ("/info", "/healthcheck"):
            assert client.get(path).status_code == 200


# -- Connect --------------------------------------------------------------------------------------------

CONNECT_ROUTES = [
    ("POST", "/connectors"),
    ("PUT", "/connectors/{name}/config"),
    ("PUT", "/connector-plugins/{name}/config/validate"),
    ("PUT", "/connector-plugins/S3SinkConnector/config/validate"),
    ("PUT", "/connectors/{name}/pause"),
    ("POST", "/connectors/{name}/restart"),
    ("GET", "/connectors/{name}/status"),
]
connect_shaped = st.fixed_dictionaries(
    {},
    optional={
        "name": json_values,
        "config": json_values | st.dictionaries(st.text(max_size=20), json_values, max_size=4),
        "connector.class": json_values | st.just("io.confluent.connect.s3.S3SinkConnector"),
        "initial_state": json_values,
        "topics": json_values,
    },
)


def test_fuzz_connect(stack, tally: Tally) -> None:
    url = stack.addresses.connect_url
    with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
        fuzz(client, tally, CONNECT_ROUTES, connect_shaped)
        check_edges(client, tally, "POST", "/connectors", {"name": "fuzz", "config": {}})
        assert client.get("/connectors").status_code == 200


# -- a scoring worker's POST /score ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker(stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scoring worker with a quick baseline from a model folder (no registry needed), on a free port."""
    tmp = tmp_path_factory.mktemp("fuzz-worker")
    model = train(GeneratedSource(2_000, seed=3, fraud_rate=0.02), LogisticBaseline(), output_dir=tmp / "model")
    prefix = f"fuzz-{os.getpid()}-{free_port()}"
    create_topics(stack.addresses.bootstrap_servers, f"{prefix}-in")
    port = free_port()
    overrides = {
        "INPUT_TOPIC": f"{prefix}-in",
        "SCORES_TOPIC": f"{prefix}-scores",
        "GROUP": f"{prefix}-group",
        "MODEL_DIR": model.output_dir,
        "WEB_PORT": port,
        "DATA_DIR": tmp / "workers",
        "WORKER": prefix,
    }
    log = tmp / "worker.log"
    proc = start_worker(overrides, log, {**os.environ, **stack.addresses.to_env()})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(900):
            if probe(f"{url}/metrics"):
                break
            assert proc.poll() is None, Path(log).read_text()[-3000:]
            time.sleep(0.2)
        yield url
        assert proc.poll() is None, f"the worker died: {Path(log).read_text()[-3000:]}"
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


score_shaped = st.dictionaries(st.sampled_from(["payment_id", "AMOUNT", "V1", "HOUR", "x"]), json_values, max_size=5)


def test_fuzz_score(worker: str, tally: Tally) -> None:
    with httpx.Client(base_url=worker, timeout=TIMEOUT) as client:
        fuzz(client, tally, [("POST", "/score")], score_shaped | st.lists(score_shaped, max_size=3))
        check_edges(client, tally, "POST", "/score", {"payment_id": "p1"})
        assert client.get("/metrics").status_code == 200
