"""Turn a connector's raw config (strings, `${env:NAME}` placeholders) into checked, typed settings.

Connect keeps the raw config (GET /connectors/{name}/config returns the placeholders) and resolves
the placeholders only when a task starts, through Kafka's EnvVarConfigProvider. This module does the
same: `resolve` fills `${env:NAME}` from the environment, `validate` reports errors per key (the shape
the validation endpoint needs), and `SinkSettings.parse` gives the typed view a task runs with.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stack.connect import definitions as d
from stack.connect.definitions import KEYS, REQUIRED, ConfigKey

_PLACEHOLDER = re.compile(r"\$\{env:([^}:]*)(?::[^}]*)?\}")
_CLASS_ALIASES = {"S3SinkConnector": d.S3_SINK_CLASS, "S3Sink": d.S3_SINK_CLASS}


class ConfigError(ValueError):
    """A connector config with errors; `errors` maps each bad key to its messages."""

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        self.errors = {key: list(messages) for key, messages in errors.items() if messages}
        count = sum(len(messages) for messages in self.errors.values())
        lines = [
            f"Invalid value for configuration {key}: {message}"
            for key, messages in self.errors.items()
            for message in messages
        ]
        super().__init__(
            f"Connector configuration is invalid and contains the following {count} error(s):\n" + "\n".join(lines)
        )


def connector_class(value: str) -> str:
    """The full class name for a class name or one of Connect's aliases for it."""
    return _CLASS_ALIASES.get(value, value)


