-- The Fraud Detection Handbook's pipeline (a second pipeline beside the flagship's ksql/*.sql): card
-- transactions as `fraudstream handbook produce` writes them, JSON, keyed by transaction id (TX_ID repeats
-- it in the value). A transaction never carries its label (015). Event time is the transaction's own
-- TX_DATETIME, so every window below follows when things happened, not when they arrived.
CREATE STREAM IF NOT EXISTS handbook_transactions (
  TRANSACTION_ID STRING KEY,
  TX_ID STRING,
  TX_DATETIME STRING,
  CUSTOMER_ID STRING,
  TERMINAL_ID STRING,
  TX_AMOUNT DOUBLE,
  TX_TYPE STRING,
  TX_BILL_LAT DOUBLE,
  TX_BILL_LONG DOUBLE,
  TX_TERM_LAT DOUBLE,
  TX_TERM_LONG DOUBLE,
  TX_SHIPP_LAT DOUBLE,
  TX_SHIPP_LONG DOUBLE
) WITH (
  KAFKA_TOPIC = 'handbook_transactions',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'JSON',
  PARTITIONS = 4,
  TIMESTAMP = 'TX_DATETIME',
  TIMESTAMP_FORMAT = 'yyyy-MM-dd''T''HH:mm:ss[.SSS]X'
);
