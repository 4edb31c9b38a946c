"""The URL functions, as ksqlDB's UDFs read a URL through java.net.URI: components are decoded (%XX as
UTF-8), a component the URL lacks is NULL, an opaque URI (`mailto:x`) has no host, path or query, and text
java.net.URI refuses (a space, an unescaped `%`) fails the call ("URL input has invalid syntax")."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import SplitResult, quote_plus, unquote, unquote_plus, urlsplit

from ..errors import EvalError
from ..types import INTEGER, STRING
from .registry import register

#: characters java.net.URI (RFC 2396) never accepts unescaped; non-ASCII letters it does accept
_ILLEGAL = re.compile(r'[\x00-\x20\x7f<>"{}|\\^`]|%(?![0-9A-Fa-f]{2})')


def _parts(url: str) -> tuple[SplitResult, bool]:
    """The URL's components, and whether it is hierarchical (has host, path and query at all)."""
    if _ILLEGAL.search(url) or url.count("#") > 1:
        raise EvalError(f"URL input has invalid syntax: {url}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is not a number is invalid syntax
    except ValueError:
        raise EvalError(f"URL input has invalid syntax: {url}") from None
    opaque = bool(parts.scheme) and not url[len(parts.scheme) + 1 :].startswith("/")
    return parts, not opaque


def _component(pick: Callable[[SplitResult], Any], hierarchical_only: bool = True) -> Callable[[str], Any]:
    def extract(url: str) -> Any:
        parts, hierarchical = _parts(url)
        if hierarchical_only and not hierarchical:
            return None
        return pick(parts)

    return extract


def _host(netloc: str) -> str | None:
    """The host as java.net.URI gives it: case kept, an IPv6 address in its brackets."""
    host = netloc.rpartition("@")[2]
    host = host[: host.index("]") + 1] if host.startswith("[") and "]" in host else host.partition(":")[0]
    return host or None


def _decoded(text: str) -> str | None:
    return unquote(text) if text else None


register("URL_EXTRACT_PROTOCOL", [STRING], STRING, deterministic=True)(
    _component(lambda p: p.scheme or None, hierarchical_only=False)
)
register("URL_EXTRACT_HOST", [STRING], STRING, deterministic=True)(_component(lambda p: _host(p.netloc)))
register("URL_EXTRACT_PORT", [STRING], INTEGER, deterministic=True)(_component(lambda p: p.port))
register("URL_EXTRACT_PATH", [STRING], STRING, deterministic=True)(_component(lambda p: unquote(p.path)))
register("URL_EXTRACT_QUERY", [STRING], STRING, deterministic=True)(_component(lambda p: _decoded(p.query)))
register("URL_EXTRACT_FRAGMENT", [STRING], STRING, deterministic=True)(
    _component(lambda p: _decoded(p.fragment), hierarchical_only=False)
)


@register("URL_EXTRACT_PARAMETER", [STRING, STRING], STRING, deterministic=True)
def url_extract_parameter(url: str, name: str) -> str | None:
    """The first value of parameter `name` in the decoded query; "" for a parameter without `=`."""
    parts, hierarchical = _parts(url)
    if not hierarchical or not parts.query:
        return None
    for param in unquote(parts.query).split("&"):
        key, sep, value = param.partition("=")
        if key == name:
            return value if sep else ""
    return None


@register("URL_ENCODE_PARAM", [STRING], STRING, deterministic=True)
def url_encode_param(text: str) -> str:
    """Guava's form parameter escaper: letters, digits and `-_.*` stay, a space is `+`, the rest %XX."""
    return quote_plus(text, safe="-_.*").replace("~", "%7E")


@register("URL_DECODE_PARAM", [STRING], STRING, deterministic=True)
def url_decode_param(text: str) -> str:
    """java.net.URLDecoder: `+` is a space, %XX are UTF-8 bytes; a malformed escape fails the call."""
    if re.search(r"%(?![0-9A-Fa-f]{2})", text):
        raise EvalError("URLDecoder: Illegal hex characters in escape (%) pattern")
    return unquote_plus(text, errors="replace")
