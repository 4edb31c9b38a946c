-- Labels, a week after their transactions (the Handbook's delay): keyed by transaction id, JSON, the same
-- record as the flagship's labels (ID, LABEL 0 or 1, LABELLED_AT: when it became known, the event time).
-- The terminals' features (030, 040, 060) read them; nothing else at scoring time does.
CREATE STREAM IF NOT EXISTS handbook_labels (
  PAYMENT_ID STRING KEY,
  ID STRING,
  LABEL INT,
  LABELLED_AT STRING
) WITH (
  KAFKA_TOPIC = 'handbook_labels',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'JSON',
  PARTITIONS = 4,
  TIMESTAMP = 'LABELLED_AT',
  TIMESTAMP_FORMAT = 'yyyy-MM-dd''T''HH:mm:ss[.SSS]X'
);
