"""`fraudstream up --secure`: every endpoint serves TLS only, refuses a client that does not trust the stack's CA,
a client without credentials or with a wrong password, and serves one with the right CA and credentials, through
the clients users use; the whole pipeline runs secured.

One secured stack for the module, started as a user starts it (`fraudstream up --secure`); the tests sign
in with what it generated in its data directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import stat
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.structs import TopicPartition as AIOTopicPartition
from cli_helpers import fraudstream
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext
from ksql.errors import KSQLError
from test_features_end_to_end import FEATURE_STATEMENTS, Pipeline, size, wait_until

from connectors.client import ConnectClient
from connectors.lake import list_objects
from fraudstream.config import CLIENT_PROPERTIES, Addresses
from fraudstream.credentials import Credentials
from fraudstream.kafka import consumer_config, end_offsets
from fraudstream.lifecycle import _attach_or_new
from fraudstream.tls import client_context
from ksql import KSQLAPI
from models.autoencoder import Autoencoder
from models.datasets import GeneratedSource
from models.training import train
from producers.generate import generate_payments
from producers.replay import replay
from stack.certificates import ensure_certificates
from stack.embedded import EmbeddedStack
from stack.supervisor import free_ports

pytestmark = pytest.mark.integration  # starts its own servers

REPO = Path(__file__).resolve().parents[1]
WRONG = "not-the-password"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Addresses on free ports and a private per-user state directory, as `cli_env` gives them."""
    broker, registry, ksqldb, connect, objectstore, worker = free_ports(6)
    addresses = Addresses(
        bootstrap_servers=f"127.0.0.1:{broker}",
        schema_registry_url=f"https://127.0.0.1:{registry}",  # a secured stack serves https
        ksqldb_url=f"https://127.0.0.1:{ksqldb}",
        connect_url=f"https://127.0.0.1:{connect}",
        s3_endpoint_url=f"http://127.0.0.1:{objectstore}",
    )
    state = tmp_path_factory.mktemp("state")
    return {**addresses.to_env(), "FRAUDSTREAM_WEB_PORT": str(worker), "XDG_STATE_HOME": str(state)}


@pytest.fixture(scope="module")
def secured(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """`fraudstream up --secure --ephemeral`; this process signs in as its generated user meanwhile."""
    data_dir = tmp_path_factory.mktemp("secure") / "data"
    result = fraudstream("up", "--secure", "--ephemeral", "--data-dir", str(data_dir), env=env)
    assert "secured" in result.stdout, result.stdout
    stack = EmbeddedStack.attach(data_dir)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**env, **stack.security_env()}.items():
            patch.setenv(name, value)
        yield stack
    fraudstream("down", "--data-dir", str(data_dir), env=env, check=False)


@pytest.fixture(scope="module")
def credentials(secured: EmbeddedStack) -> Credentials:
    return secured.credentials


def sasl(credentials: Credentials, password: str | None = None) -> dict[str, str]:
    settings = credentials.kafka()
    return settings if password is None else {**settings, "sasl.password": password}


def user_info(credentials: Credentials, password: str | None = None) -> str:
    user = credentials.sasl_username
    return f"{user}:{password or credentials.sasl_password}"


def auth_errors(config: dict[str, Any]) -> tuple[AdminClient, list[KafkaError]]:
    errors: list[KafkaError] = []
    return AdminClient({**config, "error_cb": errors.append}), errors


def test_credentials_are_generated_for_the_owner_only(secured: EmbeddedStack, credentials: Credentials) -> None:
    assert stat.S_IMODE(secured.secrets_dir.stat().st_mode) == 0o700
    files = sorted(secured.secrets_dir.iterdir())
    assert [f.name for f in files] == ["ca-key.pem", "ca.pem", "client.properties", "password.properties",
                                       "server-key.pem", "server.pem"]  # fmt: skip
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    assert credentials.security_protocol == "SASL_SSL" and credentials.sasl_mechanism == "SCRAM-SHA-256"
    assert credentials.ssl_ca_location == str(secured.secrets_dir / "ca.pem")
    assert len(credentials.sasl_password or "") >= 32
    addresses = secured.addresses
    assert all(url.startswith("https://") for url in (addresses.schema_registry_url, addresses.ksqldb_url,
                                                     addresses.connect_url))  # fmt: skip


