"""Scenario "loaded": the workers scenario's workloads with one busy process beside them.

Users' machines are never idle. The benchmark starts one CPU-bound process (`while True: pass`)
itself, measures move and heavy over 1,000,000 rows with workers=2 against workers=0 (paired, in
blocks: both meet the same load), step() and run(frames=10), and ends the process by its pid.
Targets (issue 10, 2 cores): move 1M loaded, step() and run(frames=10), workers=2 at least as
fast as workers=0 (goal 1.3x: the free core plus a share of the busy one).
"""

from __future__ import annotations

from . import bench_systems_defs as defs
from . import bench_workers
from .common import Row, busy_process, source_arrays

SCENARIO = "loaded"


def run() -> list[Row]:
    arrs = source_arrays(bench_workers.N)
    with busy_process():
        rows = bench_workers.speedup_rows(defs.move, 1.0, arrs, frames=10)
        rows += bench_workers.speedup_rows(defs.heavy, 1.0, arrs)
    for row in rows:
        row.scenario = SCENARIO
        row.workload += ", one busy process beside"
        print(f"  {row.workload}: {row.ours} vs {row.baseline} -> {row.ratio:.3g} {row.ratio_label} ({row.verdict})",
              flush=True)
    return rows
