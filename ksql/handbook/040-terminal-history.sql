-- Each terminal's latest 200 labelled transactions, in the order their labels became known: when the
-- transaction happened, when its label was known, and whether it was a fraud. The features (060) count
-- those of the 30 days that end one label delay before the transaction they serve, known before it.
CREATE TABLE IF NOT EXISTS handbook_terminal_history WITH (
  KAFKA_TOPIC = 'handbook_terminal_history',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'AVRO',
  PARTITIONS = 4
) AS SELECT
  TERMINAL_ID,
  LATEST_BY_OFFSET(STRUCT(T := TX_TIME, KNOWN := KNOWN_AT, FRAUD := LABEL), 200) AS LABELLED
FROM handbook_labelled_transactions
GROUP BY TERMINAL_ID
EMIT CHANGES;
