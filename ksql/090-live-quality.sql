-- Live quality: each scored payment beside its label once the label is known, and, per model version,
-- what the alerts turned out to be at the threshold in force when each payment was scored. Read it with
-- a pull query:  SELECT * FROM creditcardfraud_live_quality;
-- (precision = TRUE_POSITIVES / (TRUE_POSITIVES + FALSE_POSITIVES), recall = TRUE_POSITIVES / (TRUE_POSITIVES
-- + FALSE_NEGATIVES); the workers export both as Prometheus metrics from this table.)
--
-- The scores' value schema is the workers' (streams/records.py), inferred from Schema Registry: the
-- workers register it when they start, and `fraudstream up` registers it before any statement runs. On
-- a real ksqlDB, apply this file once a worker has started.
--
-- Rules for labels (ksql/015-labels.sql), none of which loses a record (each stays in its topic):
-- * a payment labelled twice counts once, with its latest label (LABELS says how many it had);
-- * a label that arrives before its payment's score waits in creditcardfraud_labels_by_payment and
--   counts when the score arrives (the join is between two tables);
-- * a label known before its payment happened is impossible and never counts (as in training);
-- * a label for a payment that is never scored never counts;
-- * a label other than 0 or 1 is not a label: it is left out, and kept with the reason in
--   creditcardfraud_labels_rejected (015); one that is not JSON goes to the processing log.
CREATE STREAM IF NOT EXISTS creditcardfraud_scores (
  PAYMENT_KEY STRING KEY
) WITH (
  KAFKA_TOPIC = 'fraud-scores',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'AVRO',
  PARTITIONS = 4
);

-- The latest score of each payment (a payment scored twice after a worker's crash counts once).
CREATE TABLE IF NOT EXISTS creditcardfraud_scores_by_payment (
  PAYMENT_KEY STRING PRIMARY KEY
) WITH (
  KAFKA_TOPIC = 'fraud-scores',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'AVRO',
  PARTITIONS = 4
);

CREATE TABLE IF NOT EXISTS creditcardfraud_labels_by_payment WITH (
  KAFKA_TOPIC = 'creditcardfraud_labels_by_payment',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'JSON',
  PARTITIONS = 4
) AS SELECT
  PAYMENT_ID,
  LATEST_BY_OFFSET(LABEL) AS LABEL,
  LATEST_BY_OFFSET(ROWTIME) AS KNOWN_AT,
  COUNT(*) AS LABELS
FROM creditcardfraud_labels
WHERE LABEL = 0 OR LABEL = 1
GROUP BY PAYMENT_ID
EMIT CHANGES;

CREATE TABLE IF NOT EXISTS creditcardfraud_labelled_scores WITH (
  KAFKA_TOPIC = 'creditcardfraud_labelled_scores',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'JSON'
) AS SELECT
  l.PAYMENT_ID AS PAYMENT_ID,
  s.MODEL_NAME AS MODEL_NAME,
  s.MODEL_VERSION AS MODEL_VERSION,
  s.SCORE AS SCORE,
  s.IS_FRAUD AS IS_FRAUD,
  l.LABEL AS LABEL
FROM creditcardfraud_labels_by_payment l
JOIN creditcardfraud_scores_by_payment s ON l.PAYMENT_ID = s.PAYMENT_KEY
WHERE l.KNOWN_AT >= UNIX_TIMESTAMP(s.EVENT_TIMESTAMP)
EMIT CHANGES;

CREATE TABLE IF NOT EXISTS creditcardfraud_live_quality WITH (
  KAFKA_TOPIC = 'creditcardfraud_live_quality',
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
FROM creditcardfraud_labelled_scores
GROUP BY MODEL_NAME, MODEL_VERSION
EMIT CHANGES;

-- Alerts per model version and day (of scoring): SELECT * FROM creditcardfraud_alerts_per_day;
CREATE TABLE IF NOT EXISTS creditcardfraud_alerts_per_day WITH (
  KAFKA_TOPIC = 'creditcardfraud_alerts_per_day',
  KEY_FORMAT = 'JSON',
  VALUE_FORMAT = 'JSON'
) AS SELECT
  MODEL_NAME,
  MODEL_VERSION,
  COUNT(*) AS SCORED,
  SUM(CASE WHEN IS_FRAUD THEN 1 ELSE 0 END) AS ALERTS
FROM creditcardfraud_scores
WINDOW TUMBLING (SIZE 1 DAY)
GROUP BY MODEL_NAME, MODEL_VERSION
EMIT CHANGES;
