"""TLS for fraudstream's servers and clients: the contexts, built in one place from files and settings.

A server serves TLS when `FRAUDSTREAM_TLS_CERT_FILE` and `FRAUDSTREAM_TLS_KEY_FILE` name its certificate
chain and key (a secured embedded stack sets them for every server and worker it starts), as Confluent's
components do with `listeners=https://...` and their keystore settings. Clients verify the server against
a CA file (librdkafka's `ssl.ca.location`), else the system's trust store.
"""

from __future__ import annotations

import hashlib
import os
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path

import certifi

#: The certificate chain (PEM) a server presents, and its private key.
CERT_FILE_ENV = "FRAUDSTREAM_TLS_CERT_FILE"
KEY_FILE_ENV = "FRAUDSTREAM_TLS_KEY_FILE"


def server_context(environ: Mapping[str, str] = os.environ, alpn: Sequence[str] | None = None) -> ssl.SSLContext | None:
    """The context a server serves TLS with, from the files the environment names; None: serve plaintext."""
    cert_file = environ.get(CERT_FILE_ENV)
    return load_server_context(cert_file, environ.get(KEY_FILE_ENV), alpn) if cert_file else None


def load_server_context(
    cert_file: str | Path, key_file: str | Path | None = None, alpn: Sequence[str] | None = None
) -> ssl.SSLContext:
    """A server context presenting `cert_file` (PEM chain; its key in `key_file` unless in the same file).

    `alpn` lists the application protocols offered in the handshake, the preferred first (`h2`, `http/1.1`).
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file or None)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def client_context(ca_location: str | None = None) -> ssl.SSLContext:
    """A verifying client context that trusts `ca_location` (a PEM file), else the system's trust store."""
    context = ssl.create_default_context(cafile=ca_location or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def trust_bundle(ca_location: str, roots: str | None = None) -> Path:
    """A PEM file of the roots already trusted (`roots`, else certifi's, as httpx trusts by default) and the CA
    at `ca_location`.

    For clients that take no CA setting and verify against `SSL_CERT_FILE` (httpx's default, so KSQLAPI):
    pointing that variable at the CA alone would make the process distrust every other server. Kept in the
    user's cache directory (owner only), named after its content.
    """
    text = Path(roots or certifi.where()).read_text() + "\n" + Path(ca_location).read_text()
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fraudstream" / "trust"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    base.chmod(0o700)
    path = base / f"ca-bundle-{digest}.pem"
    if not path.exists():
        partial = base / f".{path.name}.{os.getpid()}"
        partial.write_text(text)
        partial.replace(path)
    return path
