"""String and bytes functions, after ksqlDB's documented semantics (1-based positions, nulls -> null)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
import unicodedata
import uuid
from decimal import Decimal
from functools import lru_cache

from .. import values as V
from ..errors import EvalError
from ..types import BOOLEAN, BYTES, INTEGER, STRING, ArrayType, MapType
from .java_text import code_units, unescape_java
from .registry import register


def _java_trim(s: str) -> str:
    return s.strip("".join(chr(c) for c in range(0x21)))


@register("LCASE", [STRING], STRING, deterministic=True)
def lcase(s):
    return s.lower()


@register("UCASE", [STRING], STRING, deterministic=True)
def ucase(s):
    return s.upper()


@register("TRIM", [STRING], STRING, deterministic=True)
def trim(s):
    return _java_trim(s)


@register("LEN", [STRING], INTEGER, deterministic=True)
@register("LEN", [BYTES], INTEGER, deterministic=True)
@code_units
def length(s):
    return len(s)


@register("CONCAT", [STRING], STRING, variadic=True, null_safe=False, deterministic=True)
def concat(*parts):
    return "".join(p for p in parts if p is not None)


@register("CONCAT", [BYTES], BYTES, variadic=True, null_safe=False, deterministic=True)
def concat_bytes(*parts):
    return b"".join(p for p in parts if p is not None)


@register("CONCAT_WS", [STRING, STRING], STRING, variadic=True, null_safe=False, deterministic=True)
def concat_ws(sep, *parts):
    if sep is None:
        return None
    return sep.join(p for p in parts if p is not None)


@register("CONCAT_WS", [BYTES, BYTES], BYTES, variadic=True, null_safe=False, deterministic=True)
def concat_ws_bytes(sep, *parts):
    if sep is None:
        return None
    return sep.join(p for p in parts if p is not None)


def _start(length: int, pos: int) -> int:
    if pos > 0:
        return min(pos - 1, length)
    if pos < 0:
        return max(length + pos, 0)
    return 0


@register("SUBSTRING", [STRING, INTEGER], STRING, deterministic=True)
@register("SUBSTRING", [BYTES, INTEGER], BYTES, deterministic=True)
@code_units
def substring(s, pos):
    return s[_start(len(s), pos) :]


@register("SUBSTRING", [STRING, INTEGER, INTEGER], STRING, deterministic=True)
@register("SUBSTRING", [BYTES, INTEGER, INTEGER], BYTES, deterministic=True)
@code_units
def substring_len(s, pos, length):
    start = _start(len(s), pos)
    if length < 0:
        return s[0:0]
    return s[start : min(start + length, len(s))]


@register("INSTR", [STRING, STRING], INTEGER, deterministic=True)
@code_units
def instr(s, sub):
    return s.find(sub) + 1


@register("INSTR", [STRING, STRING, INTEGER], INTEGER, deterministic=True)
@code_units
def instr_pos(s, sub, pos):
    return instr_occ(s, sub, pos, 1)


@register("INSTR", [STRING, STRING, INTEGER, INTEGER], INTEGER, deterministic=True)
@code_units
def instr_occ(s, sub, pos, occurrence):
    """Oracle-style INSTR: a negative position searches backwards from that many chars from the end."""
    if occurrence <= 0 or pos == 0:
        return 0
    if pos > 0:
        idx = pos - 2
        for _ in range(occurrence):
            idx = s.find(sub, idx + 1)
            if idx < 0:
                return 0
        return idx + 1
    last_start = len(s) + pos  # 0-based latest position a match may start at
    found = -1
    for _ in range(occurrence):
        if last_start < 0:
            return 0
        found = s.rfind(sub, 0, last_start + len(sub))
        if found < 0:
            return 0
        last_start = found - 1
    return found + 1


def _pad(s, length, padding, left: bool):
    if length < 0 or not padding:
        return None
    if length <= len(s):
        return s[:length]
    need = length - len(s)
    fill = (padding * (need // len(padding) + 1))[:need]
    return fill + s if left else s + fill


@register("LPAD", [STRING, INTEGER, STRING], STRING, deterministic=True)
@register("LPAD", [BYTES, INTEGER, BYTES], BYTES, deterministic=True)
@code_units
def lpad(s, length, padding):
    return _pad(s, length, padding, True)


@register("RPAD", [STRING, INTEGER, STRING], STRING, deterministic=True)
@register("RPAD", [BYTES, INTEGER, BYTES], BYTES, deterministic=True)
@code_units
def rpad(s, length, padding):
    return _pad(s, length, padding, False)


@register("REPLACE", [STRING, STRING, STRING], STRING, deterministic=True)
def replace(s, old, new):
    return s.replace(old, new)


@register("INITCAP", [STRING], STRING, deterministic=True)
def initcap(s):
    return re.sub(r"\S+", lambda m: m.group(0)[0].upper() + m.group(0)[1:].lower(), s)


@register("CHR", [INTEGER], STRING, deterministic=True)
def chr_(code):
    return chr(code) if 0 <= code <= 0x10FFFF else None


@register("CHR", [STRING], STRING, deterministic=True)
def chr_str(text):
    """Text that starts with a \\u escape, unescaped as Java text (a surrogate pair makes one character)."""
    if len(text) < 6 or not text.startswith("\\u"):
        return None
    return unescape_java(text)


@register("SPLIT", [STRING, STRING], ArrayType(STRING))
def split(s, delim):
    if delim == "":
        return list(s)
    return s.split(delim)


@register("SPLIT", [BYTES, BYTES], ArrayType(BYTES))
def split_bytes(s, delim):
    if delim == b"":
        return [bytes([b]) for b in s]
    return s.split(delim)


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise EvalError(f"Invalid regular expression pattern: {pattern}: {e}") from None


def _java_replacement(rep: str) -> str:
    out, i = [], 0
    while i < len(rep):
        c = rep[i]
        if c == "\\" and i + 1 < len(rep):
            out.append(rep[i + 1].replace("\\", "\\\\"))
            i += 2
            continue
        if c == "$" and i + 1 < len(rep) and rep[i + 1].isdigit():
            j = i + 1
            while j < len(rep) and rep[j].isdigit():
                j += 1
            out.append(f"\\g<{rep[i + 1 : j]}>")
            i = j
            continue
        out.append("\\\\" if c == "\\" else c)
        i += 1
    return "".join(out)


@register("REGEXP_REPLACE", [STRING, STRING, STRING], STRING, deterministic=True)
def regexp_replace(s, pattern, rep):
    return _regex(pattern).sub(_java_replacement(rep), s)


@register("REGEXP_EXTRACT", [STRING, STRING], STRING, deterministic=True)
def regexp_extract(pattern, s):
    m = _regex(pattern).search(s)
    return m.group(0) if m else None


@register("REGEXP_EXTRACT", [STRING, STRING, INTEGER], STRING, deterministic=True)
def regexp_extract_group(pattern, s, group):
    m = _regex(pattern).search(s)
    if not m or group > (m.re.groups):
        return None
    return m.group(group)


@register("REGEXP_EXTRACT_ALL", [STRING, STRING], ArrayType(STRING))
def regexp_extract_all(pattern, s):
    return [m.group(0) for m in _regex(pattern).finditer(s)]


@register("REGEXP_EXTRACT_ALL", [STRING, STRING, INTEGER], ArrayType(STRING))
def regexp_extract_all_group(pattern, s, group):
    rx = _regex(pattern)
    if group > rx.groups:
        return None
    return [m.group(group) for m in rx.finditer(s)]


@register("REGEXP_SPLIT_TO_ARRAY", [STRING, STRING], ArrayType(STRING))
def regexp_split(s, pattern):
    return _regex(pattern).split(s) if pattern else list(s)


# ------------------------------------------------------------------ masking
_MASK_CLASS = {"Lu": 0, "Ll": 1, "Nd": 2}  # Unicode categories of upper, lower, digit; the rest is "other"
_DEFAULT_MASKS = ("X", "x", "n", "-")


def _mask_chars(given: tuple) -> tuple:
    """The four mask characters; None keeps that class of character unmasked."""
    if not given:
        return _DEFAULT_MASKS
    for m in given:
        if m is not None and len(m) != 1:
            raise EvalError(f"Invalid mask character. Must be only single character, but was '{m}'")
    return tuple(given)


def _mask(s: str, chars: tuple) -> str:
    out = []
    for c in s:
        m = chars[_MASK_CLASS.get(unicodedata.category(c), 3)]
        out.append(c if m is None else m)
    return "".join(out)


def _mask_fn(kind: str):
    def fn(s, *rest):
        if s is None:
            return None
        if kind == "all":
            return _mask(s, _mask_chars(rest))
        n, masks = rest[0], rest[1:]
        if n is None:
            return None
        if n < 0:
            raise EvalError(f"function mask_{kind} requires a non-negative number of characters to mask or skip")
        chars = _mask_chars(masks)
        n = min(n, len(s))
        if kind == "left":
            return _mask(s[:n], chars) + s[n:]
        if kind == "right":
            return s[: len(s) - n] + _mask(s[len(s) - n :], chars)
        if kind == "keep_left":
            return s[:n] + _mask(s[n:], chars)
        return _mask(s[: len(s) - n], chars) + s[len(s) - n :]

    return fn


for _suffix, _kind in (
    ("", "all"),
    ("_LEFT", "left"),
    ("_RIGHT", "right"),
    ("_KEEP_LEFT", "keep_left"),
    ("_KEEP_RIGHT", "keep_right"),
):
    _impl = _mask_fn(_kind)
    _base = [STRING] if _kind == "all" else [STRING, INTEGER]
    register("MASK" + _suffix, _base, STRING, null_safe=False, deterministic=True)(_impl)
    register("MASK" + _suffix, _base + [STRING] * 4, STRING, null_safe=False, deterministic=True)(_impl)


# ------------------------------------------------------------------ encodings
def _decode_input(s: str, enc: str) -> bytes | None:
    if enc == "hex":
        t = s
        if t[:2].lower() == "0x":
            t = t[2:]
            if len(t) % 2:
                t = "0" + t
        elif t[:2] in ("X'", "x'"):
            if len(t) < 3 or not t.endswith("'"):
                return None
            t = t[2:-1]
            if len(t) % 2:
                return None
        elif len(t) % 2:
            return None
        try:
            return bytes.fromhex(t)
        except ValueError:
            return None
    if enc == "utf8":
        return s.encode("utf-8")
    if enc == "ascii":
        return s.encode("ascii", errors="replace")
    if enc == "base64":
        try:
            return base64.b64decode(s, validate=True)
        except binascii.Error:
            raise EvalError(f"Invalid base64 string: {s}") from None
    return None


def _encode_output(b: bytes, enc: str) -> str | None:
    if enc == "hex":
        return b.hex()
    if enc == "utf8":
        return b.decode("utf-8", errors="replace")
    if enc == "ascii":
        return "".join(chr(x) if x < 128 else "\ufffd" for x in b)
    if enc == "base64":
        return base64.b64encode(b).decode()
    return None


_ENCODINGS = ("hex", "utf8", "ascii", "base64")


@register("ENCODE", [STRING, STRING, STRING], STRING)
def encode(s, in_enc, out_enc):
    i, o = in_enc.lower(), out_enc.lower()
    if i not in _ENCODINGS or o not in _ENCODINGS:
        raise EvalError("Supported input and output encodings are: hex, utf8, ascii and base64")
    data = _decode_input(s, i)
    return None if data is None else _encode_output(data, o)


@register("TO_BYTES", [STRING, STRING], BYTES)
def to_bytes(s, enc):
    e = enc.lower()
    if e not in _ENCODINGS:
        raise EvalError("Supported encoding types are: hex, utf8, ascii and base64")
    return _decode_input(s, e)


@register("FROM_BYTES", [BYTES, STRING], STRING)
def from_bytes(b, enc):
    e = enc.lower()
    if e not in _ENCODINGS:
        raise EvalError("Supported encoding types are: hex, utf8, ascii and base64")
    return _encode_output(b, e)


# ------------------------------------------------------------------ json
def _json_path(path: str) -> list:
    if not path.startswith("$"):
        raise EvalError(f"Invalid JSON path: {path}")
    tokens = re.findall(r"\.([^.\[]+)|\[(\d+)\]|\[['\"]([^'\"]+)['\"]\]", path[1:])
    out: list = []
    for name, idx, quoted in tokens:
        out.append(int(idx) if idx else (name or quoted))
    return out


@register("EXTRACTJSONFIELD", [STRING, STRING], STRING)
def extract_json_field(text, path):
    try:
        node = json.loads(text)
    except ValueError:
        return None
    for step in _json_path(path):
        if isinstance(step, int) and isinstance(node, list) and step < len(node):
            node = node[step]
        elif isinstance(step, str) and isinstance(node, dict) and step in node:
            node = node[step]
        else:
            return None
    if node is None:
        return None
    if isinstance(node, str):
        return node
    return json.dumps(node, separators=(",", ":"))


@register("IS_JSON_STRING", [STRING], BOOLEAN, null_safe=False)
def is_json_string(text):
    if text is None:
        return False
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


@register("JSON_ARRAY_LENGTH", [STRING], INTEGER)
def json_array_length(text):
    try:
        node = json.loads(text)
    except ValueError:
        return None
    return len(node) if isinstance(node, list) else None


@register("UUID", [], STRING)
def uuid_():
    return str(uuid.uuid4())


@register("SPLIT_TO_MAP", [STRING, STRING, STRING], MapType(STRING, STRING))
def split_to_map(s, entry_delim, kv_delim):
    if not entry_delim or not kv_delim or entry_delim == kv_delim:
        return None
    out = {}
    for entry in s.split(entry_delim):
        if kv_delim in entry:
            k, v = entry.split(kv_delim, 1)
            out[k] = v
    return out


@register("ELT", [INTEGER, STRING], STRING, variadic=True, null_safe=False, deterministic=True)
def elt(n, *values):
    if n is None or n < 1 or n > len(values):
        return None
    return values[n - 1]


@register("FIELD", [STRING, STRING], INTEGER, variadic=True, null_safe=False, deterministic=True)
def field(s, *values):
    if s is None:
        return 0
    for i, v in enumerate(values):
        if v == s:
            return i + 1
    return 0


def _to_json_value(v):
    if isinstance(v, dict):
        return {str(k): _to_json_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_to_json_value(x) for x in v]
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, dt.datetime):
        return V.format_timestamp(v)
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, dt.time):
        return V.format_time(v)
    if isinstance(v, Decimal):
        return float(v)
    return v


@register("TO_JSON_STRING", ["ANY"], STRING, null_safe=False)
def to_json_string(v):
    return json.dumps(_to_json_value(v), separators=(",", ":"), ensure_ascii=False)


@register("JSON_KEYS", [STRING], ArrayType(STRING))
def json_keys(text):
    try:
        node = json.loads(text)
    except ValueError:
        return None
    return list(node.keys()) if isinstance(node, dict) else None


@register("JSON_RECORDS", [STRING], MapType(STRING, STRING))
def json_records(text):
    try:
        node = json.loads(text)
    except ValueError:
        return None
    if not isinstance(node, dict):
        return None
    return {k: json.dumps(v, separators=(",", ":")) for k, v in node.items()}


@register("JSON_ITEMS", [STRING], ArrayType(STRING))
def json_items(text):
    try:
        node = json.loads(text)
    except ValueError:
        return None
    if not isinstance(node, list):
        return None
    return [json.dumps(v, separators=(",", ":")) for v in node]


@register("MD5", [STRING], STRING)
def md5(s):
    return hashlib.md5(s.encode("utf-8")).hexdigest()


_JSON = json.JSONDecoder()


@register("JSON_ARRAY_CONTAINS", [STRING, "ANY"], BOOLEAN, null_safe=False)
def json_array_contains(text, value):
    """Whether a JSON array holds `value`, read element by element as ksqlDB's streaming parser does (text
    past a match is not looked at; a malformed array is false): integers match INT or BIGINT values,
    fractions DOUBLE values, null a NULL; anything else (a DECIMAL, a nested array) never matches."""
    if text is None:
        return None
    pos = _skip_ws(text, 0)
    if not text.startswith("[", pos):
        return False
    pos += 1
    while True:
        pos = _skip_ws(text, pos)
        if text.startswith("]", pos):
            return False
        try:
            item, pos = _JSON.raw_decode(text, pos)
        except ValueError:
            return False
        if _json_matches(item, value):
            return True
        pos = _skip_ws(text, pos)
        if text.startswith(",", pos):
            pos += 1
        elif not text.startswith("]", pos):
            return False


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _json_matches(item, value) -> bool:
    if item is None or value is None:
        return item is None and value is None
    if isinstance(value, bool) or isinstance(item, bool):
        return isinstance(value, bool) and isinstance(item, bool) and item == value
    if isinstance(value, int):
        return isinstance(item, int) and item == value
    if isinstance(value, float):
        return isinstance(item, float) and item == value
    if isinstance(value, str):
        return isinstance(item, str) and item == value
    return False


@register("JSON_CONCAT", [STRING], STRING, variadic=True, null_safe=False)
def json_concat(*texts):
    """Objects merged key by key (a later key wins); otherwise everything concatenated as one array, a
    non-array standing for an array of itself. A NULL or invalid input gives NULL (invalid ones logged)."""
    nodes = []
    for text in texts:
        if text is None or not text.strip():
            return None
        try:
            nodes.append(json.loads(text))
        except ValueError:
            raise EvalError(f"Invalid JSON format:{text}") from None
    if not nodes:
        return None
    if all(isinstance(n, dict) for n in nodes):
        merged: dict = {}
        for n in nodes:
            merged.update(n)
        result: object = merged
    else:
        result = [x for n in nodes for x in (n if isinstance(n, list) else [n])]
    return json.dumps(result, separators=(",", ":"), ensure_ascii=False)
