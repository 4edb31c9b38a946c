-- Labels, known days after their payments (a chargeback, an investigation): keyed by payment id, JSON.
-- LABEL is 1 for fraud, 0 for a genuine payment; LABELLED_AT, the event time of the label, is when it
-- became known. ID repeats the payment id in the value, so that the label survives landing in the lake
-- (which keeps values, not keys). Nothing at scoring time reads this stream.
CREATE STREAM IF NOT EXISTS creditcardfraud_labels (
  PAYMENT_ID STRING KEY,
  ID STRING,
  LABEL INT,
  LABELLED_AT STRING
) WITH (
  KAFKA_TOPIC = 'creditcardfraud_labels',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'JSON',
  PARTITIONS = 4,
  TIMESTAMP = 'LABELLED_AT',
  TIMESTAMP_FORMAT = 'yyyy-MM-dd''T''HH:mm:ss[.SSS]X'
);
