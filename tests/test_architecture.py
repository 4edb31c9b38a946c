"""The house's rules, checked: layer contracts (import-linter, configured in setup.cfg), no import cycles, and the
embedded ksqlDB engine's own layers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fraudstream", "producers", "stack", "streams", "models", "connectors")


def test_layer_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint_imports), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_module_imports_itself_through_others() -> None:
    """No import cycle between modules, at module level or inside functions (where cycles used to hide)."""
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = set()
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if graph.chain_exists(importer=imported, imported=module):
                cycles.add(tuple(sorted((module, imported))))
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(pair) for pair in sorted(cycles))


#: The embedded ksqlDB engine's layers, top down (modules of stack.ksqldb, by their first name part); every other
#: module of it is the foundation below them all (AST, parser, types, values, expressions, functions, formats,
#: metastore, windows).
KSQLDB_LAYERS = (
    ("__main__", "server", "engine", "qtt", "apply", "commands"),  # statements in, results out
    ("planner", "aggregate_planner", "join_planner", "analysis", "pull"),  # planning
    ("executor", "tables", "aggregation", "joins", "vectorized", "pipeline", "push"),  # operators that run plans
    # the runtime: records, the processing log, state stores, where queries run
    (
        "runtime",
        "kafka_runtime",
        "durable_state",
        "materialization",
        "topic_reader",
        "processing_log",
        "records",
        "state",
    ),
)


def test_ksqldb_imports_go_down_its_layers() -> None:
    """The engine imports one way, planning -> operators -> runtime, so that planning and running stay apart."""

    def layer(module: str) -> int:
        name = module.removeprefix("stack.ksqldb.").split(".")[0]
        return next((i for i, names in enumerate(KSQLDB_LAYERS) if name in names), len(KSQLDB_LAYERS))

    graph = grimp.build_graph("stack", cache_dir=None)
    engine = [m for m in graph.modules if m.startswith("stack.ksqldb.")]
    upward = sorted(
        f"{module} -> {imported}"
        for module in engine
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.startswith("stack.ksqldb.") and layer(imported) < layer(module)
    )
    assert not upward, "imports up the engine's layers: " + "; ".join(upward)
