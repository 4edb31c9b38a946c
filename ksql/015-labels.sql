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

-- A label that is not 0 or 1 is not a label: the live tables (090) and training (models.datasets) leave it
-- out, and this stream keeps it with the reason, so that nothing is dropped unseen. A label that is not JSON
-- at all goes to the processing log (KSQL_PROCESSING_LOG), as every record a statement cannot read.
CREATE STREAM IF NOT EXISTS creditcardfraud_labels_rejected WITH (
  KAFKA_TOPIC = 'creditcardfraud_labels_rejected',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'JSON',
  PARTITIONS = 4
) AS SELECT
  PAYMENT_ID,
  ID,
  LABEL,
  LABELLED_AT,
  'LABEL must be 0 or 1' AS REASON
FROM creditcardfraud_labels
WHERE LABEL IS NULL OR (LABEL <> 0 AND LABEL <> 1)
EMIT CHANGES;
