"""What Secret template rendering costs: hostile templates, and the worker's per-render overhead.

    .venv/bin/python tests/bench/render_cost.py [--out tests/bench/results/render-cost.json]

For every template of the hostile corpus (tests/unit/hostile_templates.py): wall time in-process
(best of 3), peak traced memory in-process, and wall time through BoundedRenderer. Then the
round trip of an ordinary render through the worker against the same render in-process, and
the worker's start-up time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "unit"))

import contextlib

from hostile_templates import HOSTILE, KEY

from storage_token.api.token import SecretTemplate
from storage_token.secrets.render import TemplateError, render_secret_data
from storage_token.secrets.worker import BoundedRenderer


def _outcome(source: str) -> str:
    try:
        render_secret_data(KEY, SecretTemplate(data={"evil": source}, include_preset=False))
    except TemplateError as error:
        return error.reason
    return "rendered"


def _in_process(source: str) -> tuple[float, int, str]:
    times = []
    for _ in range(3):
        started = time.perf_counter()
        outcome = _outcome(source)
        times.append(time.perf_counter() - started)
    tracemalloc.start()
    _outcome(source)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return min(times), peak, outcome


async def _through_worker(renderer: BoundedRenderer, source: str) -> float:
    started = time.perf_counter()
    with contextlib.suppress(TemplateError):
        await renderer.render(KEY, SecretTemplate(data={"evil": source}, include_preset=False))
    return time.perf_counter() - started


async def _overhead(renderer: BoundedRenderer, rounds: int) -> dict[str, float]:
    template = SecretTemplate(data={"env": "ID={{ accessKeyId }}\nKEY={{ secretAccessKey }}\n"})
    for _ in range(50):
        await renderer.render(KEY, template)
    worker, local = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        await renderer.render(KEY, template)
        worker.append(time.perf_counter() - started)
        started = time.perf_counter()
        render_secret_data(KEY, template)
        local.append(time.perf_counter() - started)
    return {
        "worker_median_us": statistics.median(worker) * 1e6,
        "in_process_median_us": statistics.median(local) * 1e6,
        "overhead_median_us": (statistics.median(worker) - statistics.median(local)) * 1e6,
        "worker_p99_us": sorted(worker)[int(0.99 * len(worker))] * 1e6,
    }


async def _worker_side(rounds: int) -> dict[str, Any]:
    renderer = BoundedRenderer()
    started = time.perf_counter()
    await renderer.start()
    startup = time.perf_counter() - started
    try:
        times = [await _through_worker(renderer, source) for _, source, _ in HOSTILE]
        overhead = await _overhead(renderer, rounds)
    finally:
        await renderer.aclose()
    return {
        "times": times,
        "overhead": overhead,
        "killed": renderer.killed,
        "startup": startup,
        "limits": {"wall_seconds": renderer.wall_seconds, "memory_bytes": renderer.memory_bytes},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "render-cost.json")
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()

    # In-process first, outside any event loop (as the worker renders: a plain loop over stdin).
    local = [_in_process(source) for _, source, _ in HOSTILE]
    worker = asyncio.run(_worker_side(args.rounds))
    rows: list[dict[str, Any]] = [
        {
            "template": name,
            "outcome": outcome,
            "in_process_ms": round(seconds * 1000, 2),
            "peak_traced_mib": round(peak / 2**20, 2),
            "worker_ms": round(through * 1000, 2),
        }
        for (name, _, _), (seconds, peak, outcome), through in zip(HOSTILE, local, worker["times"], strict=True)
    ]
    result = {
        "templates": len(rows),
        "worst_in_process_ms": max(row["in_process_ms"] for row in rows),
        "worst_worker_ms": max(row["worker_ms"] for row in rows),
        "worst_peak_traced_mib": max(row["peak_traced_mib"] for row in rows),
        "workers_killed": worker["killed"],
        "worker_startup_ms": round(worker["startup"] * 1000, 1),
        **{key: round(value, 1) for key, value in worker["overhead"].items()},
        "limits": worker["limits"],
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    summary = {key: value for key, value in result.items() if key != "rows"}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
