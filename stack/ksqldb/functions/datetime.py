"""Date and time functions; Java DateTimeFormatter patterns are translated to Python here."""

from __future__ import annotations

import datetime as dt
import re
import time
from functools import lru_cache
from zoneinfo import ZoneInfo

from .. import values as V
from ..errors import EvalError
from ..types import BIGINT, DATE, INTEGER, STRING, TIME, TIMESTAMP
from .registry import register

_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


@lru_cache(maxsize=128)
def _tokens(pattern: str) -> tuple[tuple[str, str], ...]:
    """Split a Java pattern into (kind, text): kind 'lit' for literals, else the letter run."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "'":
            j = pattern.find("'", i + 1)
            if j < 0:
                raise EvalError(f"Invalid date/time format: {pattern}")
            out.append(("lit", "'" if j == i + 1 else pattern[i + 1 : j]))
            i = j + 1
        elif c.isalpha():
            j = i
            while j < len(pattern) and pattern[j] == c:
                j += 1
            out.append((c, pattern[i:j]))
            i = j
        elif c in "[]":  # an optional section, as in Java's DateTimeFormatter
            out.append((c, c))
            i += 1
        else:
            out.append(("lit", c))
            i += 1
    return tuple(out)


def _zone(tz: str | None) -> dt.tzinfo:
    if tz is None:
        return dt.UTC
    try:
        return ZoneInfo(tz)
    except Exception:
        m = re.fullmatch(r"(?:UTC|GMT)?([+-])(\d{1,2}):?(\d{2})?", tz)
        if m:
            off = dt.timedelta(hours=int(m.group(2)), minutes=int(m.group(3) or 0))
            return dt.timezone(-off if m.group(1) == "-" else off)
        raise EvalError(f"Unknown time-zone ID: {tz}") from None


def format_java(value: dt.datetime, pattern: str) -> str:
    out = []
    for kind, text in _tokens(pattern):
        n = len(text)
        if kind == "lit":
            out.append(text)
        elif kind in "[]":
            continue  # a formatter prints optional sections: every field is there
        elif kind in "yu":
            out.append(f"{value.year % 100:02d}" if n == 2 else f"{value.year:0{n}d}")
        elif kind in "ML":
            out.append(
                _MONTHS[value.month - 1][:3]
                if n == 3
                else _MONTHS[value.month - 1]
                if n >= 4
                else f"{value.month:0{n}d}"
            )
        elif kind == "d":
            out.append(f"{value.day:0{n}d}")
        elif kind == "D":
            out.append(f"{value.timetuple().tm_yday:0{n}d}")
        elif kind == "H":
            out.append(f"{value.hour:0{n}d}")
        elif kind == "h":
            out.append(f"{(value.hour % 12) or 12:0{n}d}")
        elif kind == "k":
            out.append(f"{value.hour or 24:0{n}d}")
        elif kind == "m":
            out.append(f"{value.minute:0{n}d}")
        elif kind == "s":
            out.append(f"{value.second:0{n}d}")
        elif kind == "S":
            out.append(f"{value.microsecond:06d}{'0' * max(0, n - 6)}"[:n])
        elif kind == "a":
            out.append("AM" if value.hour < 12 else "PM")
        elif kind == "E":
            out.append(_DAYS[value.weekday()][:3] if n <= 3 else _DAYS[value.weekday()])
        elif kind in "XxZ":
            off = value.utcoffset() or dt.timedelta(0)
            if kind == "X" and off == dt.timedelta(0):
                out.append("Z")
                continue
            total = int(off.total_seconds() // 60)
            sign = "+" if total >= 0 else "-"
            hh, mm = divmod(abs(total), 60)
            out.append(f"{sign}{hh:02d}:{mm:02d}" if n == 3 or kind == "Z" and n == 5 else f"{sign}{hh:02d}{mm:02d}")
        elif kind in "zV":
            out.append(str(value.tzname() or "UTC"))
        else:
            raise EvalError(f"Unsupported date/time pattern letter '{kind}' in: {pattern}")
    return "".join(out)


@lru_cache(maxsize=128)
def pattern_regex(pattern: str) -> re.Pattern:
    """The regular expression `parse_java` matches text with for a Java date/time pattern: one named group
    per field (Y/y year, M month number, Mn month name, d, D, H, h, m, s, S fraction, a, z offset, zn zone
    name); optional sections `[...]` become optional groups. The vectorized path runs the same regex column-wise."""
    parts = []
    for kind, text in _tokens(pattern):
        n = len(text)
        if kind == "lit":
            parts.append(re.escape(text))
        elif kind in "[]":
            parts.append("(?:" if kind == "[" else ")?")
        elif kind in "yu":
            parts.append(r"(?P<y>\d{2})" if n == 2 else r"(?P<Y>[+-]?\d{4,9})")
        elif kind in "ML":
            parts.append(r"(?P<Mn>[A-Za-z]+)" if n >= 3 else r"(?P<M>\d{1,2})" if n == 1 else r"(?P<M>\d{2})")
        elif kind in "dDHhkms":
            grp = {"d": "d", "D": "D", "H": "H", "h": "h", "k": "H", "m": "m", "s": "s"}[kind]
            parts.append(
                rf"(?P<{grp}>\d{{1,{max(n, 2) if kind != 'D' else 3}}})" if n == 1 else rf"(?P<{grp}>\d{{{n}}})"
            )
        elif kind == "S":
            parts.append(rf"(?P<S>\d{{{n}}})")
        elif kind == "a":
            parts.append(r"(?P<a>AM|PM|am|pm)")
        elif kind == "E":
            parts.append(r"[A-Za-z]+")
        elif kind in "XxZ":
            parts.append(r"(?P<z>Z|[+-]\d{2}:?\d{2}|[+-]\d{2})")
        elif kind in "zV":
            parts.append(r"(?P<zn>[A-Za-z_/+\-0-9]+)")
        else:
            raise EvalError(f"Unsupported date/time pattern letter '{kind}' in: {pattern}")
    return re.compile("".join(parts))


@lru_cache(maxsize=8192)
def parse_java(text: str, pattern: str, tz: str | None = None) -> dt.datetime:
    """Parse with a Java pattern; the result is naive UTC (converted from `tz` or a parsed offset)."""
    m = pattern_regex(pattern).match(text)  # like ksqlDB, trailing text after the pattern is ignored
    if not m:
        raise EvalError(f"Failed to parse date/time '{text}' with pattern '{pattern}'")
    g = m.groupdict()
    year = int(g["Y"]) if g.get("Y") else (2000 + int(g["y"]) if g.get("y") else 1970)
    if g.get("Mn"):
        names = [mn[: len(g["Mn"])].lower() for mn in _MONTHS]
        month = names.index(g["Mn"].lower()) + 1 if g["Mn"].lower() in names else 1
    else:
        month = int(g["M"]) if g.get("M") else 1
    day = int(g["d"]) if g.get("d") else 1
    hour = int(g["H"]) if g.get("H") else 0
    if g.get("h"):
        hour = int(g["h"]) % 12 + (12 if (g.get("a") or "").upper() == "PM" else 0)
    minute = int(g["m"]) if g.get("m") else 0
    second = int(g["s"]) if g.get("s") else 0
    micros = int((g["S"] + "000000")[:6]) if g.get("S") else 0
    try:
        value = dt.datetime(year, month, day, hour, minute, second, micros)
        if g.get("D"):
            value = dt.datetime(year, 1, 1, hour, minute, second, micros) + dt.timedelta(days=int(g["D"]) - 1)
    except ValueError as e:
        raise EvalError(f"Failed to parse date/time '{text}' with pattern '{pattern}': {e}") from None
    zone: dt.tzinfo
    if g.get("z"):
        z = g["z"]
        if z == "Z":
            zone = dt.UTC
        else:
            digits = z[1:].replace(":", "")
            off = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
            zone = dt.timezone(-off if z[0] == "-" else off)
    elif g.get("zn"):
        zone = _zone(g["zn"])
    else:
        zone = _zone(tz)
    try:
        return value.replace(tzinfo=zone).astimezone(dt.UTC).replace(tzinfo=None)
    except OverflowError:  # Java reaches year 999999999; Python's datetime stops at 9999: say so, never wrap
        raise EvalError(
            f"Failed to parse date/time '{text}' with pattern '{pattern}': outside the supported years 1 to 9999 in UTC"
        ) from None


def _aware(ts: dt.datetime, tz: str | None) -> dt.datetime:
    return ts.replace(tzinfo=dt.UTC).astimezone(_zone(tz))


@register("PARSE_DATE", [STRING, STRING], DATE, deterministic=True)
def parse_date(text, pattern):
    return parse_java(text, pattern).date()


@register("FORMAT_DATE", [DATE, STRING], STRING, deterministic=True)
def format_date(d, pattern):
    return format_java(dt.datetime(d.year, d.month, d.day), pattern)


@register("PARSE_TIME", [STRING, STRING], TIME, deterministic=True)
def parse_time(text, pattern):
    return parse_java(text, pattern).time()


@register("FORMAT_TIME", [TIME, STRING], STRING, deterministic=True)
def format_time(t, pattern):
    return format_java(dt.datetime.combine(dt.date(1970, 1, 1), t), pattern)


@register("PARSE_TIMESTAMP", [STRING, STRING], TIMESTAMP, deterministic=True)
@register("PARSE_TIMESTAMP", [STRING, STRING, STRING], TIMESTAMP, deterministic=True)
def parse_timestamp(text, pattern, tz=None):
    return parse_java(text, pattern, tz)


@register("FORMAT_TIMESTAMP", [TIMESTAMP, STRING], STRING, deterministic=True)
@register("FORMAT_TIMESTAMP", [TIMESTAMP, STRING, STRING], STRING, deterministic=True)
def format_timestamp(ts, pattern, tz=None):
    return format_java(_aware(ts, tz), pattern)


@register("STRINGTOTIMESTAMP", [STRING, STRING], BIGINT, deterministic=True)
@register("STRINGTOTIMESTAMP", [STRING, STRING, STRING], BIGINT, deterministic=True)
def string_to_timestamp(text, pattern, tz=None):
    return V.timestamp_to_millis(parse_java(text, pattern, tz))


@register("TIMESTAMPTOSTRING", [BIGINT, STRING], STRING, deterministic=True)
@register("TIMESTAMPTOSTRING", [BIGINT, STRING, STRING], STRING, deterministic=True)
def timestamp_to_string(ms, pattern, tz=None):
    return format_java(_aware(V.millis_to_timestamp(ms), tz), pattern)


@register("STRINGTODATE", [STRING, STRING], INTEGER)
def string_to_date(text, pattern):
    return V.date_to_days(parse_java(text, pattern).date())


@register("DATETOSTRING", [INTEGER, STRING], STRING)
def date_to_string(days, pattern):
    d = V.days_to_date(days)
    return format_java(dt.datetime(d.year, d.month, d.day), pattern)


@register("UNIX_TIMESTAMP", [], BIGINT)
def unix_timestamp_now():
    return int(time.time() * 1000)


@register("UNIX_TIMESTAMP", [TIMESTAMP], BIGINT)
def unix_timestamp(ts):
    return V.timestamp_to_millis(ts)


@register("UNIX_DATE", [], INTEGER)
def unix_date_now():
    return V.date_to_days(dt.datetime.now(dt.UTC).date())


@register("UNIX_DATE", [DATE], INTEGER)
def unix_date(d):
    return V.date_to_days(d)


@register("FROM_UNIXTIME", [BIGINT], TIMESTAMP)
def from_unixtime(ms):
    return V.millis_to_timestamp(ms)


@register("FROM_DAYS", [INTEGER], DATE)
def from_days(days):
    return V.days_to_date(days)


@register("CONVERT_TZ", [TIMESTAMP, STRING, STRING], TIMESTAMP)
def convert_tz(ts, from_tz, to_tz):
    aware = ts.replace(tzinfo=_zone(from_tz)).astimezone(_zone(to_tz))
    return aware.replace(tzinfo=None)


# ------------------------------------------------------------------ interval arithmetic
TIME_UNITS = {
    "MILLISECOND": 1,
    "MILLISECONDS": 1,
    "SECOND": 1000,
    "SECONDS": 1000,
    "MINUTE": 60_000,
    "MINUTES": 60_000,
    "HOUR": 3_600_000,
    "HOURS": 3_600_000,
    "DAY": 86_400_000,
    "DAYS": 86_400_000,
}
UNIT_FUNCTIONS = {"DATEADD", "DATESUB", "TIMEADD", "TIMESUB", "TIMESTAMPADD", "TIMESTAMPSUB"}


def _unit_ms(unit: str) -> int:
    ms = TIME_UNITS.get(unit.upper())
    if ms is None:
        raise EvalError(f"Unknown time unit: {unit}")
    return ms


def _add_timestamp(unit, n, ts, sign):
    return ts + dt.timedelta(milliseconds=sign * n * _unit_ms(unit))


register("TIMESTAMPADD", [STRING, BIGINT, TIMESTAMP], TIMESTAMP)(lambda u, n, ts: _add_timestamp(u, n, ts, 1))
register("TIMESTAMPSUB", [STRING, BIGINT, TIMESTAMP], TIMESTAMP)(lambda u, n, ts: _add_timestamp(u, n, ts, -1))


def _add_date(unit, n, d, sign):
    ms = _unit_ms(unit)
    if ms < 86_400_000:
        raise EvalError(f"Cannot add {unit} to a DATE: only DAYS is supported")
    return d + dt.timedelta(days=sign * n * (ms // 86_400_000))


register("DATEADD", [STRING, INTEGER, DATE], DATE)(lambda u, n, d: _add_date(u, n, d, 1))
register("DATESUB", [STRING, INTEGER, DATE], DATE)(lambda u, n, d: _add_date(u, n, d, -1))


def _add_time(unit, n, t, sign):
    ms = _unit_ms(unit)
    if ms >= 86_400_000:
        raise EvalError(f"Cannot add {unit} to a TIME")
    total = (V.time_to_millis(t) + sign * n * ms) % 86_400_000
    return V.millis_to_time(total)


register("TIMEADD", [STRING, INTEGER, TIME], TIME)(lambda u, n, t: _add_time(u, n, t, 1))
register("TIMESUB", [STRING, INTEGER, TIME], TIME)(lambda u, n, t: _add_time(u, n, t, -1))
