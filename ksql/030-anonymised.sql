-- For exploration and sharing: every column, with the user's name masked but for its first two letters.
CREATE STREAM IF NOT EXISTS creditcardfraud_anonymised WITH (
  KAFKA_TOPIC = 'creditcardfraud_anonymised',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'JSON',
  PARTITIONS = 4
) AS SELECT
  PAYMENT_ID,
  `TIMESTAMP`,
  MASK_LEFT(`USER`, 2) AS `USER`,
  TIME,
  V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12, V13, V14, V15, V16, V17, V18, V19, V20, V21, V22, V23, V24, V25, V26, V27, V28,
  AMOUNT
FROM creditcardfraud_source
EMIT CHANGES;
