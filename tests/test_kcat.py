"""kcat against the embedded broker (issue 16, item 7): `fraudstream kcat` runs Debian's kcat with confluent-kafka's
librdkafka, since the librdkafka 2.0.2 it links misreads the tagged fields of the broker's ApiVersions answer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from cli_helpers import fraudstream

from fraudstream.kafka import end_offsets
from stack.embedded import EmbeddedStack

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (apt-get install kcat)")


def test_kcat_produces_lists_and_consumes(stack: EmbeddedStack, topic_name: str, tmp_path: Path) -> None:
    env = {**stack.addresses.to_env(), "XDG_CACHE_HOME": str(tmp_path)}  # where the librdkafka link is kept
    lines = "".join(f"p{i}:payment {i}\n" for i in range(3))
    produced = fraudstream("kcat", "-P", "-t", topic_name, "-K:", env=env, input=lines)
    assert produced.stderr == ""
    assert sum(end_offsets(stack.addresses.bootstrap_servers, topic_name).values()) == 3
    listed = fraudstream("kcat", "-L", "-t", topic_name, env=env)
    assert f'topic "{topic_name}"' in listed.stdout
    consumed = fraudstream("kcat", "-C", "-t", topic_name, "-o", "beginning", "-e", "-q", "-f", "%k=%s\\n", env=env)
    assert sorted(consumed.stdout.splitlines()) == [f"p{i}=payment {i}" for i in range(3)]
