"""The bench's reference point (b): a textbook Faust agent, one event at a time (`fraudstream bench scoring`).

Each event is decoded with fastavro, scored with Keras `model.predict` on a one-row batch and sent with
`await topic.send`: what a first Faust scorer looks like. Not used in production.
"""

from __future__ import annotations

import io
import json
import os
import struct

import fastavro
import faust
import numpy as np

from fraudstream.kafka import AIOKAFKA_GROUP_DEFAULTS
from models.artifacts import load_model

INPUT = os.environ["FRAUDSTREAM_NAIVE_INPUT"]
OUTPUT = os.environ["FRAUDSTREAM_NAIVE_OUTPUT"]
SCHEMA = fastavro.parse_schema(json.loads(os.environ["FRAUDSTREAM_NAIVE_SCHEMA"]))

model = load_model(os.environ["FRAUDSTREAM_NAIVE_MODEL"])
FEATURES = model.feature_names  # the columns the model was trained on, picked by name as the worker does
predict = model.model_.predict if hasattr(model, "model_") and hasattr(model.model_, "predict") else None
app = faust.App(
    os.environ.get("FRAUDSTREAM_NAIVE_GROUP", "fraudstream-naive"),
    broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP_SERVERS']}",
    web_port=int(os.environ.get("FRAUDSTREAM_NAIVE_WEB_PORT", "6099")),
    web_bind="127.0.0.1",
    web_host="127.0.0.1",
    broker_session_timeout=AIOKAFKA_GROUP_DEFAULTS["session_timeout_ms"] / 1000,
    broker_heartbeat_interval=AIOKAFKA_GROUP_DEFAULTS["heartbeat_interval_ms"] / 1000,
    consumer_auto_offset_reset="earliest",
    topic_disable_leader=True,
    datadir=os.environ.get("FRAUDSTREAM_NAIVE_DATA_DIR", ".fraudstream/naive"),
)
source = app.topic(INPUT, key_serializer="raw", value_serializer="raw")
sink = app.topic(OUTPUT, key_serializer="raw", value_serializer="raw")


@app.agent(source)
async def score(stream):
    async for key, value in stream.items():
        record = fastavro.schemaless_reader(io.BytesIO(value[5:]), SCHEMA, None)
        by_lower = {name.lower(): x for name, x in record.items()}
        x = np.array([[by_lower[c.lower()] for c in FEATURES]])
        if predict is not None:  # the autoencoder: Keras on one row, then the reconstruction error
            scaled = model.scaler_.transform(x)
            s = float(np.mean((predict(scaled, verbose=0) - scaled) ** 2))
        else:
            s = float(model.score_samples(x)[0])
        await sink.send(key=key, value=struct.pack(">d", s))
