"""The embedded Schema Registry: Confluent's REST API and wire format, schemas kept in a compacted topic."""
