"""Run the CLI as on ``pip install okr-ledger`` without extras: optional packages hidden.

Usage: python -m tests.ledger.core_install ARGS... (the same arguments as ``okr-ledger``).
"""

import importlib.abc
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

OPTIONAL = frozenset(
    {"kafka", "aiokafka", "faust", "mode", "aiohttp", "clickhouse_connect", "chdb", "pyarrow"}
    | {"fastapi", "starlette", "uvicorn", "jinja2", "jmespath", "prometheus_client", "limits"}
)
"""Top-level modules that only the extras (kafka, clickhouse, embedded, http) install."""


class HideOptional(importlib.abc.MetaPathFinder):
    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if name.partition(".")[0] in OPTIONAL:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, HideOptional())
    sys.argv = ["okr-ledger", *sys.argv[1:]]
    from okr_ledger.cli import main

    main()
