"""`fraudstream kcat ARGS`: Debian's kcat against the embedded broker, with a librdkafka that can read it.

kcat 1.7.1 in Debian 12 links librdkafka 2.0.2, which skips one byte too few of every tagged field (KIP-482)
in a response: it takes a tag's length as a compact (N+1) length (fixed in librdkafka 2.2.0, pull request
4278, "Fix number of bytes skipped when receiving tags"). Tansu 0.6 ends its ApiVersions v3 answer with
four tagged fields (SupportedFeatures, FinalizedFeaturesEpoch = -1, FinalizedFeatures, ZkMigrationReady),
so librdkafka 2.0.2 reads the epoch's bytes as a length, `Protocol read buffer underflow for ApiVersion v3
at 274/279`, and never connects (`api.version.request=false` does not avoid the request). confluent-kafka's
wheel bundles a current librdkafka: this runs kcat with that one, and `-b` from KAFKA_BOOTSTRAP_SERVERS.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import click

from fraudstream.config import Addresses
from fraudstream.credentials import Credentials

#: Where the `librdkafka.so.1` link kcat loads is kept (the bundled file's own name carries a hash).
LIBRARY_DIR_NAME = "librdkafka"


def bundled_librdkafka() -> Path | None:
    """The librdkafka shipped inside confluent-kafka's wheel, if this installation has one."""
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka*.so*"))
    return found[0] if found else None


def library_dir(library: Path) -> Path:
    """A directory holding `librdkafka.so.1` -> `library`, for LD_LIBRARY_PATH."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fraudstream" / LIBRARY_DIR_NAME
    base.mkdir(parents=True, exist_ok=True)
    link = base / "librdkafka.so.1"
    if not link.exists() or link.resolve() != library:
        link.unlink(missing_ok=True)
        link.symlink_to(library)
    return base


def kcat_command_line(args: tuple[str, ...], environ: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """kcat's argv (with `-b` unless given) and environment (the bundled librdkafka first on the path)."""
    binary = shutil.which("kcat") or shutil.which("kafkacat")
    if binary is None:
        raise click.ClickException("kcat is not installed (Debian: apt-get install kcat)")
    argv = [binary, *args]
    if "-b" not in args and not any(arg.startswith("-b") and len(arg) > 2 for arg in args) and "-V" not in args:
        argv[1:1] = ["-b", Addresses.from_env(environ).bootstrap_servers]
        security = Credentials.from_env(environ).kafka()
        if security["security.protocol"] != "PLAINTEXT" and "-F" not in args:
            argv[1:1] = ["-F", _private_config(security)]
    env = dict(environ)
    library = bundled_librdkafka()
    if library is not None:
        path = env.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = str(library_dir(library)) + (f":{path}" if path else "")
    return argv, env


def _private_config(settings: dict[str, str]) -> str:
    """A librdkafka properties file kcat reads with -F: an anonymous in-memory file this process passes on
    through execve, so that the password is neither on kcat's command line (`ps`) nor left on disk."""
    descriptor = os.memfd_create("fraudstream-kcat", 0)
    os.set_inheritable(descriptor, True)
    os.write(descriptor, "".join(f"{key}={value}\n" for key, value in settings.items()).encode())
    return f"/proc/self/fd/{descriptor}"


@click.command(
    "kcat",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def kcat_command(args: tuple[str, ...]) -> None:
    """kcat (Debian's) with a librdkafka that reads the embedded broker; -b defaults to $KAFKA_BOOTSTRAP_SERVERS.

    Debian 12's kcat links librdkafka 2.0.2, which misreads the tagged fields that end the embedded broker's
    ApiVersions answer; confluent-kafka's own librdkafka is put in its place. Every argument goes to kcat.
    """
    argv, env = kcat_command_line(args, dict(os.environ))
    sys.stdout.flush()
    os.execve(argv[0], argv, env)