def test_the_broker_refuses_clients_without_or_with_wrong_credentials(
    secured: EmbeddedStack, credentials: Credentials
) -> None:
    bootstrap = secured.addresses.bootstrap_servers
    plain, _ = auth_errors({"bootstrap.servers": bootstrap})
    with pytest.raises(KafkaException):
        plain.list_topics(timeout=5)

    wrong, errors = auth_errors({"bootstrap.servers": bootstrap, **sasl(credentials, WRONG)})
    with pytest.raises(KafkaException):
        wrong.list_topics(timeout=5)
    wrong.poll(0)  # serves error_cb
    wait_until(lambda: wrong.poll(0.2) >= 0 and any(e.code() == KafkaError._AUTHENTICATION for e in errors),
               "an authentication error")  # fmt: skip
    assert "invalid credentials" in next(e for e in errors if e.code() == KafkaError._AUTHENTICATION).str()

    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        right = AdminClient({"bootstrap.servers": bootstrap, **sasl(credentials), "sasl.mechanism": mechanism})
        assert "_schemas" in right.list_topics(timeout=10).topics


def test_the_broker_hangs_up_on_anything_but_a_sasl_exchange(secured: EmbeddedStack, credentials: Credentials) -> None:
    """Kafka requests before authentication, or not Kafka at all: the connection is closed, the broker serves on."""
    host, port = secured.addresses.bootstrap_servers.split(":")
    metadata_v1 = struct.pack(">hhih", 3, 1, 7, -1) + struct.pack(">i", -1)  # Metadata, all topics, no client id
    for request in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", struct.pack(">i", len(metadata_v1)) + metadata_v1):
        with socket.create_connection((host, int(port)), timeout=30) as raw:
            with credentials.ssl_context().wrap_socket(raw, server_hostname=host) as sock:  # past TLS: the gate
                sock.sendall(request)
                assert sock.recv(1024) == b""  # closed, unanswered
    right = AdminClient({"bootstrap.servers": secured.addresses.bootstrap_servers, **sasl(credentials)})
    assert "_schemas" in right.list_topics(timeout=10).topics


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Another private CA, as a client configured for some other cluster trusts."""
    return str(ensure_certificates(tmp_path_factory.mktemp("other-ca")).ca)


def test_the_broker_serves_tls_only_and_to_clients_that_trust_its_ca(
    secured: EmbeddedStack, credentials: Credentials, other_ca: str
) -> None:
    """confluent-kafka with the right credentials but another CA (or the system's roots) fails verification;
    SASL_PLAINTEXT to the TLS listener gets nowhere; aiokafka likewise."""
    bootstrap = secured.addresses.bootstrap_servers
    for ca in (other_ca, None):
        config = {k: v for k, v in {**sasl(credentials), "ssl.ca.location": ca}.items() if v is not None}
        untrusting, errors = auth_errors({"bootstrap.servers": bootstrap, **config})
        with pytest.raises(KafkaException):
            untrusting.list_topics(timeout=5)

        def verify_failed(client: AdminClient = untrusting, seen: list[KafkaError] = errors) -> bool:
            return client.poll(0.2) >= 0 and any("certificate verify failed" in e.str() for e in seen)

        wait_until(verify_failed, "a certificate verification error")
    plaintext, _ = auth_errors(
        {"bootstrap.servers": bootstrap, **sasl(credentials), "security.protocol": "SASL_PLAINTEXT"}
    )
    with pytest.raises(KafkaException):
        plaintext.list_topics(timeout=5)

    async def connect(settings: dict[str, Any]) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000, **settings)
        try:
            await producer.start()
        finally:
            await producer.stop()

    with pytest.raises((AIOKafkaError, ssl.SSLCertVerificationError)):
        asyncio.run(connect({**credentials.aiokafka(), "ssl_context": client_context(other_ca)}))
    asyncio.run(connect(credentials.aiokafka()))  # the right CA: signed in


def rest_urls(stack: EmbeddedStack) -> dict[str, str]:
    addresses = stack.addresses
    return {"schema-registry": f"{addresses.schema_registry_url}/subjects", "ksqldb": f"{addresses.ksqldb_url}/info",
            "connect": f"{addresses.connect_url}/connectors"}  # fmt: skip


@pytest.mark.parametrize("service", ["schema-registry", "ksqldb", "connect"])
def test_every_rest_endpoint_serves_tls_only_and_to_clients_that_trust_its_ca(
    secured: EmbeddedStack, credentials: Credentials, other_ca: str, service: str
) -> None:
    url, auth = rest_urls(secured)[service], credentials.http_auth(service)
    for verify in (client_context(certifi.where()), client_context(other_ca)):  # the public roots, another CA
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(url, auth=auth, verify=verify)  # type: ignore[arg-type]
    with pytest.raises(httpx.TransportError):  # plaintext HTTP to the TLS port: the handshake fails, closed
        httpx.get(url.replace("https://", "http://"), auth=auth)  # type: ignore[arg-type]
    answer = httpx.get(url, auth=auth, verify=credentials.http_verify())  # type: ignore[arg-type]
    assert answer.status_code == 200 and answer.http_version == "HTTP/1.1"


def test_the_rest_clients_refuse_a_stack_whose_ca_they_do_not_trust(
    secured: EmbeddedStack, credentials: Credentials, other_ca: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SchemaRegistryClient with another CA, KSQLAPI with httpx's default roots: verification fails."""
    registry = {"url": secured.addresses.schema_registry_url, "basic.auth.user.info": user_info(credentials)}
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        SchemaRegistryClient({**registry, "ssl.ca.location": other_ca}).get_subjects()
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    auth = credentials.http_auth("ksqldb") or ("", "")
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        KSQLAPI(secured.addresses.ksqldb_url, api_key=auth[0], secret=auth[1])


def test_ksqldb_negotiates_http2_or_http1_over_tls(secured: EmbeddedStack, credentials: Credentials) -> None:
    """ALPN routes each connection: a client offering only `h2` (ksql-python's streams) gets the HTTP/2 endpoints;
    one offering both (curl, Prometheus) or HTTP/1.1 alone gets every endpoint over HTTP/1.1."""
    auth, verify = credentials.http_auth("ksqldb"), credentials.http_verify()
    with httpx.Client(
        http1=False, http2=True, base_url=secured.addresses.ksqldb_url, verify=verify, auth=auth
    ) as client:  # type: ignore[arg-type]
        streamed = client.post("/inserts-stream", content=b'{"target": "NO_SUCH_STREAM"}\n')
        assert streamed.http_version == "HTTP/2" and streamed.status_code != 401
    for http2 in (True, False):
        with httpx.Client(http2=http2, base_url=secured.addresses.ksqldb_url, verify=verify, auth=auth) as client:  # type: ignore[arg-type]
            for path in ("/info", "/metrics"):
                answer = client.get(path)
                assert answer.http_version == "HTTP/1.1" and answer.status_code == 200, (http2, path, answer.text)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (apt-get install kcat)")
def test_kcat_lists_a_secured_broker_with_nothing_set(secured: EmbeddedStack, env: dict[str, str]) -> None:
    """`fraudstream kcat` takes the stack's SASL_SSL settings (CA included) from its client properties."""
    listed = fraudstream("kcat", "-L", "-t", "_schemas", env=env)
    assert "_schemas" in listed.stdout, listed.stdout + listed.stderr


def test_confluent_kafka_produces_and_consumes_with_the_right_credentials(
    secured: EmbeddedStack, credentials: Credentials, topic_name: str
) -> None:
    bootstrap = secured.addresses.bootstrap_servers
    producer = Producer({"bootstrap.servers": bootstrap, **sasl(credentials)})
    for i in range(10):
        producer.produce(topic_name, key=str(i), value=f"v{i}", partition=0)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic_name, **sasl(credentials)})
    consumer.assign([TopicPartition(topic_name, 0, 0)])
    values = []
    try:
        while len(values) < 10:
            message = consumer.poll(10)
            assert message is not None and message.error() is None
            values.append(message.value())
    finally:
        consumer.close()
    assert values == [f"v{i}".encode() for i in range(10)]


