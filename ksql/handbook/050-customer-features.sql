-- Each transaction with what it is on its own and its customer's behaviour before it (the history, 020):
-- how many transactions and what average amount in the last 1, 7 and 30 days, from entries strictly
-- earlier than this transaction (0 and 0 when there are none). On its own: the amount, card-not-present
-- (1) or present (0), weekend and night (00:00 to 06:59) in UTC, and the great-circle distances from the
-- billing address to the terminal and to the shipping address, in km. Keyed by customer (the join's key).
CREATE STREAM IF NOT EXISTS handbook_customer_features WITH (
  KAFKA_TOPIC = 'handbook_customer_features',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'AVRO',
  PARTITIONS = 4
) AS SELECT
  t.CUSTOMER_ID AS CUSTOMER_ID,
  t.TRANSACTION_ID AS TX_ID,
  t.TERMINAL_ID AS TERMINAL_ID,
  t.TX_AMOUNT AS TX_AMOUNT,
  CASE WHEN t.TX_TYPE = 'CNP' THEN CAST(1 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END AS TX_CNP,
  CASE WHEN (t.ROWTIME / 86400000 + 3) % 7 >= 5 THEN CAST(1 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END AS TX_DURING_WEEKEND,
  CASE WHEN t.ROWTIME % 86400000 < 25200000 THEN CAST(1 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END AS TX_DURING_NIGHT,
  GEO_DISTANCE(t.TX_BILL_LAT, t.TX_BILL_LONG, t.TX_TERM_LAT, t.TX_TERM_LONG, 'KM') AS BILLING_TERMINAL_KM,
  GEO_DISTANCE(t.TX_BILL_LAT, t.TX_BILL_LONG, t.TX_SHIPP_LAT, t.TX_SHIPP_LONG, 'KM') AS BILLING_SHIPPING_KM,
  CAST(IFNULL(ARRAY_LENGTH(FILTER(c.RECENT, e => e->T < t.ROWTIME AND e->T >= t.ROWTIME - 86400000)), 0) AS DOUBLE) AS CUSTOMER_NB_TX_1DAY,
  IFNULL(REDUCE(FILTER(c.RECENT, e => e->T < t.ROWTIME AND e->T >= t.ROWTIME - 86400000), CAST(0 AS DOUBLE), (s, e) => s + e->AMOUNT)
         / NULLIF(ARRAY_LENGTH(FILTER(c.RECENT, e => e->T < t.ROWTIME AND e->T >= t.ROWTIME - 86400000)), 0), CAST(0 AS DOUBLE)) AS CUSTOMER_AVG_AMOUNT_1DAY,
  CAST(IFNULL(ARRAY_LENGTH(FILTER(c.RECENT, e => e->T < t.ROWTIME AND e->T >= t.ROWTIME - 604800000)), 0) AS DOUBLE) AS CUSTOMER_NB_TX_7DAY,
  IFNULL(REDUCE(FILTER(c.RECENT, e => e->T < t.ROWTIME AND e->T >= t.ROWTIME - 604800000), CAST(0 AS DOUBLE), (s, e) => s + e->AMOUNT)
         / NULLIF(ARRAY_LENGTH(FILTER(c.RECENT, e => e->T < t.ROWTIME AND e->T >= t.ROWTIME - 604800000)), 0), CAST(0 AS DOUBLE)) AS CUSTOMER_AVG_AMOUNT_7DAY,
  CAST(IFNULL(ARRAY_LENGTH(FILTER(c.RECENT, e => e->T < t.ROWTIME AND e->T >= t.ROWTIME - 2592000000)), 0) AS DOUBLE) AS CUSTOMER_NB_TX_30DAY,
  IFNULL(REDUCE(FILTER(c.RECENT, e => e->T < t.ROWTIME AND e->T >= t.ROWTIME - 2592000000), CAST(0 AS DOUBLE), (s, e) => s + e->AMOUNT)
         / NULLIF(ARRAY_LENGTH(FILTER(c.RECENT, e => e->T < t.ROWTIME AND e->T >= t.ROWTIME - 2592000000)), 0), CAST(0 AS DOUBLE)) AS CUSTOMER_AVG_AMOUNT_30DAY
FROM handbook_transactions t
LEFT JOIN handbook_customer_history c ON t.CUSTOMER_ID = c.CUSTOMER_ID
EMIT CHANGES;
