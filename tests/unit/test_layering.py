"""Imports only go down: pure core at the bottom, table/ adapters above it, maintenance above table.

Every import counts, including those inside functions and under ``TYPE_CHECKING``: a function-level import
is how the old config.py <-> table/schema.py circle hid.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "deltaingest"

# Each rule: the modules (a glob under the package), what they may import, what they must not import.
RULES = [
    ("delta_types.py", (), ("deltaingest",)),
    ("otlp_layout.py", (), ("deltaingest",)),
    ("config.py", ("deltaingest.delta_types", "deltaingest.otlp_layout"), ("deltaingest",)),
    ("table/*.py", (), ("deltaingest.maintenance", "deltaingest.ingest", "deltaingest.k8s")),
    ("maintenance/*.py", (), ("deltaingest.ingest", "deltaingest.k8s")),
    ("protocol.py", (), ("deltaingest",)),
    # The producer's library: the HTTP contract and nothing of the writer's insides.
    ("client/*.py", ("deltaingest.client", "deltaingest.protocol"), ("deltaingest",)),
]


def imports(source: str, module: str) -> set[str]:
    """Every module (or ``module.name``, for ``from module import name``) that ``module``'s source imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.rsplit(".", node.level)[0]
                base = f"{parent}.{base}" if base else parent
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(f"{prefix}.")


@pytest.mark.parametrize(("pattern", "allowed", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_imports_only_go_down(pattern: str, allowed: tuple[str, ...], forbidden: tuple[str, ...]) -> None:
    paths = sorted(PACKAGE.glob(pattern))
    assert paths, f"no module matches {pattern}: update the rule"
    wrong = set()
    for path in paths:
        module = ".".join(("deltaingest", *path.relative_to(PACKAGE).with_suffix("").parts))
        for name in imports(path.read_text(), module):
            if any(_within(name, f) for f in forbidden) and not any(_within(name, a) for a in allowed):
                wrong.add(f"{module} imports {name}")
    assert not wrong, sorted(wrong)


def test_function_level_and_relative_imports_are_seen() -> None:
    source = (
        "def f():\n    from deltaingest.maintenance.planner import plan_compaction\n    from . import hot\n"
    )
    assert imports(source, "deltaingest.table.facts") == {
        "deltaingest.maintenance.planner.plan_compaction",
        "deltaingest.table.hot",
    }
