"""Shared helpers: real configs, timing and result files."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from flowstudy.config import compose_config

RESULTS = Path(__file__).resolve().parent / "results"


# The real configs, composed as the command line composes them.
config = compose_config


def seconds(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def machine() -> dict[str, Any]:
    return {"cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "machine": platform.machine()}


def parser(doc: str) -> argparse.ArgumentParser:
    """A benchmark's command line, with the options every benchmark shares."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    p.add_argument("--save", nargs="?", const=RESULTS, type=Path, metavar="DIR",
                   help=f"write the results as JSON to DIR (default {RESULTS}); without "
                        f"--save nothing is written, so the tracked results change only on purpose")
    return p


def write_results(directory: Path, name: str, payload: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"benchmark": name, "machine": machine(), **payload}, indent=2)
                    + "\n")
    return path


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in columns]
             for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def publish(name: str, rows: list[dict[str, Any]], columns: list[str], save: Path | None,
            **settings: Any) -> None:
    """Print the table; with ``--save`` (``save``: a directory) record it in <save>/<name>.json."""
    print(table(rows, columns))
    if save is not None:
        print(f"wrote {write_results(save, name, {**settings, 'rows': rows})}")
