-- Payments with defaults where producers left a field empty: unknown users and amounts.
CREATE STREAM IF NOT EXISTS creditcardfraud_enriched WITH (
  KAFKA_TOPIC = 'creditcardfraud_enriched',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'JSON',
  PARTITIONS = 4
) AS SELECT
  PAYMENT_ID,
  IFNULL(`USER`, 'unknown') AS `USER`,
  IFNULL(TIME, 0.0) AS TIME,
  V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12, V13, V14, V15, V16, V17, V18, V19, V20, V21, V22, V23, V24, V25, V26, V27, V28,
  IFNULL(AMOUNT, 0.0) AS AMOUNT
FROM creditcardfraud_source
EMIT CHANGES;
