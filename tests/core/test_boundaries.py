"""The sans-IO boundary: nothing in core/, providers/ or pricing/ may reach for I/O or a server library.

Checked twice: statically (every import statement of every module, lazy ones inside functions
included) and at run time (importing all of them in a fresh interpreter loads none of the banned
modules, so a banned import hidden behind another package of ours is caught too).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "gateway_stats"
BANNED = ("grpc", "asyncio", "prometheus_client", "opentelemetry", "uvloop", "socket")
SANS_IO = ("core", "providers", "pricing")


def banned_imports(source: str) -> list[str]:
    """Top-level names of banned modules imported anywhere in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [n for n in names if n.split(".")[0] in BANNED]
    return found


def sans_io_modules() -> list[Path]:
    return sorted(p for folder in SANS_IO for p in (PKG / folder).glob("*.py"))


def test_the_checker_catches_every_form_of_banned_import() -> None:
    src = (
        "import grpc\nfrom asyncio import sleep\n"
        "def f():\n    import socket\n    from opentelemetry.trace import x\n"
    )
    assert banned_imports(src) == ["grpc", "asyncio", "socket", "opentelemetry.trace"]
    assert banned_imports("import orjson\nfrom gateway_stats.core import sse\n") == []


@pytest.mark.parametrize("path", sans_io_modules(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sans_io_module_imports_nothing_banned(path: Path) -> None:
    assert banned_imports(path.read_text()) == []


def test_importing_core_and_providers_loads_no_banned_module() -> None:
    modules = [f"gateway_stats.{p.parent.name}.{p.stem}".removesuffix(".__init__") for p in sans_io_modules()]
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"print(','.join(m for m in {BANNED!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"loaded by core/providers: {out.stdout.strip()}"
    assert len(modules) >= 15  # every module of both folders was imported
