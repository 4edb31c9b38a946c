"""Where the KSQL statements are, and their identity (a hash a model and every score record carry).

The statements are data, not code: a checkout or an image has them in `ksql/`. They are found from
FRAUDSTREAM_KSQL_DIR, else `./ksql`, else the `ksql/` of the source checkout this package runs from (an
editable install); a hash over no statements would tie models to nothing, so finding none is an error.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ENV_VAR = "FRAUDSTREAM_KSQL_DIR"
_CHECKOUT = Path(__file__).resolve().parent.parent / "ksql"


class StatementsNotFound(FileNotFoundError):
    """No `*.sql` statements where the configuration points."""


def statements_dir(directory: str | Path | None = None) -> Path:
    """The folder of the pipeline's statements: `directory`, else the configured or conventional place."""
    if directory is None:
        configured = os.environ.get(ENV_VAR)
        if configured:
            directory = configured
        else:
            candidates = (Path("ksql"), _CHECKOUT)
            directory = next((c for c in candidates if any(c.glob("*.sql"))), Path("ksql"))
    path = Path(directory)
    if not any(path.glob("*.sql")):
        raise StatementsNotFound(
            f"no KSQL statements (*.sql) in {path.resolve()}: run from the project folder or set {ENV_VAR}"
        )
    return path


def statements_hash(directory: str | Path | None = None) -> str:
    """SHA-256 over every ``*.sql`` file (name and content, in name order): the preprocessing's identity."""
    digest = hashlib.sha256()
    for path in sorted(statements_dir(directory).glob("*.sql")):
        digest.update(path.name.encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()
