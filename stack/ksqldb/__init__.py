"""Embedded ksqlDB-compatible engine: parser (ksql.lark), planners, expression compiler, formats, the
operators that run plans over batches of records, their runtimes (in memory, Kafka), the REST server, and the
QTT conformance runner (qtt.py)."""
