-- Each card holder's latest 100 payments: when each happened and its amount. The features (020) read
-- this table at each payment and keep only the entries strictly earlier than that payment, so that no
-- feature of a payment depends on a later one, whichever of the two queries runs ahead.
-- Without the record cache, every payment's change is its own record at the payment's time, so that the
-- features (020) can wait for the table to be current at each payment's time (a cached table would skip
-- states: a batch of changes coalesced into its last one, stamped later than the payments inside it).
SET 'ksql.streams.cache.max.bytes.buffering' = '0';
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
UNSET 'ksql.streams.cache.max.bytes.buffering';
