"""Run every benchmark scenario: `python -m tests.benchmarks [scenario ...] [--write-results] [--strict]`.

Prints one table per scenario as it finishes, then the combined table and a one-line SUMMARY.
`--write-results` also writes the output, with the machine description, to
tests/benchmarks/RESULTS.md. `--strict` exits with status 1 when a target misses (timings on a
shared VM are noisy, so the default exit status is 0). Scenario names: spawn, access, memory, changed_query,
systems, workers, persist, scaling, structural, spatial, results, models, loaded, demo.
"""

from __future__ import annotations

import importlib
import io
import os
import pathlib
import sys
import time
from contextlib import redirect_stdout

from .common import QUIET_MAX_S, REPS, machine, results_table, wait_quiet

SCENARIOS = ["spawn", "access", "memory", "changed_query", "systems", "workers", "persist", "scaling", "structural",
             "spatial", "results", "models", "loaded", "demo"]
RESULTS = pathlib.Path(__file__).with_name("RESULTS.md")
MODEL = pathlib.Path(__file__).with_name("MODEL-16-CORES.md")   # appended: what no run here measured


class _Tee(io.TextIOBase):
    def __init__(self, *streams: io.TextIOBase) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
            s.flush()
        return len(text)


def main(argv: list[str]) -> int:
    write = "--write-results" in argv
    names = [a for a in argv if not a.startswith("--")] or SCENARIOS
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        print(f"unknown scenario(s) {unknown}; choose from {SCENARIOS}", file=sys.stderr)
        return 2
    log = io.StringIO()
    t_start = time.perf_counter()
    with redirect_stdout(_Tee(sys.stdout, log)):
        print(f"# ecs benchmarks: {machine()}")
        print(f"# median of {REPS}+ repetitions after 1 warm-up, [min-max]; loadavg at start "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; each scenario waits up to "
              f"{QUIET_MAX_S:.0f} s "
              f"for other processes to go quiet")
        print()
        rows = []
        for name in names:
            module = importlib.import_module(f".bench_{name}", __package__)
            waited = wait_quiet()
            t0 = time.perf_counter()
            got = module.run()
            rows += got
            print(f"## {name} ({time.perf_counter() - t0:.0f} s; waited {waited:.0f} s for a quiet machine)")
            print(results_table(got))
            print()
        print("## all targets")
        print(results_table(rows))
        print()
        judged = [r for r in rows if r.passed is not None]
        missed = [f"{r.scenario}: {r.workload} ({r.ratio:.3g} {r.ratio_label}; target {r.target})"
                  for r in judged if not r.passed]
        print(f"SUMMARY: {len(judged) - len(missed)} of {len(judged)} targets hold"
              + (f"; MISS: {'; '.join(missed)}" if missed else "")
              + f" (wall {time.perf_counter() - t_start:.0f} s)")
    if write:
        RESULTS.write_text(
            "# Benchmark results\n\n"
            "Latest output of `.venv/bin/python -m tests.benchmarks --write-results` (what `make bench`\n"
            "runs, plus this file). Each row compares our figure with a baseline measured in the same run;\n"
            "see each `bench_*.py` docstring for the exact workload and baseline.\n\n"
            f"**Machine:** {machine()}\n\n```text\n{log.getvalue()}```\n\n" + MODEL.read_text())
        print(f"wrote {RESULTS}")
    return 1 if "--strict" in argv and any(r.passed is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
