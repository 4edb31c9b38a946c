"""Client credentials (fraudstream.credentials) and the servers' basic authentication (fraudstream.basicauth),
without servers: where credentials come from, what each client is given, and what a request must carry."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from fraudstream.basicauth import BasicAuth
from fraudstream.config import Addresses, read_properties
from fraudstream.credentials import CLIENT_CONFIG_ENV, Credentials, write_private
from stack.prometheus import scrape_config


def basic(user_info: str) -> str:
    return "Basic " + base64.b64encode(user_info.encode()).decode()


def test_nothing_set_means_an_open_cluster(tmp_path: Path) -> None:
    credentials = Credentials.from_env({"XDG_STATE_HOME": str(tmp_path)})
    assert credentials == Credentials() and not credentials.secured
    assert credentials.kafka() == {"security.protocol": "PLAINTEXT"}
    assert credentials.schema_registry("http://r") == {"url": "http://r"}
    assert credentials.http_auth("ksqldb") is None and credentials.ksqlapi() == {}


def test_the_environment_gives_every_clients_usual_settings() -> None:
    env = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "alice",
        "KAFKA_SASL_PASSWORD": "pw:with:colons",
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "key:secret",
        "KSQLDB_BASIC_AUTH_USER_INFO": "bob:b:c",
    }
    credentials = Credentials.from_env(env)
    assert credentials.kafka() == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                                   "sasl.username": "alice", "sasl.password": "pw:with:colons"}  # fmt: skip
    assert credentials.aiokafka()["sasl_plain_password"] == "pw:with:colons"
    assert credentials.schema_registry("http://r") == {"url": "http://r", "basic.auth.user.info": "key:secret"}
    assert credentials.http_auth("ksqldb") == ("bob", "b:c") and credentials.ksqlapi() == {
        "api_key": "bob",
        "secret": "b:c",
    }
    assert credentials.http_auth("connect") is None
    assert Credentials.from_env(credentials.to_env()) == credentials


def test_a_client_properties_file_in_confluents_format(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text(
        "# Confluent Cloud style\nbootstrap.servers=b:9092\nsecurity.protocol=SASL_SSL\n"
        "sasl.mechanisms=PLAIN\nsasl.username=KEY\nsasl.password=SECRET\n"
        "basic.auth.credentials.source=USER_INFO\nbasic.auth.user.info=SRKEY:SRSECRET\n"
    )
    credentials = Credentials.from_env({CLIENT_CONFIG_ENV: str(path)})
    assert credentials.kafka()["sasl.mechanism"] == "PLAIN" and credentials.sasl_password == "SECRET"
    assert credentials.schema_registry_user_info == "SRKEY:SRSECRET"
    assert Credentials.from_env({CLIENT_CONFIG_ENV: ""}) == Credentials()  # set empty: explicitly none


def test_a_secured_stacks_file_is_found_for_its_own_cluster_only(tmp_path: Path) -> None:
    """`up` remembers the data directory; its client.properties applies to the bootstrap servers it names."""
    data_dir, state = tmp_path / "data", tmp_path / "state"
    generated = Credentials.generate()
    addresses = Addresses(bootstrap_servers="127.0.0.1:19092")
    write_private(data_dir / "secrets" / "client.properties", generated.to_properties(addresses))
    (state / "fraudstream").mkdir(parents=True)
    (state / "fraudstream" / "current-stack").write_text(f"{data_dir}\n")
    mine = {"XDG_STATE_HOME": str(state), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092"}
    assert Credentials.from_env(mine) == generated
    assert Credentials.from_env({**mine, "KAFKA_BOOTSTRAP_SERVERS": "elsewhere:9092"}) == Credentials()
    assert Credentials.from_env({"XDG_STATE_HOME": str(state)}, bootstrap_servers="127.0.0.1:19092") == generated
    assert stat.S_IMODE((data_dir / "secrets").stat().st_mode) == 0o700
    assert stat.S_IMODE((data_dir / "secrets" / "client.properties").stat().st_mode) == 0o600


def test_generated_credentials_are_random_and_the_same_user_everywhere() -> None:
    one, two = Credentials.generate(), Credentials.generate()
    assert one.sasl_password != two.sasl_password and len(one.sasl_password or "") >= 32
    assert one.security_protocol == "SASL_PLAINTEXT" and one.sasl_mechanism == "SCRAM-SHA-256"
    assert {one.http_user_info(s) for s in ("schema-registry", "ksqldb", "connect", "worker")} == {
        f"fraudstream:{one.sasl_password}"
    }


def test_properties_files_read_like_javas(tmp_path: Path) -> None:
    path = tmp_path / "a.properties"
    path.write_text("# comment\n! also a comment\n\nkey = value\nuser: pa=ss,admin\nbare\nurl=http://h:1/x\n")
    assert read_properties(path) == {"key": "value", "user": "pa=ss,admin", "bare": "", "url": "http://h:1/x"}


def test_basic_auth_checks_name_and_password(tmp_path: Path) -> None:
    path = tmp_path / "password.properties"
    path.write_text("fraudstream: s3cret,admin\nother: pw\n")
    auth = BasicAuth.from_file(path, "SchemaRegistry-Props")
    assert auth.allows(basic("fraudstream:s3cret")) and auth.allows(basic("other:pw"))
    for header in (None, "", basic("fraudstream:wrong"), basic("nobody:s3cret"), basic("fraudstream"),
                   "Bearer abc", "Basic !!!notbase64", "Basic " + base64.b64encode(b"\xff\xfe:x").decode()):  # fmt: skip
        assert not auth.allows(header), header
    assert auth.challenge == 'Basic realm="SchemaRegistry-Props"'
    assert BasicAuth.from_env("r", {}) is None
    empty = tmp_path / "empty.properties"
    empty.write_text("# nobody\n")
    with pytest.raises(ValueError, match="no users"):
        BasicAuth.from_file(empty, "r")


def test_prometheus_signs_in_to_the_guarded_services_only() -> None:
    auth = {"username": "fraudstream", "password_file": "/x/prometheus.password"}
    config = scrape_config({"schema-registry": "h:1", "worker": "h:2", "objectstore": "h:3"}, "h:4", auth)
    signed = {job["job_name"]: job.get("basic_auth") for job in config["scrape_configs"]}
    assert signed == {"schema-registry": auth, "worker": auth, "objectstore": None, "prometheus": None}
