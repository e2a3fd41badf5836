"""Scenario "workers" (issue 4): the same systems on 2 worker processes against this process.

This machine has 2 cores, so workers=2 puts one worker on each core with the main process
beside them, polling for their answers and yielding its core at each poll; anything else
running on the VM takes cores from them (see "other load").

Workloads (systems in bench_systems_defs.py):
1. heavy, the anchors' compute-bound kernel (~90 ns/entity on one core), over 1,000,000
   entities: world.step with workers=2 against workers=0, timed in alternation; target
   >= 1.8x faster. Both worlds must end bit-for-bit equal.
2. move over 1,000,000 entities, the same way, per step() and per frame of run(frames=100);
   target >= 1.4x faster (a memory-bound loop: the anchors measured 1.54x for two raw processes
   with a semaphore pair, against a single-thread loop of ~550 us; ours runs ~250 us).
3. Frame overhead: run(frames=1000) of five small systems over one table of 10,000 entities
   (four in the first stage, move after accelerate in the second) on workers=2. Per-frame
   overhead = the frame's time minus its critical path of bare kernel work (per stage, the
   busiest worker's sum of kernel-only times, measured here in this process). Baseline: one
   raw blocking round trip between two processes (the anchors' `ospipe` mechanism: 1 byte
   over one os.pipe and back over another), median of 5,000 after 500 warm-up, with the two
   processes pinned to different cores, as the two workers run; target <= 1.5x. The unpinned
   round trip (context) is a same-core hand-off: the woken process takes the core its caller
   just left, which two workers busy at once cannot do.
4. Start-up: a fresh `python -c` with World(workers=2) to its first completed step of a 3-system
   world, kernels cached; target < 1 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

import ecs
from tests import introspect

from . import bench_systems_defs as defs
from .bench_systems import STARTUP_CHILD, STARTUP_RUNS
from .common import Position, Row, Stats, Velocity, bench, fmt_s, fmt_stats, source_arrays
from .paired import TreeLoadMeter as LoadMeter
from .paired import bench_paired, time_to_marker

SCENARIO = "workers"
N = 1_000_000
N_FRAME = 10_000
FRAMES = 1000
DT = 0.01
GRAVITY = -9.81
ROUND_TRIPS, ROUND_TRIPS_WARM = 5000, 500

ECHO_CHILD = """
import os, sys
go, done, cpu = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
if cpu >= 0:
    os.sched_setaffinity(0, {cpu})
while os.read(go, 1) == b"g":
    os.write(done, b"d")
