"""Kafka Connect for fraudstream: connector configs, and what works against any Connect cluster.

- `*.json`: Confluent S3 sink configs, valid for a real Kafka Connect (docker-compose.yml) and for the
  embedded worker (`stack/connect`).
- `apply.py`: `fraudstream connect apply [DIR]`, idempotent against any Connect REST endpoint.
- `client.py`: a small Connect REST client; `lake.py`: list and read what the sink wrote.
"""
