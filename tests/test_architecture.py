"""The house's rules, checked: layer contracts (import-linter, configured in setup.cfg) and no import cycles."""

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
