-- Live quality of the handbook pipeline, as ksql/090-live-quality.sql keeps the flagship's (the same rules:
-- each transaction's latest score beside its latest label, a label counted once its transaction is scored,
-- relabels once, impossible and non-0/1 labels never), over this pipeline's scores and labels:
--   SELECT * FROM handbook_live_quality;
-- The scores' value schema is the workers' (streams/records.py), inferred from Schema Registry: apply this
-- file once a worker scoring into handbook-scores has started (it registers the schema).
CREATE STREAM IF NOT EXISTS handbook_scores (
  PAYMENT_KEY STRING KEY
) WITH (
  KAFKA_TOPIC = 'handbook-scores',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'AVRO',
  PARTITIONS = 4
);

-- The latest score of each payment (a payment scored twice after a worker's crash counts once).
CREATE TABLE IF NOT EXISTS handbook_scores_by_payment (
  PAYMENT_KEY STRING PRIMARY KEY
) WITH (
  KAFKA_TOPIC = 'handbook-scores',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'AVRO',
  PARTITIONS = 4
);

CREATE TABLE IF NOT EXISTS handbook_labels_by_payment WITH (
  KAFKA_TOPIC = 'handbook_labels_by_payment',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'JSON',
  PARTITIONS = 4
) AS SELECT
  PAYMENT_ID,
  LATEST_BY_OFFSET(LABEL) AS LABEL,
  LATEST_BY_OFFSET(ROWTIME) AS KNOWN_AT,
  COUNT(*) AS LABELS
FROM handbook_labels
WHERE LABEL = 0 OR LABEL = 1
GROUP BY PAYMENT_ID
EMIT CHANGES;

CREATE TABLE IF NOT EXISTS handbook_labelled_scores WITH (
  KAFKA_TOPIC = 'handbook_labelled_scores',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'JSON'
) AS SELECT
  l.PAYMENT_ID AS PAYMENT_ID,
  s.MODEL_NAME AS MODEL_NAME,
  s.MODEL_VERSION AS MODEL_VERSION,
  s.SCORE AS SCORE,
  s.IS_FRAUD AS IS_FRAUD,
  l.LABEL AS LABEL
FROM handbook_labels_by_payment l
JOIN handbook_scores_by_payment s ON l.PAYMENT_ID = s.PAYMENT_KEY
WHERE l.KNOWN_AT >= UNIX_TIMESTAMP(s.EVENT_TIMESTAMP)
EMIT CHANGES;

CREATE TABLE IF NOT EXISTS handbook_live_quality WITH (
  KAFKA_TOPIC = 'handbook_live_quality',
  KEY_FORMAT = 'JSON',
  VALUE_FORMAT = 'JSON'
) AS SELECT
  MODEL_NAME,
  MODEL_VERSION,
  COUNT(*) AS LABELLED,
  SUM(CASE WHEN IS_FRAUD AND LABEL = 1 THEN 1 ELSE 0 END) AS TRUE_POSITIVES,
  SUM(CASE WHEN IS_FRAUD AND LABEL = 0 THEN 1 ELSE 0 END) AS FALSE_POSITIVES,
  SUM(CASE WHEN NOT IS_FRAUD AND LABEL = 1 THEN 1 ELSE 0 END) AS FALSE_NEGATIVES,
  SUM(CASE WHEN NOT IS_FRAUD AND LABEL = 0 THEN 1 ELSE 0 END) AS TRUE_NEGATIVES
FROM handbook_labelled_scores
GROUP BY MODEL_NAME, MODEL_VERSION
EMIT CHANGES;

-- Alerts per model version and day (of scoring): SELECT * FROM handbook_alerts_per_day;
CREATE TABLE IF NOT EXISTS handbook_alerts_per_day WITH (
  KAFKA_TOPIC = 'handbook_alerts_per_day',
  KEY_FORMAT = 'JSON',
  VALUE_FORMAT = 'JSON'
) AS SELECT
  MODEL_NAME,
  MODEL_VERSION,
  COUNT(*) AS SCORED,
  SUM(CASE WHEN IS_FRAUD THEN 1 ELSE 0 END) AS ALERTS
FROM handbook_scores
WINDOW TUMBLING (SIZE 1 DAY)
GROUP BY MODEL_NAME, MODEL_VERSION
EMIT CHANGES;
