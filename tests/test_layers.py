"""The package's shape: imports point back up the data flow, never forward; modules stay small.

The stages, in the order a frame goes through them (edge_vlm/__init__.py): ingest → frames → gate → schedule
→ inference → publish. A stage's module may import the foundation, its own stage and the stages
before it (the values it receives are defined there); what it hands on goes through what
service.py gave it. The foundation (errors, config, transport, the values and state every stage
shares) imports no stage. The programs on top (the service, the CLI, the tools) may import anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "edge_vlm"

STAGES = ("ingest", "frames", "gate", "schedule", "inference", "publish")
FOUNDATION = ("core", "camera_state", "config",
              "mqtt", "samples")
PROGRAMS = ("service", "run", "__main__", "doctor", "install")
MAX_LINES = 300


def _modules() -> dict[str, Path]:
    return {".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
            for path in PACKAGE.rglob("*.py")}


def _top(module: str) -> str:
    """``edge_vlm.ingest.router`` -> ``ingest``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _rank(module: str) -> int:
    """-1 for the foundation, the stage's place in the flow, or len(STAGES) for the programs."""
    top = _top(module)
    if top in FOUNDATION or top == "":
        return -1
    if top in STAGES:
        return STAGES.index(top)
    assert top in PROGRAMS, f"{module}: not in a stage, the foundation or the programs (tests/test_layers.py)"
    return len(STAGES)


def _imports(path: Path) -> set[str]:
    """Every edge_vlm module ``path`` imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edge_vlm"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("edge_vlm"))
    return found


def test_every_module_has_a_place() -> None:
    for module in _modules():
        _rank(module)


def test_imports_point_back_up_the_flow() -> None:
    upward = []
    for module, path in sorted(_modules().items()):
        rank = _rank(module)
        for imported in sorted(_imports(path)):
            if _rank(imported) > rank or (rank == -1 and _rank(imported) != -1):
                upward.append(f"{module} imports {imported}")
    assert upward == []


def test_modules_stay_small() -> None:
    sizes = {module: len(path.read_text().splitlines()) for module, path in _modules().items()}
    assert {module: lines for module, lines in sizes.items() if lines > MAX_LINES} == {}
