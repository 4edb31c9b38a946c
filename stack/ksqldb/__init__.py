"""Embedded ksqlDB-compatible engine: parser (ksql.lark), planner, expression compiler, formats,
executor over batches of records, and the QTT conformance runner (qtt.py)."""
