"""GET /metrics: the server's state in Prometheus's text format, under ksqlDB's own metric names.

ksqlDB reports through JMX; its metrics reach Prometheus through the JMX exporter, which names an attribute
`<domain>_<type>_<attribute>` (`ksql_ksql_engine_query_stats_num_persistent_queries` for `num-persistent-queries`
of `type=ksql-engine-query-stats`). The same names are used here, so that dashboards built for ksqlDB read
this server. Counters replace ksqlDB's per-second rates (Prometheus derives rates from counters with `rate()`).
Values are read from the engine when scraped, never kept twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

ENGINE = "ksql_ksql_engine_query_stats"
QUERIES = "ksql_ksql_queries"


class KsqlCollector:
    """Engine-wide and per-query metrics of one `KsqlService` (persistent queries, push queries, processing log)."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        service = self.service
        queries = dict(service.engine.queries)
        runners = dict(service.runtime.runners)
        errors: Counter[str] = getattr(service.engine.processing_log, "errors_by_query", Counter())
        states = Counter(str(q.state) for q in queries.values())
        consumed = {qid: int(q.processed) for qid, q in queries.items()}
        produced = {qid: runners[qid].produced for qid in queries if qid in runners}

        yield GaugeMetricFamily(f"{ENGINE}_liveness_indicator", "1 while the server is up and reporting", value=1)
        yield GaugeMetricFamily(f"{ENGINE}_num_persistent_queries", "Persistent queries", value=len(queries))
        yield GaugeMetricFamily(
            f"{ENGINE}_num_active_queries",
            "Persistent and push queries",
            value=len(queries) + len(service.push_queries),
        )
        for state in ("RUNNING", "ERROR"):
            yield GaugeMetricFamily(f"{ENGINE}_{state}_queries", f"Queries in {state} state", value=states[state])
        yield CounterMetricFamily(
            f"{ENGINE}_messages_consumed", "Messages consumed by all persistent queries", value=sum(consumed.values())
        )
        yield CounterMetricFamily(
            f"{ENGINE}_messages_produced", "Messages produced by all persistent queries", value=sum(produced.values())
        )
        yield CounterMetricFamily(
            f"{ENGINE}_processing_errors", "Processing log entries of all queries", value=sum(errors.values())
        )
        status = GaugeMetricFamily(
            f"{QUERIES}_query_status", "1 for each query's status", labels=["query_id", "status"]
        )
        by_query = {
            "messages_consumed": CounterMetricFamily(
                f"{QUERIES}_messages_consumed", "Messages consumed by the query", labels=["query_id"]
            ),
            "messages_produced": CounterMetricFamily(
                f"{QUERIES}_messages_produced", "Messages the query produced to its sink", labels=["query_id"]
            ),
            "processing_errors": CounterMetricFamily(
                f"{QUERIES}_processing_errors", "The query's processing log entries", labels=["query_id"]
            ),
        }
        for qid, query in queries.items():
            status.add_metric([qid, str(query.state)], 1)
            by_query["messages_consumed"].add_metric([qid], consumed[qid])
            by_query["messages_produced"].add_metric([qid], produced.get(qid, 0))
            by_query["processing_errors"].add_metric([qid], errors.get(qid, 0))
        yield status
        yield from by_query.values()


def metrics_registry(service: Any) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(KsqlCollector(service))  # type: ignore[arg-type]
    return registry
