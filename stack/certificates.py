"""The secured embedded stack's private CA and server certificate, generated once into its secrets directory.

Every service binds 127.0.0.1, so one server certificate (names `127.0.0.1` and `localhost`) serves them all,
signed by a CA made for this data directory alone: clients trust that CA (`ca.pem`), not the certificate, so
the certificate can be issued again (when it nears its end) without any client changing. The CA's key stays
beside it for that, readable by the owner only, like every file of the directory.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fraudstream.credentials import write_private

logger = logging.getLogger(__name__)

CA_FILE, CA_KEY_FILE = "ca.pem", "ca-key.pem"
SERVER_FILE, SERVER_KEY_FILE = "server.pem", "server-key.pem"
#: The names every embedded service is reached by.
SERVER_NAMES = ("127.0.0.1", "localhost")
CA_DAYS, SERVER_DAYS = 3650, 825  # 825: the longest validity Apple's and browsers' clients accept
#: A server certificate this close to its end is issued again at `up`.
RENEW_BEFORE = datetime.timedelta(days=30)

PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Certificates:
    """The files a secured stack serves and verifies TLS with."""

    ca: Path
    server: Path
    server_key: Path


def ensure_certificates(directory: Path, names: tuple[str, ...] = SERVER_NAMES) -> Certificates:
    """The CA and server certificate in `directory`: made at the first call, kept after (the server's issued
    again when it is missing, names other hosts or nears its end), files owner-only."""
    files = Certificates(directory / CA_FILE, directory / SERVER_FILE, directory / SERVER_KEY_FILE)
    ca_key_path = directory / CA_KEY_FILE
    if not (files.ca.exists() and ca_key_path.exists()):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        write_private(ca_key_path, _pem_key(ca_key))
        write_private(files.ca, _pem(make_ca(ca_key)))
        files.server.unlink(missing_ok=True)
        logger.info("private CA generated in %s", directory)
    if not _current(files.server, names):
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        assert isinstance(ca_key, PrivateKey)
        ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        write_private(files.server_key, _pem_key(key))
        write_private(files.server, _pem(issue_server_certificate(ca, ca_key, key.public_key(), names)))
        logger.info("server certificate for %s issued in %s", ", ".join(names), directory)
    return files


def make_ca(key: PrivateKey, days: int = CA_DAYS) -> x509.Certificate:
    """A self-signed CA that may sign server certificates only (path length 0)."""
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fraudstream"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "fraudstream embedded stack CA")])  # fmt: skip
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def issue_server_certificate(
    ca: x509.Certificate,
    ca_key: PrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    names: tuple[str, ...] = SERVER_NAMES,
    days: int = SERVER_DAYS,
) -> x509.Certificate:
    """A TLS server certificate for `names` (IP addresses or DNS names, in its subject alternative names)."""
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + datetime.timedelta(days=days), ca.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName([_general_name(name) for name in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def server_names(certificate: x509.Certificate) -> set[str]:
    """The names a server certificate is valid for (its subject alternative names)."""
    alternative = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n) for n in alternative.get_values_for_type(x509.IPAddress)} | set(
        alternative.get_values_for_type(x509.DNSName)
    )


def _current(path: Path, names: tuple[str, ...]) -> bool:
    """True when `path` is a server certificate for `names` that stays valid beyond `RENEW_BEFORE`."""
    if not path.exists():
        return False
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    return certificate.not_valid_after_utc - RENEW_BEFORE > _now() and server_names(certificate) >= set(names)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _pem_key(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
