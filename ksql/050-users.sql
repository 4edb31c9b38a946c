-- Card holders, one row per user: the latest record of each key in the topic is the user's current row.
-- The key is the user's name as payments carry it in `USER` (`fraudstream users` writes them; the demo does).
CREATE TABLE IF NOT EXISTS creditcardfraud_users (
  USER_ID STRING PRIMARY KEY,
  COUNTRY STRING,
  CARD_TYPE STRING,
  CREDIT_LIMIT DOUBLE,
  SIGNUP_DATE STRING
) WITH (
  KAFKA_TOPIC = 'creditcardfraud_users',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'JSON',
  PARTITIONS = 4
);
