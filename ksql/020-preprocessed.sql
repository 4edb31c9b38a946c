-- What the model sees: every payment, as it is known when it happens, keyed by payment id so that every
-- score traces back to its payment; Avro with the schema in Schema Registry. The model's inputs are this
-- stream's value columns except ID and EVENT_TIME (identity and event time, kept last, so that the
-- features landed in the lake, which keeps values only, can be joined with their labels at a cutoff).
-- HOUR_OF_DAY (UTC) replaces the raw Time counter, which only grows and says nothing about a payment.
CREATE STREAM IF NOT EXISTS creditcardfraud_preprocessed_avro WITH (
  KAFKA_TOPIC = 'creditcardfraud_preprocessed_avro',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'AVRO',
  PARTITIONS = 4
) AS SELECT
  PAYMENT_ID,
  CAST(TIMESTAMPTOSTRING(ROWTIME, 'H', 'UTC') AS DOUBLE) AS HOUR_OF_DAY,
  V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12, V13, V14, V15, V16, V17, V18, V19, V20, V21, V22, V23, V24, V25, V26, V27, V28,
  AMOUNT,
  AS_VALUE(PAYMENT_ID) AS ID,
  ROWTIME AS EVENT_TIME
FROM creditcardfraud_source
EMIT CHANGES;
