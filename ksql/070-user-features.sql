-- Per-user activity over the last hour, updated every five minutes (hopping windows on the payment's own
-- time): features a model can use next to a payment's V1..V28. A pull query reads a user's current
-- windows, e.g. SELECT * FROM creditcardfraud_user_features WHERE `USER` = 'Kai';
CREATE TABLE IF NOT EXISTS creditcardfraud_user_features WITH (
  KAFKA_TOPIC = 'creditcardfraud_user_features',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'JSON',
  PARTITIONS = 4
) AS SELECT
  `USER`,
  COUNT(*) AS PAYMENTS_1H,
  SUM(AMOUNT) AS AMOUNT_1H,
  MAX(AMOUNT) AS MAX_AMOUNT_1H
FROM creditcardfraud_enriched
WINDOW HOPPING (SIZE 1 HOUR, ADVANCE BY 5 MINUTES)
GROUP BY `USER`
EMIT CHANGES;
