"""Live quality as the workers see it: the statements' pull-query table, read into Prometheus gauges.

`ksql/090-live-quality.sql` joins every scored payment with its label once the label is known and
counts, per model version, the outcomes of the alerts at the threshold each payment was scored with. A
worker reads that table with a pull query every `quality_seconds` and exports the counts, precision and
recall, so that a dashboard shows them beside the scoring metrics. Every worker exports the same values
(the table is global): aggregate them with `max by (model, version)`, not `sum`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from fraudstream.credentials import Credentials
from streams import metrics

logger = logging.getLogger(__name__)

LIVE_QUALITY_TABLE = "CREDITCARDFRAUD_LIVE_QUALITY"
OUTCOMES = ("TRUE_POSITIVES", "FALSE_POSITIVES", "FALSE_NEGATIVES", "TRUE_NEGATIVES")


@dataclass(frozen=True)
class Quality:
    """One model version's labelled payments, by outcome at the production threshold."""

    model: str
    version: int
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int

    @property
    def labelled(self) -> int:
        return self.true_positives + self.false_positives + self.false_negatives + self.true_negatives

    @property
    def precision(self) -> float | None:
        """Of the labelled alerts, the share that were fraud (None before any alert is labelled)."""
        alerts = self.true_positives + self.false_positives
        return self.true_positives / alerts if alerts else None

    @property
    def recall(self) -> float | None:
        """Of the labelled frauds, the share that raised an alert (None before any fraud is labelled)."""
        frauds = self.true_positives + self.false_negatives
        return self.true_positives / frauds if frauds else None


class QualityUnavailable(RuntimeError):
    """The table cannot be read (ksqlDB unreachable, or the statements that define it not applied)."""


def read_live_quality(ksqldb_url: str, table: str = LIVE_QUALITY_TABLE, timeout: float = 10.0) -> list[Quality]:
    """Every row of the live-quality table, through ksqlDB's REST API (`POST /query`, a pull query)."""
    sql = f"SELECT MODEL_NAME, MODEL_VERSION, {', '.join(OUTCOMES)} FROM {table};"
    credentials = Credentials.from_env()
    try:
        response = httpx.post(
            f"{ksqldb_url.rstrip('/')}/query",
            json={"ksql": sql, "streamsProperties": {}},
            headers={"Accept": "application/vnd.ksql.v1+json"},
            timeout=timeout,
            auth=credentials.http_auth("ksqldb"),
            verify=credentials.http_verify(),
        )
    except httpx.HTTPError as error:
        raise QualityUnavailable(f"cannot reach ksqlDB at {ksqldb_url}: {error}") from None
    body = response.json()
    if response.status_code != 200:
        message = body.get("message", response.text) if isinstance(body, dict) else response.text
        raise QualityUnavailable(f"{table}: {message}")
    rows = [item["row"]["columns"] for item in body if isinstance(item, dict) and "row" in item]
    return [Quality(str(r[0]), int(r[1]), *(int(v or 0) for v in r[2:6])) for r in rows]


def publish(rows: list[Quality]) -> None:
    """Set the live-quality gauges to `rows` (a version no longer in the table is dropped)."""
    for gauge in (metrics.LIVE_LABELLED, metrics.LIVE_PRECISION, metrics.LIVE_RECALL):
        gauge.clear()
    for row in rows:
        labels = (row.model, str(row.version))
        for outcome, count in zip(
            OUTCOMES, (row.true_positives, row.false_positives, row.false_negatives, row.true_negatives)
        ):
            metrics.LIVE_LABELLED.labels(*labels, outcome.lower()).set(count)
        if row.precision is not None:
            metrics.LIVE_PRECISION.labels(*labels).set(row.precision)
        if row.recall is not None:
            metrics.LIVE_RECALL.labels(*labels).set(row.recall)
