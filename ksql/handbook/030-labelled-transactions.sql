-- Each label beside its transaction's terminal and time, as the label arrives (a stream-stream join: a
-- label names only its transaction). The result's time is the label's, when it became known. A label known
-- before its own transaction is impossible and left out, and so is one that is not 0 or 1; a label more
-- than 30 days after its transaction finds no transaction in the join window and is not counted.
CREATE STREAM IF NOT EXISTS handbook_labelled_transactions WITH (
  KAFKA_TOPIC = 'handbook_labelled_transactions',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'AVRO',
  PARTITIONS = 4
) AS SELECT
  l.PAYMENT_ID AS PAYMENT_ID,
  t.TERMINAL_ID AS TERMINAL_ID,
  t.ROWTIME AS TX_TIME,
  l.ROWTIME AS KNOWN_AT,
  l.LABEL AS LABEL
FROM handbook_labels l
JOIN handbook_transactions t WITHIN 30 DAYS ON l.PAYMENT_ID = t.TRANSACTION_ID
WHERE (l.LABEL = 0 OR l.LABEL = 1) AND l.ROWTIME >= t.ROWTIME
EMIT CHANGES;
