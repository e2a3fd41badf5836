"""Scenario "memory": bytes held for 1,000,000 entities with Position + Velocity (f32 x, y).

Target (issue 2): at most 16 MB of field data + 24 bytes per entity of overhead.
Measured in a fresh child process per sample, so nothing else this run allocated is counted:
- shared: the world's arena memory (`Arena.committed_bytes()`). A world with workers: the memfd's
  st_blocks, every fallocated or touched page, whether or not this process mapped it. A world
  without workers (this one) keeps its arena in private memory: the resident bytes of its mapping,
  which RssAnon counts too and which are subtracted from "private";
- private: growth of this process's anonymous resident memory (RssAnon) over the spawn_batch, with
  the numba kernels already loaded (a 1,000-entity warm-up world, closed, before the first reading).
  The id array spawn_batch returns is the caller's (8 B per entity) and is dropped before the
  second reading; both readings first malloc_trim() so that freed heap memory is not counted.
Baselines, measured the same way: "shm bulk" (4 SharedMemory blocks of 4 MB filled from numpy, the
memory floor for the fields) and esper's Python objects (at 100k entities, scaled per entity).
"""

from __future__ import annotations

import ctypes
import json
import pathlib
import statistics
import subprocess
import sys

from tests import introspect

from .common import LoadMeter, Row

N = 1_000_000
N_ESPER = 100_000
FIELD_BYTES = 16          # 4 f32 fields per entity
OVERHEAD_LIMIT = 24       # bytes per entity beyond the fields
SAMPLES = 3
SCENARIO = "memory"
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]


def _rss_anon() -> int:
    """Resident private memory after returning malloc's free memory to the system: glibc keeps a
    freed 8 MB block (the dropped id array) in its heap once its mmap threshold has risen."""
    ctypes.CDLL(None).malloc_trim(0)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


def _child(kind: str) -> dict[str, int]:
    import gc
    import os

    import numpy as np

    from .common import EsperPosition, EsperVelocity, Position, Velocity, source_arrays

    if kind == "ours":
        import ecs

        arrs = source_arrays(N)
        values = (Position(x=arrs[0], y=arrs[1]), Velocity(x=arrs[2], y=arrs[3]))
        warm = ecs.World()
        warm.spawn_batch(1000, Position(x=arrs[0, :1000], y=0.0), Velocity(x=0.0, y=arrs[3, :1000]))
        warm.close()
        del warm
        gc.collect()
        anon0 = _rss_anon()
        world = ecs.World()
        ids = world.spawn_batch(N, *values)
        arena = introspect.arena(world)
        shared = arena.committed_bytes()
        del ids
        gc.collect()
        private = _rss_anon() - anon0 - (0 if arena.shared else shared)
        world.close()
        return {"n": N, "shared": shared, "private": private}
    if kind == "shm":
        from multiprocessing import shared_memory

        arrs = source_arrays(N)
        anon0 = _rss_anon()
        shms = [shared_memory.SharedMemory(create=True, size=N * 4) for _ in range(4)]
        for s, a in zip(shms, arrs, strict=True):
            np.ndarray((N,), np.float32, buffer=s.buf)[:] = a
        shared = sum(os.fstat(s._fd).st_blocks * 512 for s in shms)
        private = _rss_anon() - anon0
        for s in shms:
            s.close()
            s.unlink()
        return {"n": N, "shared": shared, "private": private}
    if kind == "esper":
        import esper

        src = source_arrays(N_ESPER).tolist()
        gc.collect()
        anon0 = _rss_anon()
        ents = [esper.create_entity(EsperPosition(a, b), EsperVelocity(c, d))
                for a, b, c, d in zip(*src, strict=True)]
        gc.collect()
        private = _rss_anon() - anon0
        assert len(ents) == N_ESPER
        return {"n": N_ESPER, "shared": 0, "private": private}
    raise ValueError(kind)


def _sample(kind: str) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-m", "tests.benchmarks.bench_memory", kind],
                         check=True, capture_output=True, text=True, cwd=REPO_ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _per_entity(samples: list[dict[str, int]]) -> tuple[float, float, float, dict[str, int]]:
    totals = sorted((s["shared"] + s["private"]) / s["n"] for s in samples)
    mid = min(samples, key=lambda s: abs((s["shared"] + s["private"]) / s["n"] - statistics.median(totals)))
    return statistics.median(totals), totals[0], totals[-1], mid


def run() -> list[Row]:
    with LoadMeter() as load:
        ours = [_sample("ours") for _ in range(SAMPLES)]
        shm = [_sample("shm") for _ in range(SAMPLES)]
        esper_s = [_sample("esper")]
    o_med, o_min, o_max, o = _per_entity(ours)
    s_med, _, _, s = _per_entity(shm)
    e_med, _, _, _ = _per_entity(esper_s)
    overhead = o_med - FIELD_BYTES
    ours_txt = (f"{o_med * N / 1e6:.1f} MB = {FIELD_BYTES} B fields + {overhead:.1f} B/entity "
                f"(shared {o['shared'] / N:.1f} B, private {o['private'] / N:.1f} B; "
                f"range {o_min:.1f}-{o_max:.1f} B/entity)")
    rows = [Row(SCENARIO, f"{N:,} entities, bytes per entity", ours_txt,
                f"shm bulk {s_med:.1f} B/entity "
                f"(shared {s['shared'] / N:.1f}, private {s['private'] / N:.1f})",
                o_med / s_med, "x shm", f"<= {FIELD_BYTES} + {OVERHEAD_LIMIT} B/entity",
                overhead <= OVERHEAD_LIMIT, load.load),
            Row(SCENARIO, f"{N:,} entities vs esper objects", f"{o_med:.1f} B/entity",
                f"esper ({N_ESPER // 1000}k): {e_med:.0f} B/entity", e_med / o_med, "x smaller",
                "(context, no target)", None, load.load)]
    return rows


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1])))
