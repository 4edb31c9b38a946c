"""HTTP basic authentication for fraudstream's REST servers, as Confluent's components do it.

Schema Registry, ksqlDB and Connect take their users from a JAAS `PropertyFileLoginModule`, a file of
`name: password[,role...]` lines; the embedded servers read the same file, named by
`FRAUDSTREAM_BASIC_AUTH_FILE` (a secured embedded stack sets it for every server and worker it starts).
A request without valid credentials gets a 401 with `WWW-Authenticate: Basic realm="..."` and the
service's own error body.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from fraudstream.config import read_properties

logger = logging.getLogger(__name__)

#: The password file every embedded HTTP server checks requests against, when set.
PASSWORD_FILE_ENV = "FRAUDSTREAM_BASIC_AUTH_FILE"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BasicAuth:
    """The users of a password file, and the check of an `Authorization` header against them."""

    def __init__(self, users: Mapping[str, str], realm: str) -> None:
        self.users = dict(users)
        self.realm = realm

    @classmethod
    def from_file(cls, path: Path, realm: str) -> BasicAuth:
        """Users from a Jetty-style password file: `name: password[,role...]` (roles are ignored)."""
        users = {name: value.split(",")[0].strip() for name, value in read_properties(path).items()}
        if not users:
            raise ValueError(f"{path}: no users (expected lines of `name: password[,role]`)")
        return cls(users, realm)

    @classmethod
    def from_env(cls, realm: str, environ: Mapping[str, str] = os.environ) -> BasicAuth | None:
        """The users of the file `FRAUDSTREAM_BASIC_AUTH_FILE` names, or None when it is not set (no authentication)."""
        path = environ.get(PASSWORD_FILE_ENV)
        if not path:
            return None
        auth = cls.from_file(Path(path), realm)
        logger.info("HTTP basic authentication required (realm %s, %d user(s))", realm, len(auth.users))
        return auth

    def allows(self, authorization: str | None) -> bool:
        """True when `authorization` (an `Authorization` header) names a user with the right password."""
        if not authorization:
            return False
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, colon, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = self.users.get(user)
        return bool(colon) and expected is not None and hmac.compare_digest(expected.encode(), password.encode())

    @property
    def challenge(self) -> str:
        return f'Basic realm="{self.realm}"'

    def middleware(self, body: Mapping[str, Any], content_type: str = "application/json") -> Any:
        """An aiohttp middleware answering 401 with `body` (the service's error format) to unauthenticated requests."""
        text = json.dumps(body)

        @web.middleware
        async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
            if self.allows(request.headers.get("Authorization")):
                return await handler(request)
            return web.Response(
                status=401, text=text, content_type=content_type, headers={"WWW-Authenticate": self.challenge}
            )

        return authenticate
