"""Scenario "systems" (issue 3): what running a numba loop as a system costs, in this process.

Workloads (systems and bare twins in bench_systems_defs.py; both loops are the same source,
compiled with the same options):
1. move (pos += vel * dt, two f32 fields each) over 1,000,000 entities through `world.step`
   (mark="auto": every row is marked changed after the call) against the same loop over
   (a) private numpy copies of the four columns, target <= 1.10x, and (b) the world's own
   columns (a world without workers: private memory, huge pages; ecs/memory.py), same target.
   Timed in alternation (paired.bench_paired).
2. Fixed cost of one system in `step`: the same at 10,000 entities, step time minus the bare
   loop's time on the same columns; target < 15 us.
3. A changed= system (sum_changed: sums Position.x over its rows) after `set_batch` wrote
   Position on 1% of 1,000,000 rows chosen at random (untimed, before each timed step);
   baseline: the anchors' bitset walk (`sum_set_bits`, ../../../shared/anchors/kernels.py,
   reimplemented below), which finds the same rows in a bitset and does the same sum on them:
   the kernel's own work included; each timed after its own set_batch. Target <= 2x.
4. Start-up: wall time of a fresh `python -c` from its start to a line printed after the first
   completed `step` of a 3-system world of 10,000 entities, kernels already in numba's cache
   (one untimed run first fills it); median of 5; target < 1 s. Baseline (context): a fresh
   process that imports numpy and numba and calls one cached kernel.
"""

from __future__ import annotations

import mmap
import struct
import time

import numpy as np

import ecs

from . import bench_systems_defs as defs
from .bench_changed_query import sum_set_bits
from .common import LoadMeter, Position, Row, Stats, Velocity, fmt_stats, source_arrays
from .paired import bench_paired, time_to_marker

SCENARIO = "systems"
N = 1_000_000
N_SMALL = 10_000
DIRTY = N // 100
CHANGED_REPS = 31
STARTUP_RUNS = 5
DT = 0.01

STARTUP_CHILD = """
import ecs
from tests.benchmarks.common import Position, Velocity
from tests.benchmarks.bench_systems_defs import Heat, accelerate, cool, move
world = ecs.World(workers={workers})
world.spawn_batch(10_000, Position(x=0.0, y=0.0), Velocity(x=1.0, y=0.5), Heat(t=1.0))
for s in (accelerate, move, cool):
    world.add_system(s)
world.step(dt=0.01, gravity=-9.81)
print("READY", flush=True)
world.close()
"""

FLOOR_CHILD = """
import numpy as np
import numba
from ecs.kernels import bits
bits.fill_range(np.zeros(2, np.uint64), 0, 64)
print("READY", flush=True)
"""


def thp_fraction(arrays: list[np.ndarray]) -> float | None:
    """Fraction of the arrays' 4 KiB pages that lie in transparent huge pages (pagemap +
    kpageflags, which need root); None where they cannot be read."""
    page, thp, total = mmap.PAGESIZE, 0, 0
    try:
        with open("/proc/self/pagemap", "rb") as pagemap, open("/proc/kpageflags", "rb") as kpageflags:
            for a in arrays:
                first, last = a.ctypes.data // page, (a.ctypes.data + a.nbytes - 1) // page
                pagemap.seek(first * 8)
                for entry in np.frombuffer(pagemap.read((last - first + 1) * 8), np.uint64).tolist():
                    total += 1
                    frame = entry & ((1 << 55) - 1)
                    if entry >> 63 and frame:
                        kpageflags.seek(frame * 8)
                        thp += (struct.unpack("<Q", kpageflags.read(8))[0] >> 22) & 1   # KPF_THP
    except OSError:
        return None
    return thp / total if total else None


def _shmem_thp() -> str:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/shmem_enabled") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def _percent(fraction: float | None) -> str:
    return "unknown (no root)" if fraction is None else f"{fraction:.0%}"


def columns(world: ecs.World) -> tuple[np.ndarray, ...]:
    batch = next(iter(world.query(Position, Velocity)))
    return batch[Position].x, batch[Position].y, batch[Velocity].x, batch[Velocity].y


