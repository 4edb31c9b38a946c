"""What a user reads: third-party noise that is not the user's concern stays out of the output (issue 16)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_training_and_the_clients_print_no_third_party_errors_or_deprecations(tmp_path) -> None:
    """TensorFlow's `E0000 ... use_unbounded_threadpool` on every fit, and authlib's httpx deprecation on
    importing the Schema Registry client, read as errors; neither reaches the user."""
    script = (
        "import fraudstream.kafka\n"
        "from confluent_kafka.schema_registry import SchemaRegistryClient\n"
        "from models.autoencoder import Autoencoder\n"
        "from models.datasets import GeneratedSource\n"
        "from models.training import train\n"
        f"train(GeneratedSource(2000, seed=0, fraud_rate=0.05), Autoencoder(epochs=1), output_dir={str(tmp_path)!r})\n"
    )
    env = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={**env, "PYTHONWARNINGS": "default"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "E0000" not in result.stderr and "NodeDef" not in result.stderr
    assert "httpx module is deprecated" not in result.stderr
