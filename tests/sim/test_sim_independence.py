"""The simulated board shares no code with the harness it tests, apart from the error classes.

Why: the harness's parsers (RKFW images, .rknn files, version strings, the version matrix) judge boards; if
the simulator used them to behave like a board, a parser bug would be mirrored on the board and every test
would pass on a wrong parser. So every module under ``harness/sim/`` may import only ``harness.sim.*`` and
``harness.errors``. The walk is static (ast), so an import inside a function or under ``TYPE_CHECKING`` counts
too, and so does ``importlib.import_module("harness....")`` with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import harness.sim

SIM = Path(harness.sim.__file__).resolve().parent
ALLOWED = ("harness.sim", "harness.errors")


def _allowed(module: str) -> bool:
    return not (module == "harness" or module.startswith("harness.")) or any(
        module == a or module.startswith(a + ".") for a in ALLOWED)


def _package_of(path: Path, root: Path) -> list[str]:
    """The package a module under ``root`` (the harness/sim folder) belongs to, as name parts."""
    parts = ["harness", "sim", *path.relative_to(root).with_suffix("").parts]
    return parts[:-1]


def imported_modules(path: Path, root: Path = SIM) -> list[tuple[int, str]]:
    """(line, module) for every import in ``path``; ``from X import Y`` gives ``X.Y`` (Y may be a module)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(path, root)
                anchor = package[:len(package) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found += [(node.lineno, f"{base}.{alias.name}" if alias.name != "*" else base) for alias in node.names]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.lineno, node.args[0].value))
    return found


def offenders(root: Path) -> list[str]:
    """``file:line imports module`` for each import of the harness outside the allowed modules."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        for line, module in imported_modules(path, root):
            if not _allowed(module):
                bad.append(f"{path.relative_to(root.parent.parent)}:{line} imports {module}")
    return bad


def test_the_simulator_imports_only_itself_and_harness_errors():
    bad = offenders(SIM)
    assert not bad, "the simulator must not use the harness's code:\n" + "\n".join(bad)


def test_the_check_names_each_kind_of_forbidden_import(tmp_path):
    """The walk itself can fail: plain, from-, relative, lazy and import_module imports are all caught."""
    sim = tmp_path / "harness" / "sim"
    (sim / "sub").mkdir(parents=True)
    (sim / "__init__.py").write_text("")
    (sim / "ok.py").write_text("import os\nfrom harness.errors import ConfigError\nfrom harness.sim import state\n"
                               "from . import gate\nfrom harness import errors\n")
    (sim / "bad.py").write_text("import harness.npu.versions\nfrom harness.firmware.rkfw import read_update_image\n"
                                "def f():\n    from harness import chips\n")
    (sim / "sub" / "deep.py").write_text("from ...npu import matrix\nimport importlib\n"
                                         "importlib.import_module('harness.npu.rknn_file')\n")
    assert offenders(sim) == [
        "harness/sim/bad.py:1 imports harness.npu.versions",
        "harness/sim/bad.py:2 imports harness.firmware.rkfw.read_update_image",
        "harness/sim/bad.py:4 imports harness.chips",
        "harness/sim/sub/deep.py:1 imports harness.npu.matrix",
        "harness/sim/sub/deep.py:3 imports harness.npu.rknn_file",
    ]