def test_aiokafka_signs_in_with_scram_and_is_refused_a_wrong_password(
    secured: EmbeddedStack, credentials: Credentials, topic_name: str
) -> None:
    bootstrap = secured.addresses.bootstrap_servers

    async def roundtrip() -> list[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **credentials.aiokafka())
        await producer.start()
        try:
            await producer.send_and_wait(topic_name, b"through faust's transport", partition=0)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, **credentials.aiokafka())
        await consumer.start()
        try:
            consumer.assign([AIOTopicPartition(topic_name, 0)])
            consumer.seek(AIOTopicPartition(topic_name, 0), 0)
            record = await consumer.getone()
            return [record.value]
        finally:
            await consumer.stop()

    async def wrong_password() -> None:
        settings = {**credentials.aiokafka(), "sasl_plain_password": WRONG}
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=5000, **settings)
        try:
            await producer.start()
        finally:
            await producer.stop()

    assert asyncio.run(roundtrip()) == [b"through faust's transport"]
    with pytest.raises(AIOKafkaError):
        asyncio.run(wrong_password())


@pytest.mark.parametrize(
    ("service", "path", "realm", "body"),
    [
        ("schema-registry", "/subjects", "SchemaRegistry-Props", {"error_code": 401, "message": "Unauthorized"}),
        ("ksqldb", "/info", "KsqlServer-Props", {"@type": "generic_error", "error_code": 40100, "message": "Unauthorized"}),
        ("connect", "/connectors", "KafkaConnect", {"error_code": 401, "message": "Unauthorized"}),
    ],
)  # fmt: skip
def test_every_rest_endpoint_asks_for_basic_authentication(
    secured: EmbeddedStack, credentials: Credentials, service: str, path: str, realm: str, body: dict[str, Any]
) -> None:
    url = {"schema-registry": secured.addresses.schema_registry_url, "ksqldb": secured.addresses.ksqldb_url,
           "connect": secured.addresses.connect_url}[service] + path  # fmt: skip
    for auth in (None, (credentials.sasl_username, WRONG), ("someone", "else")):
        answer = httpx.get(url, auth=auth, verify=credentials.http_verify())  # type: ignore[arg-type]
        assert answer.status_code == 401, (auth, answer.text)
        assert answer.headers["WWW-Authenticate"] == f'Basic realm="{realm}"'
        assert answer.json() == body
    assert httpx.get(url, auth=credentials.http_auth(service), verify=credentials.http_verify()).status_code == 200


