-- Each card holder's latest 100 payments: when each happened and its amount. The features (020) read
-- this table at each payment and keep only the entries strictly earlier than that payment, so that no
-- feature of a payment depends on a later one, whichever of the two queries runs ahead.
CREATE TABLE IF NOT EXISTS creditcardfraud_user_history WITH (
  KAFKA_TOPIC = 'creditcardfraud_user_history',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'AVRO',
  PARTITIONS = 4
) AS SELECT
  `USER`,
  LATEST_BY_OFFSET(STRUCT(T := ROWTIME, AMOUNT := AMOUNT), 100) AS RECENT
FROM creditcardfraud_source_avro
GROUP BY `USER`
EMIT CHANGES;
