-- The payments again, in Avro: the per-user history (014) aggregates STRUCTs, which ksqlDB keeps in the
-- source's value format, and DELIMITED cannot hold them.
CREATE STREAM IF NOT EXISTS creditcardfraud_source_avro WITH (
  KAFKA_TOPIC = 'creditcardfraud_source_avro',
  KEY_FORMAT = 'KAFKA',
  VALUE_FORMAT = 'AVRO',
  PARTITIONS = 4
) AS SELECT * FROM creditcardfraud_source
EMIT CHANGES;
