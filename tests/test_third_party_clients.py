"""The ksqlDB and Schema Registry clients users pick up from PyPI, run against the embedded stack (issue 16,
items 8-10): `ksqldb` here; `ksqldb-client` and `python-schema-registry-client` in environments of their own
(their pins conflict with ours; tests/third_party.py)."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import pytest
from third_party import client_python, run_client

from stack.embedded import EmbeddedStack

pytestmark = pytest.mark.integration


@pytest.fixture
def name() -> str:
    return f"T{uuid.uuid4().hex[:8].upper()}"


def test_ksqldb_package(stack: EmbeddedStack, name: str) -> None:
    from ksqldb import KSQLdbClient

    client = KSQLdbClient(stack.addresses.ksqldb_url)
    created = client.ksql(
        f"CREATE STREAM {name} (ID STRING KEY, V DOUBLE) WITH (KAFKA_TOPIC='{name.lower()}', PARTITIONS=1, "
        "VALUE_FORMAT='JSON');"
    )
    assert created[0]["commandStatus"]["status"] == "SUCCESS"
    assert isinstance(client.get_properties(), list)
    assert client.inserts_stream(name, [{"ID": "a", "V": 1.5}, {"ID": "b", "V": 2.5}]) == [
        {"status": "ok", "seq": 0},
        {"status": "ok", "seq": 1},
    ]

    async def rows() -> list:
        query = f"SELECT ID, V FROM {name} EMIT CHANGES LIMIT 2;"
        return [row async for row in client.query_async(query, {"auto.offset.reset": "earliest"}, timeout=60)]

    assert [row for row in asyncio.run(rows()) if isinstance(row, list)] == [["a", 1.5], ["b", 2.5]]


KSQLDB_CLIENT = """
import json, os
from ksqldb_client import KSqlDBClient
client, name = KSqlDBClient(os.environ["KSQLDB_URL"]), os.environ["NAME"]
client.ksql(f"CREATE STREAM {name} (ID STRING KEY, V DOUBLE) WITH (KAFKA_TOPIC='{name.lower()}', PARTITIONS=1, VALUE_FORMAT='JSON');")
created = client.ksql(f"CREATE STREAM {name}_X AS SELECT ID, V * 2 AS W FROM {name} EMIT CHANGES;").root[0]
status = client.status(created.command_id)
info = client.info().ksql_server_info
print(json.dumps({"command_id": created.command_id, "status": status.status, "query_id": status.query_id,
                  "server": info.server_status}))
"""


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="ksqldb-client 0.28.2a2 requires Python < 3.13")
def test_ksqldb_client_package_status_of_a_command(stack: EmbeddedStack, name: str) -> None:
    python = client_python("ksqldb-client==0.28.2a2")
    answer = run_client(python, KSQLDB_CLIENT, {"KSQLDB_URL": stack.addresses.ksqldb_url, "NAME": name})
    assert answer == {
        "command_id": f"stream/`{name}_X`/create",
        "status": "SUCCESS",
        "query_id": answer["query_id"],
        "server": "RUNNING",
    }
    assert answer["query_id"].startswith(f"CSAS_{name}_X")


SCHEMA_REGISTRY_CLIENT = """
import json, os
from schema_registry.client import SchemaRegistryClient, schema
client, subject = SchemaRegistryClient(url=os.environ["SCHEMA_REGISTRY_URL"]), os.environ["SUBJECT"]
v1 = schema.AvroSchema({"type": "record", "name": "P", "fields": [{"name": "id", "type": "string"}]})
v2 = schema.AvroSchema({"type": "record", "name": "P", "fields": [{"name": "id", "type": "string"},
                                                                 {"name": "x", "type": "int", "default": 0}]})
schema_id = client.register(subject, v1)
answer = {
    "global_level": client.get_compatibility(),
    "same_schema": client.get_by_id(schema_id).raw_schema == v1.raw_schema,
    "versions": client.get_versions(subject),
    "checked_id": client.check_version(subject, v1).schema_id == schema_id,
    "compatible": client.test_compatibility(subject, v2),
    "set_level": client.update_compatibility("FULL", subject),
    "subject_level": client.get_compatibility(subject),
    "deleted": client.delete_subject(subject),
}
print(json.dumps(answer))
"""


def test_python_schema_registry_client_package(stack: EmbeddedStack, name: str) -> None:
    python = client_python("python-schema-registry-client==2.6.1")
    env = {"SCHEMA_REGISTRY_URL": stack.addresses.schema_registry_url, "SUBJECT": f"{name}-value"}
    answer = run_client(python, SCHEMA_REGISTRY_CLIENT, env)
    assert answer == {
        "global_level": "BACKWARD",
        "same_schema": True,
        "versions": [1],
        "checked_id": True,
        "compatible": True,
        "set_level": True,
        "subject_level": "FULL",
        "deleted": [1],
    }, json.dumps(answer)
