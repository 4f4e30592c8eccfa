"""A Python snippet in a fresh interpreter (what a process of its own imports and maps: chDB's
library, its pages), its last line of output read as JSON."""

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]


def run_snippet(code: str, *args: str) -> dict[str, Any]:
    """Run ``code`` with ``args`` in the repository's root; the JSON object it printed last."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, check=True, cwd=ROOT, timeout=120
    )
    found: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return found
