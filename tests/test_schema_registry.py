"""The embedded Schema Registry against the real broker, through confluent-kafka's own client and serializers.

Raw HTTP checks pin the parts of Confluent's API that clients rely on but the client hides: error codes
and bodies, content types, soft and permanent deletes.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from fraudstream.kafka import admin_client, consumer_config, producer_config
from stack import supervisor
from stack.embedded import EmbeddedStack

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@pytest.fixture(scope="module")
def registry_url(stack: EmbeddedStack) -> str:
    """The session stack's registry (started here if the session stack was started without it)."""
    if "schema-registry" not in stack.running:
        stack.start_service("schema-registry")
    return stack.addresses.schema_registry_url


@pytest.fixture
def http(registry_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry_url, timeout=30) as client:
        yield client


@pytest.fixture
def client(registry_url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": registry_url})


@pytest.fixture
def subject(topic_name: str) -> str:
    return f"{topic_name}-value"


def avro(*fields: tuple[str, Any] | tuple[str, Any, Any], name: str = "Payment") -> str:
    """An Avro record schema; a field is (name, type) or (name, type, default)."""
    spec = [{"name": f[0], "type": f[1], **({"default": f[2]} if len(f) == 3 else {})} for f in fields]
    return json.dumps({"type": "record", "name": name, "namespace": "fraudstream", "fields": spec})


PAYMENT_V1 = avro(("id", "string"), ("amount", "double"))
PAYMENT_V2 = avro(("id", "string"), ("amount", "double"), ("currency", "string", "EUR"))
PAYMENT_BAD = avro(("id", "string"), ("amount", "double"), ("merchant", "string"))


def post(http: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return http.post(path, content=json.dumps(body), headers={"Content-Type": CONTENT_TYPE})


def register(http: httpx.Client, subject: str, schema: str, **extra: Any) -> dict[str, Any]:
    response = post(http, f"/subjects/{subject}/versions", {"schema": schema, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response: httpx.Response, status: int, error_code: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_code"] == error_code
    assert isinstance(body["message"], str) and body["message"]
    return body["message"]


# -- confluent-kafka's client and serializers, unchanged ------------------------------------------


def test_serializer_writes_confluent_wire_format_through_the_broker(
    stack: EmbeddedStack, registry_url: str, client: SchemaRegistryClient, topic_name: str
) -> None:
    serializer = AvroSerializer(client, PAYMENT_V1)
    deserializer = AvroDeserializer(client)
    context = SerializationContext(topic_name, MessageField.VALUE)
    payment = {"id": "tx-1", "amount": 12.5}

    encoded = serializer(payment, context)

    registered = client.get_latest_version(f"{topic_name}-value")
    assert encoded[0] == 0
    assert struct.unpack(">I", encoded[1:5])[0] == registered.schema_id
    assert json.loads(registered.schema.schema_str) == json.loads(PAYMENT_V1)

    bootstrap = stack.addresses.bootstrap_servers
    admin = admin_client(bootstrap)
    admin.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(timeout=30)
    producer = Producer(producer_config(bootstrap))
    producer.produce(topic_name, key=b"tx-1", value=encoded)
    assert producer.flush(30) == 0
    consumer = Consumer(consumer_config(bootstrap, f"{topic_name}-reader"))
    consumer.assign([TopicPartition(topic_name, 0, 0)])
    try:
        message = consumer.poll(30)
    finally:
        consumer.close()
    assert message is not None and message.error() is None
    fresh = AvroDeserializer(SchemaRegistryClient({"url": registry_url}))  # no cached schema
    assert fresh(message.value(), context) == payment
    assert deserializer(encoded, context) == payment


def test_same_schema_same_id_and_other_subjects_share_it(
    registry_url: str, client: SchemaRegistryClient, subject: str
) -> None:
    first = client.register_schema(subject, Schema(PAYMENT_V1, "AVRO"))
    # A second client has no cache, so this really asks the server (with different whitespace).
    again = SchemaRegistryClient({"url": registry_url}).register_schema(
        subject, Schema(json.dumps(json.loads(PAYMENT_V1), indent=2), "AVRO")
    )
    assert again == first
    assert client.get_versions(subject) == [1]

    other = f"{subject}-copy"
    assert client.register_schema(other, Schema(PAYMENT_V1, "AVRO")) == first
    assert client.get_versions(other) == [1]
    versions = {(v.subject, v.version) for v in client.get_schema_versions(first)}
    assert {(subject, 1), (other, 1)} <= versions
    assert {subject, other} <= set(client.get_subjects())

    found = client.lookup_schema(subject, Schema(PAYMENT_V1, "AVRO"))
    assert (found.schema_id, found.version, found.subject) == (first, 1, subject)
    assert json.loads(client.get_schema(first).schema_str) == json.loads(PAYMENT_V1)


def test_compatible_evolution_gets_a_new_version_and_id(client: SchemaRegistryClient, subject: str) -> None:
    first = client.register_schema(subject, Schema(PAYMENT_V1, "AVRO"))
    assert client.test_compatibility(subject, Schema(PAYMENT_V2, "AVRO")) is True
    assert client.test_compatibility(subject, Schema(PAYMENT_BAD, "AVRO")) is False
    second = client.register_schema(subject, Schema(PAYMENT_V2, "AVRO"))
    assert second != first
    latest = client.get_latest_version(subject)
    assert (latest.version, latest.schema_id) == (2, second)
    assert client.get_version(subject, 1).schema_id == first

    with pytest.raises(SchemaRegistryError) as caught:
        client.register_schema(subject, Schema(PAYMENT_BAD, "AVRO"))
    assert (caught.value.http_status_code, caught.value.error_code) == (409, 409)
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in caught.value.error_message
    assert client.get_versions(subject) == [1, 2]


def test_levels_per_subject_including_transitive(client: SchemaRegistryClient, subject: str) -> None:
    f_int = avro(("f", "int"), name="R")
    empty = avro(name="R")
    f_string = avro(("f", "string", "z"), name="R")
    client.register_schema(subject, Schema(f_int, "AVRO"))
    client.register_schema(subject, Schema(empty, "AVRO"))  # dropping a field: backward compatible

    assert client.set_compatibility(subject, "BACKWARD_TRANSITIVE") == {"compatibility": "BACKWARD_TRANSITIVE"}
    assert client.get_compatibility(subject) == "BACKWARD_TRANSITIVE"
    assert client.test_compatibility_all_versions(subject, Schema(f_string, "AVRO")) is False
    with pytest.raises(SchemaRegistryError) as caught:
        client.register_schema(subject, Schema(f_string, "AVRO"))
    assert caught.value.error_code == 409 and "TYPE_MISMATCH" in caught.value.error_message

    client.set_compatibility(subject, "backward")  # lower case is accepted, as by Confluent
    assert client.register_schema(subject, Schema(f_string, "AVRO")) > 0
    assert client.get_versions(subject) == [1, 2, 3]

    client.set_compatibility(subject, "FORWARD")
    assert client.test_compatibility(subject, Schema(avro(name="R"), "AVRO")) is True  # old readers default f
    assert client.test_compatibility(subject, Schema(f_int, "AVRO")) is False  # an int f is no string
    client.set_compatibility(subject, "FULL")
    assert client.test_compatibility(subject, Schema(avro(("f", "string", "y"), ("g", "int", 0), name="R"), "AVRO"))
    client.set_compatibility(subject, "NONE")
    assert client.test_compatibility(subject, Schema('"string"', "AVRO")) is True


# -- raw HTTP: what clients see when things go wrong ----------------------------------------------


def test_root_types_content_types_and_metrics(http: httpx.Client) -> None:
    root = http.get("/")
    assert root.status_code == 200 and root.json() == {}
    assert root.headers["Content-Type"].startswith(CONTENT_TYPE)
    plain = http.get("/schemas/types", headers={"Accept": "application/json"})
    assert plain.headers["Content-Type"].startswith("application/json")
    assert set(plain.json()) == {"AVRO", "JSON", "PROTOBUF"}
    assert http.get("/subjects").status_code == 200
    metrics = http.get("/metrics")
    assert metrics.status_code == 200
    assert 'schema_registry_requests_total{method="GET",route="/subjects",status="200"}' in metrics.text
    assert "schema_registry_ready 1.0" in metrics.text


def test_not_found_errors(http: httpx.Client, subject: str) -> None:
    assert_error(http.get(f"/subjects/{subject}/versions"), 404, 40401)
    assert_error(http.get(f"/subjects/{subject}/versions/latest"), 404, 40401)
    assert_error(post(http, f"/subjects/{subject}", {"schema": PAYMENT_V1}), 404, 40401)
    register(http, subject, PAYMENT_V1)
    assert_error(http.get(f"/subjects/{subject}/versions/7"), 404, 40402)
    assert_error(post(http, f"/subjects/{subject}", {"schema": PAYMENT_V2}), 404, 40403)
    assert_error(http.get("/schemas/ids/987654"), 404, 40403)
    assert_error(http.get("/no/such/path"), 404, 404)


def test_invalid_input_errors(http: httpx.Client, subject: str) -> None:
    message = assert_error(post(http, f"/subjects/{subject}/versions", {"schema": avro(("x", "nope"))}), 422, 42201)
    assert "nope" in message
    assert_error(post(http, f"/subjects/{subject}/versions", {"schema": "{not json"}), 422, 42201)
    assert_error(post(http, f"/subjects/{subject}/versions", {"schema": "", "schemaType": "AVRO"}), 422, 42201)
    assert_error(post(http, f"/subjects/{subject}/versions", {"schema": '"int"', "schemaType": "XML"}), 422, 42201)
    bad_body = http.post(f"/subjects/{subject}/versions", content=b"{oops", headers={"Content-Type": CONTENT_TYPE})
    assert_error(bad_body, 400, 400)
    register(http, subject, PAYMENT_V1)
    for version in ("abc", "0", "-2", "2147483648"):
        assert_error(http.get(f"/subjects/{subject}/versions/{version}"), 422, 42202)
    assert_error(http.put(f"/config/{subject}", json={"compatibility": "SIDEWAYS"}), 422, 42203)
    assert_error(http.put("/config", json={}), 422, 42203)
    assert http.get("/subjects/" + subject + "/versions").json() == [1]  # nothing half-written


def test_version_endpoints(http: httpx.Client, subject: str) -> None:
    schema_id = register(http, subject, PAYMENT_V1)["id"]
    register(http, subject, PAYMENT_V2)
    v1 = http.get(f"/subjects/{subject}/versions/1").json()
    assert v1 == {
        "subject": subject,
        "version": 1,
        "id": schema_id,
        "schema": json.dumps(json.loads(PAYMENT_V1), separators=(",", ":")),
    }
    assert http.get(f"/subjects/{subject}/versions/-1").json()["version"] == 2
    assert json.loads(http.get(f"/subjects/{subject}/versions/1/schema").text) == json.loads(PAYMENT_V1)
    assert subject in http.get(f"/schemas/ids/{schema_id}/subjects").json()
    assert http.get(f"/subjects/{subject}/versions/1/referencedby").json() == []
    check = post(http, f"/compatibility/subjects/{subject}/versions/1?verbose=true", {"schema": PAYMENT_BAD}).json()
    assert check["is_compatible"] is False and "READER_FIELD_MISSING_DEFAULT_VALUE" in check["messages"][0]
    unknown = post(http, f"/compatibility/subjects/{subject}-none/versions/latest", {"schema": PAYMENT_BAD})
    assert unknown.json() == {"is_compatible": True}  # nothing registered yet: anything may be first
    assert_error(post(http, f"/compatibility/subjects/{subject}/versions/9", {"schema": PAYMENT_V1}), 404, 40402)


def test_subject_config_falls_back_to_global_only_when_asked(http: httpx.Client, subject: str) -> None:
    global_level = http.get("/config").json()["compatibilityLevel"]
    assert_error(http.get(f"/config/{subject}"), 404, 40408)
    assert http.get(f"/config/{subject}?defaultToGlobal=true").json() == {"compatibilityLevel": global_level}
    assert http.put(f"/config/{subject}", json={"compatibility": "FULL_TRANSITIVE"}).json() == {
        "compatibility": "FULL_TRANSITIVE"
    }
    assert http.get(f"/config/{subject}").json() == {"compatibilityLevel": "FULL_TRANSITIVE"}
    assert http.delete(f"/config/{subject}").json() == {"compatibilityLevel": "FULL_TRANSITIVE"}
    assert_error(http.get(f"/config/{subject}"), 404, 40408)


def test_global_config_is_backward_by_default_and_settable(http: httpx.Client, subject: str) -> None:
    assert http.get("/config").json() == {"compatibilityLevel": "BACKWARD"}
    try:
        assert http.put("/config", json={"compatibility": "NONE"}).json() == {"compatibility": "NONE"}
        register(http, subject, PAYMENT_V1)
        register(http, subject, '"string"')  # NONE lets anything through
    finally:
        http.put("/config", json={"compatibility": "BACKWARD"})
    assert http.get("/config").json() == {"compatibilityLevel": "BACKWARD"}


def test_soft_and_permanent_deletes(http: httpx.Client, subject: str) -> None:
    name = subject.replace("-", "_")  # schemas no other test registers, so their ids are this test's alone
    v1, v2 = avro(("id", "string"), name=name), avro(("id", "string"), ("n", "int", 0), name=name)
    first = register(http, subject, v1)["id"]
    register(http, subject, v2)

    assert http.delete(f"/subjects/{subject}/versions/1").json() == 1
    assert http.get(f"/subjects/{subject}/versions").json() == [2]
    assert http.get(f"/subjects/{subject}/versions?deleted=true").json() == [1, 2]
    assert_error(http.get(f"/subjects/{subject}/versions/1"), 404, 40402)
    assert http.get(f"/subjects/{subject}/versions/1?deleted=true").json()["id"] == first
    assert http.get(f"/schemas/ids/{first}").status_code == 200  # old records stay readable
    assert_error(http.delete(f"/subjects/{subject}/versions/1"), 404, 40406)
    assert_error(http.delete(f"/subjects/{subject}/versions/2?permanent=true"), 404, 40407)
    assert http.delete(f"/subjects/{subject}/versions/1?permanent=true").json() == 1
    assert http.get(f"/subjects/{subject}/versions?deleted=true").json() == [2]
    assert_error(http.get(f"/schemas/ids/{first}"), 404, 40403)

    assert_error(http.delete(f"/subjects/{subject}?permanent=true"), 404, 40405)
    assert http.delete(f"/subjects/{subject}").json() == [2]
    assert subject not in http.get("/subjects").json()
    assert subject in http.get("/subjects?deleted=true").json()
    assert_error(http.delete(f"/subjects/{subject}"), 404, 40404)
    assert_error(http.get(f"/subjects/{subject}/versions"), 404, 40401)

    # Registering again after a soft delete continues the version numbers.
    assert register(http, subject, v1)["id"] > first  # its old id went with the permanent delete
    assert http.get(f"/subjects/{subject}/versions").json() == [3]
    http.delete(f"/subjects/{subject}")
    assert http.delete(f"/subjects/{subject}?permanent=true").json() == [2, 3]
    assert_error(http.delete(f"/subjects/{subject}"), 404, 40401)


def test_references_are_stored_and_protect_their_target(http: httpx.Client, subject: str) -> None:
    card_subject = f"{subject}-card"
    card = json.dumps(
        {"type": "record", "name": "Card", "namespace": "bank", "fields": [{"name": "pan", "type": "string"}]}
    )
    register(http, card_subject, card)
    payment = avro(("card", "bank.Card"))
    reference = {"name": "bank.Card", "subject": card_subject, "version": 1}
    schema_id = register(http, subject, payment, references=[reference])["id"]
    assert http.get(f"/schemas/ids/{schema_id}").json()["references"] == [reference]
    assert http.get(f"/subjects/{card_subject}/versions/1/referencedby").json() == [schema_id]
    assert_error(http.delete(f"/subjects/{card_subject}/versions/1"), 422, 42206)
    missing = {**reference, "version": 5}
    assert_error(
        post(http, f"/subjects/{subject}-x/versions", {"schema": payment, "references": [missing]}), 422, 42201
    )
    assert_error(post(http, f"/subjects/{subject}-y/versions", {"schema": payment}), 422, 42201)


def test_json_and_protobuf_are_stored_but_checked_only_at_none(http: httpx.Client, subject: str) -> None:
    doc = json.dumps({"type": "object", "properties": {"id": {"type": "string"}}})
    schema_id = register(http, subject, doc, schemaType="JSON")["id"]
    assert http.get(f"/schemas/ids/{schema_id}").json()["schemaType"] == "JSON"
    assert register(http, subject, doc, schemaType="JSON")["id"] == schema_id
    changed = json.dumps({"type": "object", "properties": {"id": {"type": "integer"}}})
    message = assert_error(
        post(http, f"/subjects/{subject}/versions", {"schema": changed, "schemaType": "JSON"}), 409, 409
    )
    assert "NONE" in message
    http.put(f"/config/{subject}", json={"compatibility": "NONE"})
    register(http, subject, changed, schemaType="JSON")
    proto = 'syntax = "proto3"; message Payment { string id = 1; }'
    proto_id = register(http, f"{subject}-proto", proto, schemaType="PROTOBUF")["id"]
    assert http.get(f"/schemas/ids/{proto_id}").json() == {"schema": proto, "schemaType": "PROTOBUF"}


# -- durability and lifecycle ---------------------------------------------------------------------


def test_restart_keeps_ids_subjects_and_levels(stack: EmbeddedStack, registry_url: str, subject: str) -> None:
    client = SchemaRegistryClient({"url": registry_url})
    first = client.register_schema(subject, Schema(PAYMENT_V1, "AVRO"))
    second = client.register_schema(subject, Schema(PAYMENT_V2, "AVRO"))
    client.register_schema(f"{subject}-gone", Schema('"long"', "AVRO"))
    client.delete_subject(f"{subject}-gone")
    client.set_compatibility(subject, "FULL")

    stack.stop_service("schema-registry")
    stack.start_service("schema-registry")  # returns once GET /subjects answers 200: the topic was read

    after = SchemaRegistryClient({"url": registry_url})
    assert after.get_versions(subject) == [1, 2]
    assert after.get_latest_version(subject).schema_id == second
    assert json.loads(after.get_schema(first).schema_str) == json.loads(PAYMENT_V1)
    assert after.register_schema(subject, Schema(PAYMENT_V1, "AVRO")) == first
    assert after.get_compatibility(subject) == "FULL"
    assert f"{subject}-gone" not in after.get_subjects()
    assert f"{subject}-gone" in after.get_subjects(deleted=True)
    fresh = after.register_schema(f"{subject}-new", Schema(avro(("n", "int"), name="Fresh"), "AVRO"))
    assert fresh > second  # ids are never handed out twice


def test_waits_for_the_store_and_stops_cleanly_on_sigterm(tmp_path: Any) -> None:
    """Against a broker that is not there, the registry serves / but answers 503 on data endpoints."""
    port, dead = supervisor.free_port(), supervisor.free_port()
    log = (tmp_path / "registry.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "stack.registry", "--port", str(port), "--bootstrap-servers", f"127.0.0.1:{dead}"],
        stderr=log,
    )
    try:
        assert _wait_for_port(process, port), f"the registry exited early; see {tmp_path / 'registry.log'}"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert http.get("/").json() == {}
            assert_error(http.get("/subjects"), 503, 503)
            assert_error(post(http, "/subjects/x/versions", {"schema": '"int"'}), 503, 503)
    finally:
        process.terminate()
        code = process.wait(timeout=60)
    assert code == 0


def _wait_for_port(process: subprocess.Popen[bytes], port: int) -> bool:
    while not supervisor.probe(f"tcp://127.0.0.1:{port}"):
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.integration  # starts its own broker and registry
def test_a_write_the_broker_did_not_acknowledge_is_not_applied(tmp_path: Any) -> None:
    """With the broker gone a registration fails with 50001 and is not half-applied; the registry reloads
    from the topic once the broker is back, and nothing acknowledged before was lost."""
    own = EmbeddedStack.on_free_ports(tmp_path / "stack", ephemeral=False, services=("objectstore", "broker"))
    with own:
        port = supervisor.free_port()
        url = f"http://127.0.0.1:{port}"
        spec = supervisor.ServiceSpec(
            name="schema-registry",
            argv=[
                sys.executable,
                "-m",
                "stack.registry",
                "--port",
                str(port),
                "--store-timeout",
                "3",
                "--bootstrap-servers",
                own.addresses.bootstrap_servers,
            ],
            ports=[port],
            health_url=f"{url}/subjects",
            address=url,
        )
        registry = supervisor.start(spec, tmp_path / "logs")
        try:
            with httpx.Client(base_url=url, timeout=30) as http:
                kept = register(http, "kept-value", PAYMENT_V1)["id"]
                own.stop_service("broker")
                assert_error(post(http, "/subjects/lost-value/versions", {"schema": PAYMENT_V2}), 500, 50001)
                assert_error(http.get("/subjects"), 503, 503)  # rebuilding from a topic it cannot reach

                own.start_service("broker")
                _wait_until_ready(http, registry)
                assert http.get("/subjects").json() == ["kept-value"]
                assert http.get("/subjects/kept-value/versions/1").json()["id"] == kept
                assert register(http, "lost-value", PAYMENT_V2)["id"] == kept + 1
        finally:
            supervisor.stop(registry)


def _wait_until_ready(http: httpx.Client, registry: supervisor.RunningService) -> None:
    deadline = time.monotonic() + 120  # a guard against hanging the suite, not a measurement
    while http.get("/subjects").status_code == 503:
        assert registry.alive(), f"the registry exited; see {registry.log}"
        assert time.monotonic() < deadline, f"the registry did not reload; see {registry.log}"
        time.sleep(0.2)


def test_every_route_answers_with_a_trailing_slash_too(http: httpx.Client, subject: str) -> None:
    """Confluent's server answers `/config/` as `/config` (python-schema-registry-client's get_compatibility()
    asks for it): every route of its API reference, both forms, the same answer."""
    schema_id = register(http, subject, PAYMENT_V1)["id"]
    for path in ("/", "/schemas", f"/schemas?subjectPrefix={subject}&latestOnly=true", "/schemas/types",
                 f"/schemas/ids/{schema_id}", f"/schemas/ids/{schema_id}/schema", f"/schemas/ids/{schema_id}/versions",
                 f"/schemas/ids/{schema_id}/subjects", "/subjects", f"/subjects/{subject}/versions",
                 f"/subjects/{subject}/versions/1", f"/subjects/{subject}/versions/latest/schema",
                 f"/subjects/{subject}/versions/1/referencedby", "/config", f"/config/{subject}?defaultToGlobal=true",
                 "/mode", f"/mode/{subject}", "/contexts"):  # fmt: skip
        bare, _, query = path.partition("?")
        slashed = bare.rstrip("/") + "/" + (f"?{query}" if query else "")
        plain, with_slash = http.get(path), http.get(slashed)
        assert plain.status_code == with_slash.status_code == 200, (path, plain.text, with_slash.text)
        assert plain.text == with_slash.text, path
    assert http.get(f"/schemas?subjectPrefix={subject}").json() == [
        {"subject": subject, "version": 1, "id": schema_id, "schema": json.dumps(json.loads(PAYMENT_V1), separators=(",", ":"))}
    ]  # fmt: skip
    assert json.loads(http.get(f"/schemas/ids/{schema_id}/schema").text) == json.loads(PAYMENT_V1)
    assert http.get("/mode").json() == {"mode": "READWRITE"}
    assert post(http, f"/subjects/{subject}/versions/", {"schema": PAYMENT_V2}).status_code == 200
    assert post(http, f"/subjects/{subject}/", {"schema": PAYMENT_V2}).json()["version"] == 2
    check = post(http, f"/compatibility/subjects/{subject}/versions/latest/", {"schema": PAYMENT_BAD})
    assert check.json() == {"is_compatible": False}
    assert http.put(f"/config/{subject}/", json={"compatibility": "NONE"}).json() == {"compatibility": "NONE"}
    assert http.delete(f"/config/{subject}/").json() == {"compatibilityLevel": "NONE"}
    assert http.delete(f"/subjects/{subject}/versions/2/").json() == 2
    assert http.delete(f"/subjects/{subject}/").json() == [1]