def test_schema_registry_client_signs_in_with_basic_auth_user_info(
    secured: EmbeddedStack, credentials: Credentials
) -> None:
    url, ca = secured.addresses.schema_registry_url, credentials.ssl_ca_location or ""
    for conf in ({"url": url}, {"url": url, "basic.auth.user.info": user_info(credentials, WRONG)}):
        with pytest.raises(SchemaRegistryError) as refused:
            SchemaRegistryClient({**conf, "ssl.ca.location": ca}).get_subjects()
        assert refused.value.http_status_code == 401
    signed_in = SchemaRegistryClient(
        {"url": url, "basic.auth.user.info": user_info(credentials), "ssl.ca.location": ca}
    )
    assert "fraud-scores-value" in signed_in.get_subjects()  # registered by the stack itself, signed in


def test_ksqlapi_signs_in_with_api_key_and_secret(
    secured: EmbeddedStack, credentials: Credentials, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KSQLAPI takes no CA setting: `ksqlapi()` points httpx's SSL_CERT_FILE at the public roots and the CA."""
    url = secured.addresses.ksqldb_url
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # set by ksqlapi() below; put back after the test
    signed_in_kwargs = credentials.ksqlapi()
    for kwargs in ({}, {"api_key": credentials.sasl_username, "secret": WRONG}):
        with pytest.raises(ValueError, match="Status Code: 401"):  # the client asks /info as it is made
            KSQLAPI(url, **kwargs)
        with pytest.raises(KSQLError) as refused:
            KSQLAPI(url, check_version=False, **kwargs).ksql("SHOW STREAMS;")
        assert refused.value.error_code == 40100
    signed_in = KSQLAPI(url, timeout=120, **signed_in_kwargs)  # a first statement can be slow on a busy machine
    assert signed_in.ksql("SHOW STREAMS;")[0]["@type"] == "streams"


def test_ksqldb_http2_endpoints_ask_too(secured: EmbeddedStack, credentials: Credentials) -> None:
    """`/query-stream` and `/inserts-stream` over HTTP/2 (TLS, ALPN `h2`), as ksql-python sends them."""
    body = json.dumps({"sql": "SELECT * FROM KSQL_PROCESSING_LOG EMIT CHANGES LIMIT 1;", "properties": {}})
    with httpx.Client(
        http1=False, http2=True, base_url=secured.addresses.ksqldb_url, verify=credentials.http_verify()
    ) as client:
        refused = client.post("/query-stream", content=body, auth=(credentials.sasl_username, WRONG))  # type: ignore[arg-type]
        assert refused.http_version == "HTTP/2" and refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Basic realm="KsqlServer-Props"'
        assert refused.json()["error_code"] == 40100
        unknown = client.post("/inserts-stream", content=b'{"target": "NO_SUCH_STREAM"}\n',
                              auth=credentials.http_auth("ksqldb"))  # type: ignore[arg-type]  # fmt: skip
        assert unknown.status_code != 401  # signed in: the answer is about the stream


def test_commands_beside_a_secured_stack_need_no_settings(secured: EmbeddedStack, env: dict[str, str]) -> None:
    """`up` remembered the stack; a command finds its client properties there (for the same cluster only)."""
    result = fraudstream("status", env=env)  # health probes sign in: every service healthy
    assert result.stdout.count("healthy") >= 5, result.stdout
    assert str(secured.secrets_dir / CLIENT_PROPERTIES) in fraudstream("up", env=env).stdout
    refused = fraudstream("up", "--no-secure", env=env, check=False)
    assert refused.returncode != 0 and "runs secured" in refused.stderr
    assert Credentials.from_env(env) == secured.credentials
    elsewhere = Credentials.from_env({**env, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert elsewhere == Credentials()  # another cluster never gets this stack's password


def test_looking_at_a_secured_topic_prints_nothing(secured: EmbeddedStack, env: dict[str, str]) -> None:
    """The live view and the demo read topic ends every second: closed at once, each short-lived consumer cut
    its group coordinator's SASL/TLS handshake, and librdkafka printed that as an authentication failure."""
    b = secured.addresses.bootstrap_servers
    look = (
        "from fraudstream.kafka import committed_offsets, end_offsets\n"
        "for _ in range(10):\n"
        f"    end_offsets({b!r}, '_schemas'); committed_offsets({b!r}, 'nobody', '_schemas')\n"
    )
    result = subprocess.run([sys.executable, "-c", look], env={**os.environ, **env}, capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_a_data_dir_once_secured_stays_secured(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    assert not _attach_or_new(data_dir, ephemeral=True, secure=None).secure
    (data_dir / "secrets").mkdir(parents=True)
    (data_dir / "secrets" / CLIENT_PROPERTIES).write_text("security.protocol=SASL_PLAINTEXT\n")
    assert _attach_or_new(data_dir, ephemeral=True, secure=None).secure
    assert not _attach_or_new(data_dir, ephemeral=True, secure=False).secure


def read_scores(stack: EmbeddedStack, topic: str) -> list[dict]:
    """Every score so far, read as the README's downstream consumer reads it, signed in."""
    ends = end_offsets(stack.addresses.bootstrap_servers, topic)
    deserialize = AvroDeserializer(
        SchemaRegistryClient(stack.credentials.schema_registry(stack.addresses.schema_registry_url))
    )
    consumer = Consumer(consumer_config(stack.addresses.bootstrap_servers, f"secure-{uuid.uuid4().hex[:6]}"))
    consumer.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
    values: list[dict] = []
    try:
        while len(values) < sum(ends.values()):
            message = consumer.poll(10)
            assert message is not None and message.error() is None
            values.append(deserialize(message.value(), SerializationContext(topic, MessageField.VALUE)))
    finally:
        consumer.close()
    return values


@pytest.fixture
def pipeline(secured: EmbeddedStack, tmp_path: Path) -> Iterator[Pipeline]:
    made = Pipeline(secured, tmp_path)
    yield made
    made.stop()


def test_the_whole_pipeline_runs_secured(pipeline: Pipeline, secured: EmbeddedStack, credentials: Credentials) -> None:
    """Statements over REST, a model in the registry, a worker, a replay, the lake sink: each component signs in
    to the others (engine -> broker and Schema Registry, worker -> broker, Schema Registry and ksqlDB,
    Connect -> broker and Schema Registry)."""
    for name in FEATURE_STATEMENTS:
        pipeline.apply(pipeline.statement(name))
    model = train(GeneratedSource(2_000, seed=3, fraud_rate=0.02), Autoencoder(epochs=1, seed=3),
                  output_dir=pipeline.tmp_path / "v1")  # fmt: skip
    pipeline.promote(model)
    proc, port = pipeline.start_worker()
    sink = json.loads((REPO / "connectors" / "s3-sink-fraud-scores.json").read_text())["config"]
    sink |= {
        "topics": pipeline.scores,
        "flush.size": "50",
        "errors.deadletterqueue.topic.name": f"{pipeline.scores}-dlq",
    }
    ConnectClient(secured.addresses.connect_url).put_config(f"{pipeline.prefix}lake", sink)

    payments = generate_payments(200, seed=8, fraud_rate=0.05)
    replay(payments, bootstrap_servers=secured.addresses.bootstrap_servers, topic=pipeline.source,
           labels_topic=pipeline.labels)  # fmt: skip
    wait_until(lambda: size(secured, pipeline.scores) >= 200, "200 scores", proc)
    scores = read_scores(secured, pipeline.scores)
    assert len({s["payment_id"] for s in scores}) == 200 and {s["model_version"] for s in scores} == {1}
    assert size(secured, f"{pipeline.features}-dlq") == 0

    web, verify = f"https://127.0.0.1:{port}", credentials.http_verify()
    one = {column: 0.0 for column in model.model.feature_names}
    assert httpx.post(f"{web}/score", json=one, verify=verify).status_code == 401
    assert httpx.get(f"{web}/metrics", auth=(credentials.sasl_username, WRONG), verify=verify).status_code == 401  # type: ignore[arg-type]
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # the public roots: not the stack's CA
        httpx.get(f"{web}/metrics", auth=credentials.http_auth("worker"), verify=client_context(certifi.where()))
    with pytest.raises(httpx.TransportError):  # plaintext to the TLS port
        httpx.get(f"http://127.0.0.1:{port}/metrics", auth=credentials.http_auth("worker"))
    answer = httpx.post(f"{web}/score", json=one, auth=credentials.http_auth("worker"), verify=verify)
    assert answer.status_code == 200 and len(answer.json()["scores"]) == 1

    bucket = secured.addresses.bucket
    wait_until(lambda: bool(list_objects(bucket, pipeline.scores, endpoint_url=secured.addresses.s3_endpoint_url)),
               "the scores in the lake", proc)  # fmt: skip
