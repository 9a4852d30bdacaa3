"""The three wings of the package (docs/architecture.md): the runtime imports nothing of the offline
tools (fleetvote.offline) or the test bed (fleetvote.testbed), nor the CLI over them; the offline
tools import nothing of the test bed; nothing imports the CLI back."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

from conftest import ROOT

PACKAGE = ROOT / "service" / "fleetvote"
OFFLINE, TESTBED = "fleetvote.offline", "fleetvote.testbed"
FRONT = ("fleetvote.cli", "fleetvote.command")  # the entry point and what its commands share
# what only training and the offline tools use: never loaded by the service
HEAVY = ("tensorflow", "keras", "tflite_micro", "ai_edge_litert", "matplotlib")


def module_name(path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, object]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def in_part(name: str, part: str) -> bool:
    return name == part or name.startswith(part + ".")


def wing(name: str) -> str:
    if in_part(name, OFFLINE):
        return "offline"
    if in_part(name, TESTBED):
        return "testbed"
    if name in FRONT:
        return "front"
    return "runtime"


def imported(name: str, path) -> set[str]:
    """Every fleetvote module that ``path`` imports, at the top or inside a function, as absolute
    names (``from . import x`` counts as the module ``pkg.x`` when there is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    known = modules()
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out |= {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known}
    return {m for m in out if in_part(m, "fleetvote")}


def test_the_runtime_imports_neither_the_offline_tools_nor_the_test_bed_nor_the_cli():
    found = modules()
    assert {wing(n) for n in found} == {"runtime", "offline", "testbed", "front"}
    offenders = [f"{n} imports {m}" for n, p in found.items() if wing(n) == "runtime"
                 for m in sorted(imported(n, p)) if wing(m) != "runtime"]
    assert not offenders, "\n".join(offenders)


def test_the_offline_tools_do_not_import_the_test_bed_and_nothing_imports_the_cli():
    found = modules()
    offenders = [f"{n} imports {m}" for n, p in found.items() for m in sorted(imported(n, p))
                 if (wing(n) == "offline" and wing(m) == "testbed") or (m == "fleetvote.cli" and n != m)]
    assert not offenders, "\n".join(offenders)


def test_the_cli_registers_its_commands_from_one_static_table():
    text = (PACKAGE / "cli.py").read_text()
    assert "importlib" not in text and "import_module" not in text
    from fleetvote import cli

    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert len(commands) >= len(cli.COMMANDS)
    assert {"serve", "eval", "card", "sim", "bench", "plan", "results", "flash", "probe"} <= set(commands)


def test_creating_the_app_loads_no_offline_tool_no_test_bed_and_no_tensorflow():
    """In a fresh interpreter: import fleetvote.api.app and create the app over the zoo's ensemble."""
    code = (
        "import json, sys\n"
        "from fleetvote.api.app import create_app\n"
        "app = create_app()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETVOTE_")}
    env["FLEETVOTE_SCAN_USB"] = "false"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    loaded = json.loads(r.stdout.strip().splitlines()[-1])
    ours = [m for m in loaded if in_part(m, "fleetvote")]
    assert "fleetvote.fleet.manager" in ours and "fleetvote.engine" in ours  # the app was really built
    assert [m for m in ours if wing(m) != "runtime"] == []
    assert [m for m in loaded if m.split(".")[0] in HEAVY] == []
