"""Kafka Connect for fraudstream: connector configs (`*.json`) and the embedded Connect-compatible worker.

- `*.json`: Confluent S3 sink configs, valid for a real Kafka Connect (docker-compose.yml) and for `worker/`.
- `worker/`: the embedded worker (`python -m stack.connect`): Connect's REST API, storage topics, S3 sink.
- `apply.py`: `fraudstream connect apply [DIR]`, idempotent against any Connect REST endpoint.
- `client.py`: a small Connect REST client; `lake.py`: list and read what the sink wrote.
- `bench.py`: the sink's throughput as a ratio to a raw consume of the same topic.
"""
