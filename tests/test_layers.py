"""The layout reads like the flow, and the imports keep to it: no cycle, no arrow from a lower room to a higher one,
and the emulator is a room the daemon never enters."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "deepva_watch"

#: Each room may import only rooms of a lower rank (and itself).
RANKS = {
    "deepva_watch": 0, "config": 0, "log": 0, "fsutil": 0, "mediainfo": 0, "listener": 0,
    "deepva": 1, "media": 1, "sources": 1,
    "sidecars": 2,
    "states": 3,
    "ledger": 4,
    "flow": 5, "handoff": 5,
    "watch": 6, "stages": 6,
    "service": 7,
    "commands": 8,
    "daemon": 9,
    "cli": 10,
    "__main__": 11,
}
#: The emulator is a second, independent reading of the API contract: it imports nothing of the daemon's but the turn
#: every caller of libmediainfo in the process must take.
SEPARATE = {"emulator"}
SHARED_WITH_THE_EMULATOR = {"mediainfo", "deepva_watch"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports() -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports (anywhere in its body)."""
    paths = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    base = module.split(".")
                    base = base[: len(base) - node.level + (1 if path.name == "__init__.py" else 0)]
                    target = ".".join([*base, node.module] if node.module else base)
                else:
                    target = node.module or ""
                submodules = {f"{target}.{alias.name}" for alias in node.names} & paths.keys()
                found.update(submodules if len(submodules) == len(node.names) else {target, *submodules})
        graph[module] = {name for name in found if name in paths} - {module}
    return graph


def test_no_import_runs_from_a_lower_room_to_a_higher_one() -> None:
    wrong = []
    for module, imported in _imports().items():
        room = _room(module)
        for target in imported:
            other = _room(target)
            if other == room:
                continue
            if room in SEPARATE or other in SEPARATE:
                allowed = (module == "deepva_watch.cli" and other == "emulator") or (  # the `emulator` command
                    room in SEPARATE and other in SHARED_WITH_THE_EMULATOR)
                if not allowed:
                    wrong.append(f"{module} -> {target}")
                continue
            if RANKS[other] >= RANKS[room] and other != "deepva_watch":
                wrong.append(f"{module} ({room}) -> {target} ({other})")
    assert not wrong, "\n".join(sorted(wrong))


def test_every_room_has_a_rank() -> None:
    rooms = {_room(module) for module in _imports()}
    assert rooms - SEPARATE <= set(RANKS), rooms - SEPARATE - set(RANKS)


def test_there_is_no_import_cycle() -> None:
    graph = _imports()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(module):], module]))
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_running_the_daemon_never_imports_the_emulator() -> None:
    script = ("import sys, deepva_watch.cli, deepva_watch.daemon, deepva_watch.commands.doctor; "
              "print(sorted(name for name in sys.modules if name.startswith('deepva_watch.emulator')))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout
