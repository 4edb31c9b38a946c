"""TLS without servers: the secured stack's CA and server certificate (stack.certificates), the contexts built
from them (fraudstream.tls), and each client's TLS settings (fraudstream.credentials)."""

from __future__ import annotations

import datetime
import os
import socket
import ssl
import stat
import threading
from pathlib import Path

import certifi
import pytest
from cryptography import x509

from fraudstream.config import Addresses
from fraudstream.credentials import Credentials, write_private
from fraudstream.tls import CERT_FILE_ENV, KEY_FILE_ENV, client_context, server_context, trust_bundle
from stack.certificates import SERVER_NAMES, Certificates, ensure_certificates, server_names
from stack.prometheus import scrape_config


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str = "127.0.0.1") -> str | None:
    """A TLS handshake over a socket pair; the ALPN protocol the server selected, or the client's SSLError."""
    left, right = socket.socketpair()
    failures: list[BaseException] = []

    def serve() -> None:
        try:
            with server.wrap_socket(left, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError) as error:
            failures.append(error)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(right, server_hostname=name) as tls:
            selected = tls.selected_alpn_protocol()
            tls.sendall(b"x")
    finally:
        right.close()
        thread.join(10)
    return selected


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return ensure_certificates(tmp_path_factory.mktemp("tls") / "secrets")


def test_the_ca_and_server_certificate_are_for_the_owner_only(certificates: Certificates) -> None:
    directory = certificates.ca.parent
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert sorted(f.name for f in directory.iterdir()) == ["ca-key.pem", "ca.pem", "server-key.pem", "server.pem"]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in directory.iterdir())
    server = x509.load_pem_x509_certificate(certificates.server.read_bytes())
    ca = x509.load_pem_x509_certificate(certificates.ca.read_bytes())
    assert server_names(server) == set(SERVER_NAMES) and server.issuer == ca.subject
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_clients_trusting_the_ca_verify_the_server_by_address_and_name(certificates: Certificates) -> None:
    environ = {CERT_FILE_ENV: str(certificates.server), KEY_FILE_ENV: str(certificates.server_key)}
    server = server_context(environ, alpn=("h2", "http/1.1"))
    assert server is not None and server_context({}) is None  # no certificate: plaintext
    for name in SERVER_NAMES:
        handshake(server, client_context(str(certificates.ca)), name)
    h2 = client_context(str(certificates.ca))
    h2.set_alpn_protocols(["h2"])
    assert handshake(server, h2) == "h2"
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        handshake(server, client_context(str(certificates.ca)), "127.0.0.2")
    with pytest.raises(ssl.SSLCertVerificationError, match="self-signed certificate|unable to get local issuer"):
        handshake(server, client_context(None))  # the system's roots: not this CA


def test_certificates_are_kept_across_starts_and_issued_again_when_they_must_be(tmp_path: Path) -> None:
    first = ensure_certificates(tmp_path)
    ca, server = first.ca.read_bytes(), first.server.read_bytes()
    again = ensure_certificates(tmp_path)
    assert again == first and again.ca.read_bytes() == ca and again.server.read_bytes() == server
    wider = ensure_certificates(tmp_path, (*SERVER_NAMES, "fraudstream.local"))  # other names: a new server cert
    assert wider.ca.read_bytes() == ca and wider.server.read_bytes() != server
    assert "fraudstream.local" in server_names(x509.load_pem_x509_certificate(wider.server.read_bytes()))
    ends = x509.load_pem_x509_certificate(wider.server.read_bytes()).not_valid_after_utc
    assert ends - datetime.datetime.now(datetime.UTC) > datetime.timedelta(days=365)


def test_generated_credentials_speak_sasl_ssl_to_the_broker_and_trust_the_ca(certificates: Certificates) -> None:
    ca = str(certificates.ca)
    credentials = Credentials.generate(ssl_ca_location=ca)
    assert credentials.tls and credentials.kafka() == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "fraudstream",
        "sasl.password": credentials.sasl_password,
        "ssl.ca.location": ca,
    }
    aiokafka = credentials.aiokafka()
    assert aiokafka["security_protocol"] == "SASL_SSL" and isinstance(aiokafka["ssl_context"], ssl.SSLContext)
    assert aiokafka["ssl_context"].verify_mode == ssl.CERT_REQUIRED and aiokafka["ssl_context"].check_hostname
    assert credentials.schema_registry("https://r")["ssl.ca.location"] == ca
    assert "ssl.ca.location" not in credentials.schema_registry("http://r")
    assert isinstance(credentials.http_verify(), ssl.SSLContext) and Credentials().http_verify() is True
    assert "ssl.ca.location=" + ca in credentials.to_properties(Addresses())
    assert Credentials.from_env(credentials.to_env()) == credentials  # KAFKA_SSL_CA_LOCATION and the rest
    assert Credentials.generate().security_protocol == "SASL_PLAINTEXT"  # no CA: no TLS


def test_ksqlapi_trusts_the_ca_through_httpx_defaults_and_keeps_the_public_roots(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """KSQLAPI takes no CA setting; httpx's SSL_CERT_FILE then names the public roots plus the CA."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    credentials = Credentials.generate(ssl_ca_location=str(certificates.ca))
    assert set(credentials.ksqlapi()) == {"api_key", "secret"}
    bundle = Path(os.environ["SSL_CERT_FILE"])
    assert bundle == trust_bundle(str(certificates.ca)) and certificates.ca.read_text() in bundle.read_text()
    assert bundle.read_text().count("BEGIN CERTIFICATE") > 100  # certifi's roots too
    assert stat.S_IMODE(bundle.parent.stat().st_mode) == 0o700
    credentials.ksqlapi()
    assert os.environ["SSL_CERT_FILE"] == str(bundle)  # holds the CA already: left as it is
    own = tmp_path / "own-roots.pem"
    own.write_text(
        Path(certifi.where()).read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(own))  # the user's own roots: kept, the CA added
    credentials.ksqlapi()
    extended = Path(os.environ["SSL_CERT_FILE"]).read_text()
    assert extended.startswith(own.read_text()) and certificates.ca.read_text() in extended


def test_a_secured_stacks_https_addresses_are_the_default_for_its_cluster(tmp_path: Path) -> None:
    data_dir, state = tmp_path / "data", tmp_path / "state"
    addresses = Addresses(
        bootstrap_servers="127.0.0.1:19092",
        schema_registry_url="https://127.0.0.1:18081",
        ksqldb_url="https://127.0.0.1:18088",
        connect_url="https://127.0.0.1:18083",
    )
    write_private(data_dir / "secrets" / "client.properties", Credentials.generate().to_properties(addresses))
    (state / "fraudstream").mkdir(parents=True)
    (state / "fraudstream" / "current-stack").write_text(f"{data_dir}\n")
    mine = {"XDG_STATE_HOME": str(state), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:19092"}
    found = Addresses.from_env(mine)
    assert (found.schema_registry_url, found.ksqldb_url, found.connect_url) == (
        addresses.schema_registry_url,
        addresses.ksqldb_url,
        addresses.connect_url,
    )
    assert Addresses.from_env({**mine, "KSQLDB_URL": "http://x:1"}).ksqldb_url == "http://x:1"  # the environment wins
    assert (
        Addresses.from_env({**mine, "KAFKA_BOOTSTRAP_SERVERS": "elsewhere:9092"}).ksqldb_url == Addresses().ksqldb_url
    )


def test_prometheus_scrapes_the_guarded_services_over_https() -> None:
    auth = {"username": "fraudstream", "password_file": "/x/prometheus.password"}
    config = scrape_config({"ksqldb": "h:1", "objectstore": "h:3"}, "h:4", auth, "/x/ca.pem")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["ksqldb"]["scheme"] == "https" and jobs["ksqldb"]["tls_config"] == {"ca_file": "/x/ca.pem"}
    assert "scheme" not in jobs["objectstore"] and "scheme" not in jobs["prometheus"]
