"""Shared fixtures: one embedded stack per test session, unique topic names per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.embedded import EmbeddedStack

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: The `shared` folder beside the repository (sample data, ksqlDB's QTT files).
SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """The whole embedded stack on free ports, broker in memory for speed; started once per session."""
    embedded = EmbeddedStack.on_free_ports(tmp_path_factory.mktemp("stack"), ephemeral=True)
    with embedded:
        yield embedded


@pytest.fixture
def topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name no other test uses, readable in broker logs."""
    return f"{request.node.name[:40].replace('[', '-').replace(']', '')}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip(f"sample data not found at {path}")
    return path
