"""The topics every layer agrees on, and the one event they carry between layers (`ModelUpdate`).

Producers, the ksqlDB statements, the workers, the registry, Connect and the live view all name the
flagship pipeline's topics through these constants (the statements in `ksql/` spell them in SQL).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

#: Raw payments, as producers write them (DELIMITED or JSON).
SOURCE_TOPIC = "creditcardfraud_source"
#: Labels, known days after their payments: key = payment id; JSON with LABEL and LABELLED_AT.
LABELS_TOPIC = "creditcardfraud_labels"
#: The card holders (a ksqlDB TABLE).
USERS_TOPIC = "creditcardfraud_users"
#: What the workers score: the statements' output, Avro through Schema Registry.
PREPROCESSED_TOPIC = "creditcardfraud_preprocessed_avro"
#: One score per payment, Avro; and the scores of a shadow model beside production.
SCORES_TOPIC = "fraud-scores"
SHADOW_SCORES_TOPIC = "fraud-scores-shadow"
#: Every stage change of the model registry, one partition so that workers see a model's changes in order.
MODEL_UPDATES_TOPIC = "model-updates"
#: The second pipeline, on the Fraud Detection Handbook's simulated card transactions (`ksql/handbook/`):
#: transactions (JSON), their labels (as LABELS_TOPIC's), the served features (Avro) and the scores; its
#: models are registered under HANDBOOK_MODEL, apart from the flagship's.
HANDBOOK_TRANSACTIONS_TOPIC = "handbook_transactions"
HANDBOOK_LABELS_TOPIC = "handbook_labels"
HANDBOOK_FEATURES_TOPIC = "handbook_features"
HANDBOOK_SCORES_TOPIC = "handbook-scores"
HANDBOOK_MODEL = "handbook"
#: Records that could not be read go to `<topic>-dlq`, the reason in their headers.
DLQ_SUFFIX = "-dlq"


def dead_letter_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


@dataclass(frozen=True)
class ModelUpdate:
    """A registry stage change, as published to MODEL_UPDATES_TOPIC (key: the model name; value: this, as JSON)."""

    model: str
    version: int
    stage: str
    previous: int | None = None
    previous_stage: str | None = None
    threshold_version: int | None = None
    at: str | None = None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes | None) -> ModelUpdate:
        """The event in `data`; ValueError when it is not a JSON object with a model, a version and a stage."""
        try:
            event = json.loads(data or b"")
            return cls(
                model=str(event["model"]),
                version=int(event["version"]),
                stage=str(event["stage"]),
                previous=event.get("previous"),
                previous_stage=event.get("previous_stage"),
                threshold_version=event.get("threshold_version"),
                at=event.get("at"),
            )
        except (TypeError, KeyError, ValueError, AttributeError) as error:
            raise ValueError(f"not a model update: {error}") from None
