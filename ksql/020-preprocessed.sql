-- What the model sees: every payment, as it is known when it happens, keyed by payment id so that every
-- score traces back to its payment; Avro with the schema in Schema Registry. The model's inputs are this
-- stream's value columns except ID and EVENT_TIME (identity and event time, kept last, so that the
-- features landed in the lake, which keeps values only, can be joined with their labels at a cutoff).
--
-- HOUR_OF_DAY (UTC) replaces the raw Time counter, which only grows and says nothing about a payment.
-- The card holder's behaviour comes from the history table (014), from payments strictly earlier than
-- this one: how many and how much in the last hour and day, this amount over the holder's average
-- (1 when there is no earlier payment), and the seconds since the previous payment (-1 when none).
-- A payment without a user, or the holder's first, gets those defaults; every payment is served.
-- Each payment waits (up to 10 s once the history table is read to its end, as Kafka Streams'
-- max.task.idle.ms) for the history (014) to be read up to the payment's time: a burst of payments is not
-- joined with a history that is still catching up, so what is served is what the offline reference and
-- training compute.
SET 'ksql.streams.max.task.idle.ms' = '10000';
CREATE STREAM IF NOT EXISTS creditcardfraud_preprocessed_avro WITH (
  KAFKA_TOPIC = 'creditcardfraud_preprocessed_avro',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'AVRO',
  PARTITIONS = 4
) AS SELECT
  p.PAYMENT_ID AS PAYMENT_ID,
  CAST(TIMESTAMPTOSTRING(p.ROWTIME, 'H', 'UTC') AS DOUBLE) AS HOUR_OF_DAY,
  p.V1 AS V1, p.V2 AS V2, p.V3 AS V3, p.V4 AS V4, p.V5 AS V5, p.V6 AS V6, p.V7 AS V7, p.V8 AS V8, p.V9 AS V9,
  p.V10 AS V10, p.V11 AS V11, p.V12 AS V12, p.V13 AS V13, p.V14 AS V14, p.V15 AS V15, p.V16 AS V16,
  p.V17 AS V17, p.V18 AS V18, p.V19 AS V19, p.V20 AS V20, p.V21 AS V21, p.V22 AS V22, p.V23 AS V23,
  p.V24 AS V24, p.V25 AS V25, p.V26 AS V26, p.V27 AS V27, p.V28 AS V28,
  p.AMOUNT AS AMOUNT,
  IFNULL(CAST(ARRAY_LENGTH(FILTER(h.RECENT, e => e->T < p.ROWTIME AND e->T >= p.ROWTIME - 3600000)) AS DOUBLE),
         CAST(0 AS DOUBLE)) AS USER_PAYMENTS_1H,
  IFNULL(REDUCE(FILTER(h.RECENT, e => e->T < p.ROWTIME AND e->T >= p.ROWTIME - 3600000),
                CAST(0 AS DOUBLE), (s, e) => s + e->AMOUNT), CAST(0 AS DOUBLE)) AS USER_AMOUNT_1H,
  IFNULL(CAST(ARRAY_LENGTH(FILTER(h.RECENT, e => e->T < p.ROWTIME AND e->T >= p.ROWTIME - 86400000)) AS DOUBLE),
         CAST(0 AS DOUBLE)) AS USER_PAYMENTS_1D,
  IFNULL(REDUCE(FILTER(h.RECENT, e => e->T < p.ROWTIME AND e->T >= p.ROWTIME - 86400000),
                CAST(0 AS DOUBLE), (s, e) => s + e->AMOUNT), CAST(0 AS DOUBLE)) AS USER_AMOUNT_1D,
  CASE
    WHEN REDUCE(FILTER(h.RECENT, e => e->T < p.ROWTIME), CAST(0 AS DOUBLE), (s, e) => s + e->AMOUNT) > 0
      THEN p.AMOUNT * ARRAY_LENGTH(FILTER(h.RECENT, e => e->T < p.ROWTIME))
           / REDUCE(FILTER(h.RECENT, e => e->T < p.ROWTIME), CAST(0 AS DOUBLE), (s, e) => s + e->AMOUNT)
    ELSE CAST(1 AS DOUBLE)
  END AS AMOUNT_TO_USER_AVERAGE,
  IFNULL(CAST(p.ROWTIME - ARRAY_MAX(TRANSFORM(FILTER(h.RECENT, e => e->T < p.ROWTIME), e => e->T)) AS DOUBLE) / 1000,
         CAST(-1 AS DOUBLE)) AS SECONDS_SINCE_PREVIOUS,
  AS_VALUE(p.PAYMENT_ID) AS ID,
  p.ROWTIME AS EVENT_TIME
FROM creditcardfraud_source p
LEFT JOIN creditcardfraud_user_history h ON p.`USER` = h.`USER`
PARTITION BY p.PAYMENT_ID
EMIT CHANGES;
UNSET 'ksql.streams.max.task.idle.ms';
