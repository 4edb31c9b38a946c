"""Java's view of text: a String is a sequence of UTF-16 code units, so a character outside the basic
multilingual plane (an emoji) counts twice in LEN, SUBSTRING, INSTR and the padding functions. Text of the
basic plane alone (nearly all of it) takes the fast path unchanged."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


def _pair(m: re.Match) -> str:
    code = ord(m.group()) - 0x10000
    return chr(0xD800 + (code >> 10)) + chr(0xDC00 + (code & 0x3FF))


def to_units(s: str) -> str:
    """`s` with every character outside the basic plane split into its surrogate pair."""
    return _ASTRAL.sub(_pair, s)


def from_units(u: str) -> str:
    """Surrogate pairs joined again into characters; a lone surrogate (a pair cut in two) stays one."""
    return u.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def has_astral(s: Any) -> bool:
    return isinstance(s, str) and not s.isascii() and _ASTRAL.search(s) is not None


def code_units(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run a string function over UTF-16 code units when any argument needs it, as its Java original."""

    @functools.wraps(fn)
    def call(*args: Any) -> Any:
        if not any(has_astral(a) for a in args):
            return fn(*args)
        result = fn(*(to_units(a) if isinstance(a, str) else a for a in args))
        return from_units(result) if isinstance(result, str) else result

    return call


_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", '"': '"', "'": "'", "\\": "\\"}
_JAVA_ESCAPE = re.compile(r"\\(u+)([0-9a-fA-F]{0,4})|\\([0-3][0-7]{0,2}|[4-7][0-7]?)|\\(.)", re.DOTALL)


def unescape_java(text: str) -> str:
    """commons-lang's StringEscapeUtils.unescapeJava: \\uXXXX (surrogate pairs joined), octal and the
    usual backslash escapes; a short \\u escape fails as it does there."""

    def one(m: re.Match) -> str:
        if m.group(1):
            if len(m.group(2)) < 4:
                raise ValueError(f"Less than 4 hex digits in unicode value: '{m.group(0)}' due to end of CharSequence")
            return chr(int(m.group(2), 16))
        if m.group(3):
            return chr(int(m.group(3), 8))
        return _ESCAPES.get(m.group(4), m.group(4))

    return from_units(_JAVA_ESCAPE.sub(one, text))