def resolve(
    raw: Mapping[str, str], environ: Mapping[str, str] = os.environ
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Fill `${env:NAME}` placeholders; a missing variable is an error on the key that names it."""
    resolved: dict[str, str] = {}
    errors: dict[str, list[str]] = {}
    for key, value in raw.items():
        text = str(value)
        missing = [name for name in _PLACEHOLDER.findall(text) if name not in environ]
        if missing:
            errors[key] = [
                f"environment variable {name} is not set (referenced as ${{env:{name}}})" for name in missing
            ]
        resolved[key] = _PLACEHOLDER.sub(lambda match: environ.get(match.group(1), match.group(0)), text)
    return resolved, errors


def _parse(key: ConfigKey, text: str) -> Any:
    if key.type in ("INT", "LONG"):
        try:
            return int(text)
        except ValueError:
            raise ValueError(
                f"Invalid value {text} for configuration {key.name}: Not a number of type {key.type}"
            ) from None
    if key.type == "BOOLEAN":
        if text.lower() not in ("true", "false"):
            raise ValueError(
                f"Invalid value {text} for configuration {key.name}: Expected value to be either true or false"
            )
        return text.lower() == "true"
    if key.type == "LIST":
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def typed_values(config: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Every known key's typed value (the default when absent) and the errors found per key."""
    values: dict[str, Any] = {}
    errors: dict[str, list[str]] = {key.name: [] for key in KEYS}
    for key in KEYS:
        given = config.get(key.name)
        if given is None or (given == "" and key.required):
            values[key.name] = None if key.required else key.default
            if key.required:
                errors[key.name].append(f'Missing required configuration "{key.name}" which has no default value.')
            continue
        try:
            value = _parse(key, str(given))
        except ValueError as exc:
            errors[key.name].append(str(exc))
            values[key.name] = None
            continue
        if key.name == "connector.class":
            value = connector_class(value)
        if key.choices and value not in key.choices:
            kind = "Class" if key.type == "CLASS" else "Value"
            errors[key.name].append(f"{kind} {value} is not supported; expected one of: {', '.join(key.choices)}")
        elif key.check is not None and (message := key.check(value)) is not None:
            errors[key.name].append(f"Invalid value {value} for configuration {key.name}: {message}")
        values[key.name] = value
    return values, errors


def validate(
    raw: Mapping[str, str], environ: Mapping[str, str] = os.environ, defaults: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Typed values and per-key errors of a raw connector config, cross-key rules included.

    `defaults` are the worker's own settings (its converters and their Schema Registry URL), which
    apply when the connector does not set them, as in Connect.
    """
    resolved, env_errors = resolve(raw, environ)
    config = {**(defaults or {}), **resolved}
    values, errors = typed_values(config)
    for key, messages in env_errors.items():
        errors.setdefault(key, []).extend(messages)

    def fail(key: str, message: str) -> None:
        errors.setdefault(key, []).append(message)

    if values["connector.class"] and values["connector.class"] != d.S3_SINK_CLASS:
        fail(
            "connector.class",
            f"Failed to find any class that implements Connector and which name matches {values['connector.class']}",
        )
    topics, regex = values["topics"] or [], values["topics.regex"]
    if bool(topics) == bool(regex):
        message = (
            "Must configure one of topics or topics.regex"
            if not topics
            else "topics and topics.regex are mutually exclusive options"
        )
        fail("topics", message)
        fail("topics.regex", message)
    dlq = values["errors.deadletterqueue.topic.name"]
    if dlq and dlq in topics:
        fail(
            "errors.deadletterqueue.topic.name",
            f"The DLQ topic '{dlq}' may not be included in the list of topics to consume",
        )
    if values["partitioner.class"] == d.TIME_BASED_PARTITIONER:
        if not values["path.format"]:
            fail("path.format", "Path format cannot be empty for the TimeBasedPartitioner.")
        if values["partition.duration.ms"] is not None and values["partition.duration.ms"] <= 0:
            fail(
                "partition.duration.ms",
                "Partition duration needs to be a positive number for the TimeBasedPartitioner.",
            )
    if values["partitioner.class"] in (d.TIME_BASED_PARTITIONER, d.HOURLY_PARTITIONER, d.DAILY_PARTITIONER):
        for name in ("locale", "timezone"):
            if not values[name]:
                fail(
                    name,
                    f"{name.capitalize()} cannot be empty for the {values['partitioner.class'].rsplit('.', 1)[1]}.",
                )
    if values["partitioner.class"] == d.FIELD_PARTITIONER and not values["partition.field.name"]:
        fail("partition.field.name", "At least one field name is required for the FieldPartitioner.")
    if values["rotate.schedule.interval.ms"] and values["rotate.schedule.interval.ms"] > 0 and not values["timezone"]:
        fail("timezone", "Timezone cannot be empty when rotate.schedule.interval.ms is set.")
    for side in ("key", "value"):
        if values[f"{side}.converter"] == d.AVRO_CONVERTER and not config.get(f"{side}.converter.schema.registry.url"):
            fail(
                f"{side}.converter",
                f'Missing required configuration "{side}.converter.schema.registry.url" for the AvroConverter.',
            )
    _check_timezone(values, fail)
    return values, errors


def _check_timezone(values: Mapping[str, Any], fail: Callable[[str, str], None]) -> None:
    if values["timezone"]:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(values["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            fail("timezone", f"Invalid timezone {values['timezone']}")


def converter_settings(config: Mapping[str, str], side: str) -> dict[str, str]:
    """The `<side>.converter.*` settings with the prefix removed, as Connect hands them to a converter."""
    prefix = f"{side}.converter."
    return {key[len(prefix) :]: value for key, value in config.items() if key.startswith(prefix)}


@dataclass(frozen=True)
class SinkSettings:
    """A checked S3 sink config with the placeholders resolved: what a task runs with."""

    name: str
    values: dict[str, Any]
    raw: dict[str, str]  # resolved strings, worker defaults included (for converter settings)

    @classmethod
    def parse(
        cls, raw: Mapping[str, str], environ: Mapping[str, str] = os.environ, defaults: Mapping[str, str] | None = None
    ) -> SinkSettings:
        values, errors = validate(raw, environ, defaults)
        if any(errors.values()):
            raise ConfigError(errors)
        resolved, _ = resolve(raw, environ)
        return cls(name=values["name"], values=values, raw={**(defaults or {}), **resolved})

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def converter(self, side: str) -> tuple[str, dict[str, str]]:
        return self.values[f"{side}.converter"], converter_settings(self.raw, side)


def default_of(key: ConfigKey) -> str | None:
    """The default as Connect's validation shows it: a string, or null when there is none."""
    if key.default is REQUIRED or key.default is None:
        return None
    if isinstance(key.default, bool):
        return str(key.default).lower()
    return str(key.default)