"""


def round_trip(pinned: bool) -> Stats:
    """Seconds of one os.pipe ping-pong with a fresh process (anchors' dispatch.py `ospipe`):
    per-trip times of ROUND_TRIPS trips, as a Stats (median, min, max)."""
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()
    cpus = os.sched_getaffinity(0)
    pin = pinned and len(cpus) >= 2
    main_cpu, echo_cpu = sorted(cpus)[:2] if pin else (-1, -1)
    child = subprocess.Popen([sys.executable, "-c", ECHO_CHILD, str(go_r), str(done_w), str(echo_cpu)],
                             pass_fds=(go_r, done_w))
    os.close(go_r)
    os.close(done_w)
    ns = np.empty(ROUND_TRIPS, np.int64)
    clock = time.perf_counter_ns
    try:
        if pin:
            os.sched_setaffinity(0, {main_cpu})
        for _ in range(ROUND_TRIPS_WARM):
            os.write(go_w, b"g")
            os.read(done_r, 1)
        for i in range(ROUND_TRIPS):
            t0 = clock()
            os.write(go_w, b"g")
            os.read(done_r, 1)
            ns[i] = clock() - t0
    finally:
        os.sched_setaffinity(0, cpus)
        os.write(go_w, b"q")
        child.wait()
        os.close(go_w)
        os.close(done_r)
    return Stats((ns / 1e9).tolist())


def world_of(system: ecs.System, workers: int, arrs: np.ndarray) -> ecs.World:
    world = ecs.World(workers=workers)
    world.spawn_batch(arrs.shape[1], Position(x=arrs[0], y=arrs[1]), Velocity(x=arrs[2], y=arrs[3]))
    world.add_system(system)
    return world


def columns(world: ecs.World) -> list[np.ndarray]:
    batch = next(iter(world.query(Position, Velocity)))
    return [batch[Position].x, batch[Position].y, batch[Velocity].x, batch[Velocity].y]


def speedup_rows(system: ecs.System, target: float, arrs: np.ndarray, frames: int = 0) -> list[Row]:
    """step() with workers=2 against workers=0, each world stepped in short blocks (paired, so both
    meet the same load; in blocks, so neither evicts the other's columns from the caches); with
    `frames`, also run(frames=frames) per frame."""
    here, there = world_of(system, 0, arrs), world_of(system, 2, arrs)
    with LoadMeter() as load:
        t0, t2 = bench_paired([lambda: here.step(dt=DT), lambda: there.step(dt=DT)], blocks=True)
    cases = [("step()", t0, t2, load.load)]
    if frames:
        with LoadMeter() as load:
            r0, r2 = bench_paired([lambda: here.run(frames=frames, dt=DT),
                                   lambda: there.run(frames=frames, dt=DT)], blocks=True, min_rep_s=0.2)
        per_frame = 1 / frames
        cases.append((f"run(frames={frames}) per frame", r0.scaled(per_frame), r2.scaled(per_frame),
                      load.load))
    equal = all(np.array_equal(a, b) for a, b in zip(columns(here), columns(there), strict=True))
    here.close()
    there.close()
    assert equal, f"{system.name}: workers=2 and workers=0 ended with different columns"
    rows = []
    for label, ours0, ours2, meter in cases:
        speedup = ours0.median / ours2.median
        rows.append(Row(SCENARIO, f"{system.name} @{N:,}: {label}, workers=2 vs workers=0", fmt_stats(ours2),
                        f"workers=0: {fmt_stats(ours0)}", speedup, "x faster", f">= {target}x",
                        speedup >= target, meter))
    return rows


def five_system_world(workers: int) -> ecs.World:
    arrs = source_arrays(N_FRAME)
    world = ecs.World(workers=workers)
    world.spawn_batch(N_FRAME, Position(x=arrs[0], y=arrs[1]), Velocity(x=arrs[2], y=arrs[3]),
                      defs.Spin(angle=0.0, rate=arrs[0]), defs.Heat(t=1.0), defs.Life(left=1 << 30))
    for system in defs.FIVE:
        world.add_system(system)
    return world


def critical_path_work(plan_world: ecs.World) -> float:
    """Seconds of bare kernel work on the critical path of one frame of `plan_world`'s plan:
    per stage, the longest unit or the stage's work shared by its processes, whichever is more,
    from kernel-only times measured in this process on a workers=0 twin (each kernel called on
    its prepared arguments over whole tables: no step around it)."""
    twin = five_system_world(0)
    twin.step(dt=DT, gravity=GRAVITY)
    schedule = introspect.schedule(twin)
    values, _ = schedule.values({"dt": DT, "gravity": GRAVITY}, 1)
    kernel_s = {}
    for task in schedule.plan(0).tasks():
        system = schedule.systems[task.system].system
        args = introspect.kernel_arguments(twin, task, values[task.system])
        kernel_s[task.system] = bench(lambda: system.kernel(*args)).median   # noqa: B023 - called at once
    twin.close()
    rows = {t.system: 0 for t in introspect.plan(plan_world).tasks()}
    for t in introspect.plan(plan_world).tasks():
        rows[t.system] += t.stop - t.start
    plan = introspect.plan(plan_world)

    def unit_s(unit: tuple) -> float:
        return sum(kernel_s[t.system] * (t.stop - t.start) / rows[t.system] for t in unit)

    return sum(max(max(map(unit_s, stage)), sum(map(unit_s, stage)) / plan.processes)
               for stage in plan.units if stage)


def frame_rows() -> list[Row]:
    world = five_system_world(2)
    world.run(frames=10, dt=DT, gravity=GRAVITY)        # starts the workers, ships the plan
    work = critical_path_work(world)
    with LoadMeter() as load:
        frames = Stats([_timed_run(world) / FRAMES for _ in range(7)])
        pinned = round_trip(pinned=True)
        unpinned = round_trip(pinned=False)
    world.close()
    overhead = frames.median - work
    ratio = overhead / pinned.median
    ours = f"{fmt_s(overhead)} ({fmt_stats(frames)} per frame - {fmt_s(work)} of kernels)"
    return [Row(SCENARIO, f"run(frames={FRAMES}), 5 systems @{N_FRAME:,}, workers=2: overhead per frame",
                ours, f"os.pipe round trip, 2 processes pinned to 2 cores: {fmt_stats(pinned)}", ratio,
                "x round trip", "<= 1.5x", ratio <= 1.5, load.load),
            Row(SCENARIO, "the same overhead vs an unpinned round trip (same-core hand-off)", fmt_s(overhead),
                f"os.pipe round trip, unpinned: {fmt_stats(unpinned)}", overhead / unpinned.median,
                "x round trip", "(context, no target)", None, load.load)]


def _timed_run(world: ecs.World) -> float:
    t0 = time.perf_counter()
    world.run(frames=FRAMES, dt=DT, gravity=GRAVITY)
    return time.perf_counter() - t0


def startup_row() -> Row:
    code = STARTUP_CHILD.format(workers=2)
    time_to_marker(code)                     # fills numba's cache (if it was not) untimed
    with LoadMeter() as load:
        ours = Stats([time_to_marker(code) for _ in range(STARTUP_RUNS)])
        here = Stats([time_to_marker(STARTUP_CHILD.format(workers=0)) for _ in range(STARTUP_RUNS)])
    return Row(SCENARIO, "fresh process, World(workers=2), to first step done, 3 systems, cached kernels",
               fmt_stats(ours), f"the same with workers=0: {fmt_stats(here)}", ours.median / here.median,
               "x workers=0", "< 1 s", ours.median < 1.0, load.load)


def run() -> list[Row]:
    arrs = source_arrays(N)
    rows = speedup_rows(defs.heavy, 1.8, arrs) + speedup_rows(defs.move, 1.4, arrs, frames=100)
    rows += frame_rows()
    rows += sixty_hz_rows(arrs)
    rows.append(startup_row())
    cores = len(os.sched_getaffinity(0))
    print(f"note ({SCENARIO}): this machine has {cores} cores. workers=2 puts a worker on each, and the main "
          f"process only supervises; with fewer workers than cores it takes units too. Units are claimed "
          f"(home ranges first), so a worker that shares its core with another process runs fewer. "
          f"Between runs, workers poll a sequence number in shared memory for 1 ms (yielding their core at "
          f"each poll) and then sleep on it: step() in a loop wakes no one through the kernel, a 60 Hz loop "
          f"wakes them every frame.")
    return rows


def sixty_hz_rows(arrs: np.ndarray) -> list[Row]:
    """step() of move over N rows once every 16 ms (a 60 Hz loop: workers asleep at each step),
    workers=2 against workers=0, alternating; informational."""
    here, there = world_of(defs.move, 0, arrs), world_of(defs.move, 2, arrs)
    times: dict[int, list[float]] = {0: [], 2: []}
    with LoadMeter() as load:
        for _ in range(60):
            for workers, world in ((0, here), (2, there)):
                time.sleep(0.016)
                t0 = time.perf_counter()
                world.step(dt=DT)
                times[workers].append(time.perf_counter() - t0)
    here.close()
    there.close()
    asleep, alone = Stats(times[2]), Stats(times[0])
    return [Row(SCENARIO, f"move @{N:,}: step() every 16 ms (60 Hz), workers=2 vs workers=0", fmt_stats(asleep),
                f"workers=0: {fmt_stats(alone)}", alone.median / asleep.median, "x faster", "(context, no target)",
                None, load.load)]
