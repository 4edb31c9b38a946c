"""The embedded single-machine stack, and nothing else: no Docker, no JVM, every service on 127.0.0.1.

`embedded.py` starts and stops the services through `supervisor.py`: SeaweedFS (`objectstore.py`), the
Tansu broker (`broker.py`), the Schema Registry (`registry/`), the ksqlDB-compatible engine and server
(`ksqldb/`), the Connect worker with the S3 sink (`connect/`), and Prometheus (`prometheus.py`). The rest
of fraudstream reaches them only through their addresses, as it reaches Confluent Platform in production.
"""
