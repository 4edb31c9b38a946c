"""fraudstream: the ground every layer stands on, and the roof over them.

Ground: addresses (`config`), Kafka client defaults and helpers (`kafka`), object storage (`s3`), the
shared contracts (`topics`, `wire`, `statements`) and the terminal. Roof: the command line (`cli`), the
demo and its live view, and the benchmarks (`bench`).
"""

import warnings


def _quiet_third_party_warnings() -> None:
    """confluent-kafka's Schema Registry client imports authlib's httpx integration, which warns on import.

    It is not ours to fix and a user reads it as an error, in every command, worker and notebook that
    imports fraudstream. authlib forces its own warnings to "always" when `authlib.deprecate` loads, so
    that module (small: no httpx) is imported first and this filter goes on top.
    """
    import authlib.deprecate  # noqa: F401  (imported for its side effect on the warnings filters)

    warnings.filterwarnings("ignore", message="The httpx module is deprecated")


_quiet_third_party_warnings()
