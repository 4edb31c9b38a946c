"""Kafka Connect for fraudstream: the connector configs and what reads and applies them.

- `*.json`: Confluent S3 sink configs, valid for a real Kafka Connect (docker-compose.yml) and for the
  embedded worker (`python -m stack.connect`).
- `apply.py`: `fraudstream connect apply [DIR]`, idempotent against any Connect REST endpoint.
- `client.py`: a small Connect REST client.
- `formats.py`: the sink's formats (format class, extension, reader), shared by the writer and the readers.
- `lake.py`: list and read what the sink wrote.
"""
