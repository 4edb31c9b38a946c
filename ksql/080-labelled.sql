-- For exploration only: each payment's served features beside its label, once the label has arrived (a
-- join of the two streams, within 30 days of the payment). Nothing at scoring or training time reads it:
-- training joins the labels known at its own cutoff (models.datasets.ServedSource).
CREATE STREAM IF NOT EXISTS creditcardfraud_labelled WITH (
  KAFKA_TOPIC = 'creditcardfraud_labelled',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'JSON',
  PARTITIONS = 4
) AS SELECT
  f.PAYMENT_ID AS PAYMENT_ID,
  f.HOUR_OF_DAY AS HOUR_OF_DAY,
  f.V1 AS V1, f.V2 AS V2, f.V3 AS V3, f.V4 AS V4, f.V10 AS V10, f.V11 AS V11, f.V12 AS V12, f.V14 AS V14,
  f.V16 AS V16, f.V17 AS V17,
  f.AMOUNT AS AMOUNT,
  l.LABEL AS LABEL,
  l.LABELLED_AT AS LABELLED_AT
FROM creditcardfraud_preprocessed_avro f
JOIN creditcardfraud_labels l WITHIN 30 DAYS ON f.PAYMENT_ID = l.PAYMENT_ID
EMIT CHANGES;
