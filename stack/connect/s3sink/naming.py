"""Object names exactly as Confluent's S3 sink writes them.

`<topics.dir>/<topic>/<encoded partition>/<topic>+<kafka partition>+<start offset, 10 digits>.<ext>`:
the name depends only on where the file starts, so a retried upload overwrites the same object.
"""

from __future__ import annotations


def object_key(
    topics_dir: str,
    topic: str,
    encoded_partition: str,
    partition: int,
    start_offset: int,
    extension: str,
    directory_delim: str = "/",
    file_delim: str = "+",
) -> str:
    directory = directory_delim.join(
        part for part in (topics_dir.strip(directory_delim), topic, encoded_partition) if part
    )
    return f"{directory}{directory_delim}{topic}{file_delim}{partition}{file_delim}{start_offset:010d}.{extension}"
