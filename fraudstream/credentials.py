"""Client credentials for a secured cluster, in one place, as the usual client settings.

Every client in fraudstream (confluent-kafka, aiokafka/Faust, SchemaRegistryClient, KSQLAPI, httpx) takes
its credentials from `Credentials.from_env()`, found in this order:

1. the environment: `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_MECHANISM`, `KAFKA_SASL_USERNAME`,
   `KAFKA_SASL_PASSWORD`, `KAFKA_SSL_CA_LOCATION` (the CA that signed the cluster's certificates, the
   broker's and the REST services'; unset: the system's trust store), and `user:password` pairs in `SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO`,
   `KSQLDB_BASIC_AUTH_USER_INFO`, `CONNECT_BASIC_AUTH_USER_INFO`, `FRAUDSTREAM_WEB_BASIC_AUTH_USER_INFO`
   (a stream worker's web port), as a production deployment sets them;
2. a client properties file in Confluent's format named by `FRAUDSTREAM_CLIENT_CONFIG`;
3. the client properties a secured embedded stack (`fraudstream up --secure`) wrote into its data
   directory (`./.fraudstream`, else the stack `up` started last), when its bootstrap servers are the
   ones this process uses: so a command needs no setting beside a secured stack, and never sends that
   stack's credentials to another cluster.

Nothing found means PLAINTEXT and no HTTP credentials, as against an open stack. A secured embedded stack's
clients speak SASL_SSL to the broker and https to the REST services, trusting the stack's own CA.

A secured stack's REST addresses are https: `running_stack_properties` gives the client properties of the
stack this process would use, so that `Addresses.from_env` takes its URLs when the environment names none.
"""

from __future__ import annotations

import os
import secrets
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from fraudstream.config import (
    STACK_URLS,
    Addresses,
    read_properties,
    running_stack_properties,
)
from fraudstream.tls import client_context, trust_bundle

#: The users the stack's HTTP servers accept, in the format of Jetty's PropertyFileLoginModule
#: (`name: password[,role...]`), as Confluent's components take them.
PASSWORD_PROPERTIES = "password.properties"
#: The environment variable naming a client properties file.
CLIENT_CONFIG_ENV = "FRAUDSTREAM_CLIENT_CONFIG"
#: The SCRAM mechanism clients use against the embedded broker (it holds a SHA-512 credential too).
SCRAM_MECHANISM = "SCRAM-SHA-256"
#: The one principal a secured embedded stack creates, for the broker and every HTTP endpoint.
DEFAULT_USER = "fraudstream"

#: The environment variable of each setting.
ENV_NAMES = {
    "security_protocol": "KAFKA_SECURITY_PROTOCOL",
    "sasl_mechanism": "KAFKA_SASL_MECHANISM",
    "sasl_username": "KAFKA_SASL_USERNAME",
    "sasl_password": "KAFKA_SASL_PASSWORD",
    "ssl_ca_location": "KAFKA_SSL_CA_LOCATION",
    "schema_registry_user_info": "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
    "ksqldb_user_info": "KSQLDB_BASIC_AUTH_USER_INFO",
    "connect_user_info": "CONNECT_BASIC_AUTH_USER_INFO",
    "worker_user_info": "FRAUDSTREAM_WEB_BASIC_AUTH_USER_INFO",
}

#: The key of each setting in a client properties file (Confluent's names where they exist).
PROPERTY_NAMES = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_username": "sasl.username",
    "sasl_password": "sasl.password",
    "ssl_ca_location": "ssl.ca.location",
    "schema_registry_user_info": "basic.auth.user.info",
    "ksqldb_user_info": "ksqldb.basic.auth.user.info",
    "connect_user_info": "connect.basic.auth.user.info",
    "worker_user_info": "worker.basic.auth.user.info",
}


