"""An embedded Kafka Connect-compatible worker that runs Confluent's S3 sink semantics.

The same connector JSON that a real Connect cluster takes (`connectors/*.json`) runs here unchanged:
the REST API, the storage topics and the object names follow Kafka Connect and Confluent's
`io.confluent.connect.s3.S3SinkConnector`, so that the lake looks the same in both deployments.
"""
