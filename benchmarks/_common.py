"""Shared helpers for the benchmark scripts: machine info, JSON output, a markdown table."""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """CPU model, core count and library versions of this machine."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numba
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
    }


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def save(name: str, payload: dict) -> Path:
    """Write benchmarks/results/<name>.json atomically."""
    from gsgroup.fileio import write_json

    path = RESULTS / f"{name}.json"
    write_json(path, payload)
    return path


def table(rows: list[dict], columns: list[str]) -> str:
    """A markdown table of rows (dicts) over columns."""

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def dump(obj) -> str:
    return json.dumps(obj, indent=2)