@dataclass(frozen=True)
class Credentials:
    """How clients authenticate: SASL settings for Kafka, a `user:password` per REST service."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None
    schema_registry_user_info: str | None = None
    ksqldb_user_info: str | None = None
    connect_user_info: str | None = None
    worker_user_info: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, bootstrap_servers: str | None = None) -> Credentials:
        """The environment's credentials, else a client properties file's (see the module's docstring).

        A stack's own file counts for its cluster only: `bootstrap_servers` (default: the environment's).
        """
        given = {f.name: environ[ENV_NAMES[f.name]] for f in fields(cls) if environ.get(ENV_NAMES[f.name])}
        if given:
            return cls(**given)
        if CLIENT_CONFIG_ENV in environ:
            path = environ[CLIENT_CONFIG_ENV]
            return cls.from_properties(read_properties(Path(path))) if path else cls()
        bootstrap = bootstrap_servers or Addresses.from_env(environ).bootstrap_servers
        properties = running_stack_properties(environ, bootstrap)
        return cls() if properties is None else cls.from_properties(properties)

    @classmethod
    def from_properties(cls, properties: Mapping[str, str]) -> Credentials:
        given = {
            f.name: properties[PROPERTY_NAMES[f.name]] for f in fields(cls) if properties.get(PROPERTY_NAMES[f.name])
        }
        if "sasl_mechanism" not in given and properties.get("sasl.mechanisms"):  # librdkafka's older spelling
            given["sasl_mechanism"] = properties["sasl.mechanisms"]
        return cls(**given)

    @classmethod
    def generate(cls, user: str = DEFAULT_USER, ssl_ca_location: str | None = None) -> Credentials:
        """A fresh random password for `user`, on the broker (SCRAM) and every HTTP endpoint; with
        `ssl_ca_location`, over TLS verified against that CA (SASL_SSL), else in the clear (SASL_PLAINTEXT)."""
        password = secrets.token_urlsafe(24)
        user_info = f"{user}:{password}"
        protocol = "SASL_PLAINTEXT" if ssl_ca_location is None else "SASL_SSL"
        return cls(protocol, SCRAM_MECHANISM, user, password, ssl_ca_location, *[user_info] * len(HTTP_SERVICES))

    @property
    def secured(self) -> bool:
        return self.security_protocol != "PLAINTEXT" or any(self.http_user_info(s) for s in HTTP_SERVICES)

    def to_env(self) -> dict[str, str]:
        """The environment variables that give a child process (or a notebook) these credentials."""
        return {ENV_NAMES[f.name]: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    @property
    def tls(self) -> bool:
        """True when the broker is reached over TLS (`SSL` or `SASL_SSL`)."""
        return self.security_protocol.upper().endswith("SSL")

    def kafka(self) -> dict[str, str]:
        """librdkafka settings (confluent-kafka's Producer, Consumer, AdminClient)."""
        settings = {"security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            settings["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            settings |= {"sasl.username": self.sasl_username, "sasl.password": self.sasl_password or ""}
        if self.ssl_ca_location:
            settings["ssl.ca.location"] = self.ssl_ca_location
        return settings

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context trusting the cluster's CA (`ssl_ca_location`), else the system's trust store."""
        return client_context(self.ssl_ca_location)

    def aiokafka(self) -> dict[str, Any]:
        """The same for aiokafka (Faust's transport): keyword arguments of AIOKafkaConsumer/Producer."""
        settings: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            settings["sasl_mechanism"] = self.sasl_mechanism
        if self.sasl_username is not None:
            settings |= {"sasl_plain_username": self.sasl_username, "sasl_plain_password": self.sasl_password or ""}
        if self.tls:  # aiokafka requires a context for SSL and SASL_SSL
            settings["ssl_context"] = self.ssl_context()
        return settings

    def schema_registry(self, url: str) -> dict[str, str]:
        """The configuration of confluent-kafka's `SchemaRegistryClient` for `url`."""
        conf = {"url": url}
        if self.schema_registry_user_info:
            conf["basic.auth.user.info"] = self.schema_registry_user_info
        if self.ssl_ca_location and url.startswith("https:"):
            conf["ssl.ca.location"] = self.ssl_ca_location
        return conf

    def http_verify(self) -> ssl.SSLContext | bool:
        """httpx's `verify` for the REST services: a context trusting the cluster's CA, else True (httpx's own
        default: certifi's roots, or `SSL_CERT_FILE`)."""
        return self.ssl_context() if self.ssl_ca_location else True

    def http_user_info(self, service: str) -> str | None:
        """`user:password` for one REST service: "schema-registry", "ksqldb", "connect" or "worker"."""
        return getattr(self, HTTP_SERVICES[service])

    def http_auth(self, service: str) -> tuple[str, str] | None:
        """httpx's (and requests') `auth` for one REST service, or None."""
        user_info = self.http_user_info(service)
        if not user_info:
            return None
        user, _, password = user_info.partition(":")
        return user, password

    def ksqlapi(self) -> dict[str, str]:
        """KSQLAPI's keyword arguments (`api_key`, `secret`: HTTP basic authentication).

        KSQLAPI (ksql-python-ng) takes no CA setting: it verifies with httpx's defaults, which read
        `SSL_CERT_FILE`. With a CA, this points that variable at the roots it named (else certifi's) plus the
        CA (`fraudstream.tls.trust_bundle`), so that the process trusts the cluster and still every server it
        trusted before; a file that holds the CA already is left as it is.
        """
        if self.ssl_ca_location:
            roots = os.environ.get("SSL_CERT_FILE") or None
            ca = Path(self.ssl_ca_location).read_text().strip()
            if roots is None or ca not in Path(roots).read_text():
                os.environ["SSL_CERT_FILE"] = str(trust_bundle(self.ssl_ca_location, roots))
        auth = self.http_auth("ksqldb")
        return {} if auth is None else {"api_key": auth[0], "secret": auth[1]}

    def to_properties(self, addresses: Addresses) -> str:
        """A client properties file in Confluent's format, with the addresses these credentials are for."""
        lines = [f"bootstrap.servers={addresses.bootstrap_servers}"]
        lines += [f"{PROPERTY_NAMES[f.name]}={getattr(self, f.name)}" for f in fields(self) if getattr(self, f.name)]
        if self.schema_registry_user_info:
            lines.append("basic.auth.credentials.source=USER_INFO")
        lines += [f"{key}={getattr(addresses, name)}" for name, key in STACK_URLS.items()]
        return "# fraudstream: client settings of a secured stack (keep private)\n" + "\n".join(lines) + "\n"


#: The field holding each REST service's `user:password`.
HTTP_SERVICES = {
    "schema-registry": "schema_registry_user_info",
    "ksqldb": "ksqldb_user_info",
    "connect": "connect_user_info",
    "worker": "worker_user_info",
}


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable and writable by the owner only, from the moment it exists."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    path.chmod(0o600)  # an existing file keeps its mode through O_CREAT


def schema_registry_conf(url: str) -> dict[str, str]:
    """`SchemaRegistryClient`'s configuration for `url`, with the credentials `Credentials.from_env` finds."""
    return Credentials.from_env().schema_registry(url)