def move_rows(notes: list[str]) -> list[Row]:
    arrs = source_arrays(N)
    world = ecs.World()
    world.spawn_batch(N, Position(x=arrs[0], y=arrs[1]), Velocity(x=arrs[2], y=arrs[3]))
    world.add_system(defs.move)
    shared = columns(world)
    block = np.empty(4 * N, np.float32)   # >= 4 MiB: numpy advises huge pages for it
    private = [block[k * N:(k + 1) * N] for k in range(4)]
    for column, values in zip(private, shared, strict=True):
        column[:] = values
    small_pages = mmap.mmap(-1, 4 * N * 4, flags=mmap.MAP_PRIVATE)   # private, THP refused
    small_pages.madvise(mmap.MADV_NOHUGEPAGE)
    small_block = np.frombuffer(small_pages, np.float32)
    private_4k = [small_block[k * N:(k + 1) * N] for k in range(4)]
    for column, values in zip(private_4k, shared, strict=True):
        column[:] = values
    world.step(dt=DT)                     # correctness, untimed: one step = one bare call
    defs.move_bare(*private, DT)
    assert all(np.array_equal(a, b) for a, b in zip(shared, private, strict=True))
    with LoadMeter() as load:
        ours, bare_private, bare_4k, bare_shared = bench_paired([
            lambda: world.step(dt=DT), lambda: defs.move_bare(*private, DT),
            lambda: defs.move_bare(*private_4k, DT), lambda: defs.move_bare(*shared, DT)], blocks=True)
    thp_private, thp_4k = thp_fraction(private), thp_fraction(private_4k)
    thp_shared = thp_fraction(list(shared))
    world.close()
    notes.append(
        f"move @1M: {_percent(thp_private)} of the private columns' pages lie in transparent huge pages, "
        f"{_percent(thp_4k)} of the MADV_NOHUGEPAGE private columns', {_percent(thp_shared)} of the world's "
        f"columns'. A world without workers (this one) keeps its columns in private memory with huge pages on "
        f"the 2 MiB blocks they fill; a world with workers keeps them in a memfd, which cannot use THP on this "
        f"machine (/sys/kernel/mm/transparent_hugepage/shmem_enabled: {_shmem_thp()}): a TLB entry per 4 KiB, "
        f"as in the 4 KiB row. The private columns are slices of one 16 MB numpy array (numpy advises THP "
        f"from 4 MiB: separate 1M f32 arrays of 4.0 MB would get none). The bare loop took "
        f"{bare_4k.median / bare_private.median:.2f}x as long on private 4 KiB pages and "
        f"{bare_shared.median / bare_private.median:.2f}x on the world's columns as on private huge pages. "
        f"Step vs the world's columns is what a system adds to the same loop on the same memory: argument "
        f"building, numba dispatch, the 1M-bit mark fill (mark=auto) and the frame loop.")
    rows = []
    for label, base, target in (("bare loop, private numpy columns", bare_private, True),
                                ("bare loop, private columns on 4 KiB pages (no THP)", bare_4k, False),
                                ("bare loop, the world's own columns", bare_shared, True)):
        ratio = ours.median / base.median
        rows.append(Row(SCENARIO, f"move @{N:,}: step vs {label}", fmt_stats(ours), fmt_stats(base),
                        ratio, "x bare", "<= 1.10x" if target else "(context)",
                        ratio <= 1.10 if target else None, load.load))
    return rows


def overhead_row() -> Row:
    arrs = source_arrays(N_SMALL)
    world = ecs.World()
    world.spawn_batch(N_SMALL, Position(x=arrs[0], y=arrs[1]), Velocity(x=arrs[2], y=arrs[3]))
    world.add_system(defs.move)
    shared = columns(world)
    with LoadMeter() as load:
        ours, bare = bench_paired([lambda: world.step(dt=DT), lambda: defs.move_bare(*shared, DT)])
    world.close()
    overhead = ours.median - bare.median
    return Row(SCENARIO, f"one system's fixed cost in step @{N_SMALL:,} (step - bare loop)", fmt_stats(ours),
               f"bare loop, same columns: {fmt_stats(bare)}", overhead * 1e6, "us overhead", "< 15 us",
               overhead < 15e-6, load.load)


def changed_row() -> Row:
    arrs = source_arrays(N)
    world = ecs.World()
    ids = world.spawn_batch(N, Position(x=arrs[0], y=arrs[1]), Velocity(x=arrs[2], y=arrs[3]))
    world.resources["total"] = np.zeros(1, np.float64)
    total = world.resources["total"]
    world.add_system(defs.sum_changed)
    world.step()                             # the first look sees every row: consume that
    rows = np.sort(np.random.default_rng(7).choice(N, DIRTY, replace=False))
    dirty_ids = ids[rows]
    new_value = Position(x=np.float32(0.5), y=np.float32(0.25))
    mask = np.zeros(N, np.bool_)
    mask[rows] = True
    words = np.packbits(mask, bitorder="little").view(np.uint64)
    column = columns(world)[0]
    world.set_batch(dirty_ids, new_value)
    expect = float(column[rows].sum(dtype=np.float64))
    total[0] = 0.0
    world.step()
    assert np.isclose(total[0], expect) and np.isclose(sum_set_bits(words, column), expect)
    sum_set_bits(words, column)
    ours_s, base_s = [], []
    clock = time.perf_counter
    with LoadMeter() as load:
        # each timed call right after its own set_batch (untimed), in alternating order: a call that
        # follows the other one finds the 10k rows' cache lines already fetched by it
        for rep in range(CHANGED_REPS):
            for which in ((0, 1) if rep % 2 else (1, 0)):
                world.set_batch(dirty_ids, new_value)
                t0 = clock()
                if which == 0:
                    world.step()
                else:
                    sum_set_bits(words, column)
                (ours_s if which == 0 else base_s).append(clock() - t0)
    world.close()
    ours, base = Stats(ours_s), Stats(base_s)
    ratio = ours.median / base.median
    return Row(SCENARIO, f"changed=[Position] system, 1% of {N:,} rows set", fmt_stats(ours),
               f"anchors' bitset walk + sum: {fmt_stats(base)}", ratio, "x bitset", "<= 2x bitset walk",
               ratio <= 2.0, load.load)


def startup_row() -> Row:
    code = STARTUP_CHILD.format(workers=0)
    time_to_marker(code)                     # fills numba's cache (if it was not) untimed
    time_to_marker(FLOOR_CHILD)
    with LoadMeter() as load:
        ours_s, floor_s = [], []
        for _ in range(STARTUP_RUNS):
            ours_s.append(time_to_marker(code))
            floor_s.append(time_to_marker(FLOOR_CHILD))
    ours, floor = Stats(ours_s), Stats(floor_s)
    return Row(SCENARIO, "fresh process to first step done, 3 systems, cached kernels", fmt_stats(ours),
               f"python + numpy + numba + 1 cached kernel: {fmt_stats(floor)}", ours.median / floor.median,
               "x floor", "< 1 s", ours.median < 1.0, load.load)


def run() -> list[Row]:
    notes: list[str] = []
    rows = move_rows(notes)
    rows.append(overhead_row())
    rows.append(changed_row())
    rows.append(startup_row())
    for note in notes:
        print(f"note ({SCENARIO}): {note}")
    return rows

