-- What the handbook's models see: every transaction, keyed by transaction id, Avro with the schema in
-- Schema Registry. The inputs are its value columns but CUSTOMER_ID, ID and EVENT_TIME (identities, kept
-- for the evaluation per card and to join the lake with labels at a cutoff).
--
-- Beside the transaction's own and its customer's features (050), its terminal's: how many of its
-- transactions, and which share of them were frauds, in the 1, 7 and 30 days that end one label delay
-- (7 days) before this transaction, counting only labels known strictly before it (the history, 040).
-- Transactions after that point have no label yet, so the windows end there (0 and 0 when empty).
CREATE STREAM IF NOT EXISTS handbook_features WITH (
  KAFKA_TOPIC = 'handbook_features',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'AVRO',
  PARTITIONS = 4
) AS SELECT
  f.TX_ID AS TRANSACTION_ID,
  f.TX_AMOUNT AS TX_AMOUNT,
  f.TX_CNP AS TX_CNP,
  f.TX_DURING_WEEKEND AS TX_DURING_WEEKEND,
  f.TX_DURING_NIGHT AS TX_DURING_NIGHT,
  f.BILLING_TERMINAL_KM AS BILLING_TERMINAL_KM,
  f.BILLING_SHIPPING_KM AS BILLING_SHIPPING_KM,
  f.CUSTOMER_NB_TX_1DAY AS CUSTOMER_NB_TX_1DAY, f.CUSTOMER_AVG_AMOUNT_1DAY AS CUSTOMER_AVG_AMOUNT_1DAY,
  f.CUSTOMER_NB_TX_7DAY AS CUSTOMER_NB_TX_7DAY, f.CUSTOMER_AVG_AMOUNT_7DAY AS CUSTOMER_AVG_AMOUNT_7DAY,
  f.CUSTOMER_NB_TX_30DAY AS CUSTOMER_NB_TX_30DAY, f.CUSTOMER_AVG_AMOUNT_30DAY AS CUSTOMER_AVG_AMOUNT_30DAY,
  CAST(IFNULL(ARRAY_LENGTH(FILTER(h.LABELLED, e => e->T >= f.ROWTIME - 691200000 AND e->T < f.ROWTIME - 604800000
                            AND e->KNOWN < f.ROWTIME)), 0) AS DOUBLE) AS TERMINAL_NB_TX_1DAY,
  IFNULL(CAST(REDUCE(FILTER(h.LABELLED, e => e->T >= f.ROWTIME - 691200000 AND e->T < f.ROWTIME - 604800000
                            AND e->KNOWN < f.ROWTIME), 0, (s, e) => s + e->FRAUD) AS DOUBLE)
         / NULLIF(ARRAY_LENGTH(FILTER(h.LABELLED, e => e->T >= f.ROWTIME - 691200000 AND e->T < f.ROWTIME - 604800000
                            AND e->KNOWN < f.ROWTIME)), 0), CAST(0 AS DOUBLE)) AS TERMINAL_RISK_1DAY,
  CAST(IFNULL(ARRAY_LENGTH(FILTER(h.LABELLED, e => e->T >= f.ROWTIME - 1209600000 AND e->T < f.ROWTIME - 604800000
                            AND e->KNOWN < f.ROWTIME)), 0) AS DOUBLE) AS TERMINAL_NB_TX_7DAY,
  IFNULL(CAST(REDUCE(FILTER(h.LABELLED, e => e->T >= f.ROWTIME - 1209600000 AND e->T < f.ROWTIME - 604800000
                            AND e->KNOWN < f.ROWTIME), 0, (s, e) => s + e->FRAUD) AS DOUBLE)
         / NULLIF(ARRAY_LENGTH(FILTER(h.LABELLED, e => e->T >= f.ROWTIME - 1209600000 AND e->T < f.ROWTIME - 604800000
                            AND e->KNOWN < f.ROWTIME)), 0), CAST(0 AS DOUBLE)) AS TERMINAL_RISK_7DAY,
  CAST(IFNULL(ARRAY_LENGTH(FILTER(h.LABELLED, e => e->T >= f.ROWTIME - 3196800000 AND e->T < f.ROWTIME - 604800000
                            AND e->KNOWN < f.ROWTIME)), 0) AS DOUBLE) AS TERMINAL_NB_TX_30DAY,
  IFNULL(CAST(REDUCE(FILTER(h.LABELLED, e => e->T >= f.ROWTIME - 3196800000 AND e->T < f.ROWTIME - 604800000
                            AND e->KNOWN < f.ROWTIME), 0, (s, e) => s + e->FRAUD) AS DOUBLE)
         / NULLIF(ARRAY_LENGTH(FILTER(h.LABELLED, e => e->T >= f.ROWTIME - 3196800000 AND e->T < f.ROWTIME - 604800000
                            AND e->KNOWN < f.ROWTIME)), 0), CAST(0 AS DOUBLE)) AS TERMINAL_RISK_30DAY,
  f.CUSTOMER_ID AS CUSTOMER_ID,
  AS_VALUE(f.TX_ID) AS ID,
  f.ROWTIME AS EVENT_TIME
FROM handbook_customer_features f
LEFT JOIN handbook_terminal_history h ON f.TERMINAL_ID = h.TERMINAL_ID
PARTITION BY f.TX_ID
EMIT CHANGES;
