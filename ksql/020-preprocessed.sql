-- What the model sees: labelled payments, keyed by payment id so every score traces back to its
-- payment, Avro with the schema in Schema Registry. User and the raw timestamp text stay behind.
CREATE STREAM IF NOT EXISTS creditcardfraud_preprocessed_avro WITH (
  KAFKA_TOPIC = 'creditcardfraud_preprocessed_avro',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'AVRO',
  PARTITIONS = 4
) AS SELECT
  PAYMENT_ID,
  TIME,
  V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12, V13, V14, V15, V16, V17, V18, V19, V20, V21, V22, V23, V24, V25, V26, V27, V28,
  AMOUNT,
  CLASS
FROM creditcardfraud_source
WHERE CLASS IS NOT NULL
EMIT CHANGES;
