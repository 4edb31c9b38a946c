-- Payments with what is known about their card holder (a stream-table join: each payment meets the
-- user's row as it stands when the payment happens). Payments of unknown users keep NULL user columns.
-- Re-keyed by user, as ksqlDB keys a join's result by the join column; the payment id stays a value.
CREATE STREAM IF NOT EXISTS creditcardfraud_payments_with_users WITH (
  KAFKA_TOPIC = 'creditcardfraud_payments_with_users',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'JSON',
  PARTITIONS = 4
) AS SELECT
  p.`USER` AS `USER`,
  p.PAYMENT_ID AS PAYMENT_ID,
  p.AMOUNT AS AMOUNT,
  u.COUNTRY AS COUNTRY,
  u.CARD_TYPE AS CARD_TYPE,
  u.CREDIT_LIMIT AS CREDIT_LIMIT,
  p.AMOUNT / u.CREDIT_LIMIT AS SHARE_OF_LIMIT
FROM creditcardfraud_enriched p
LEFT JOIN creditcardfraud_users u ON p.`USER` = u.USER_ID
EMIT CHANGES;
