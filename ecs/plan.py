"""Plans: one frame's work as stages of claim units, the same for the main process and workers.

A *task* is one system over rows [start, stop) of one table, described only by arena offsets
(`ArraySpec`), so it can be pickled to a worker and run there on its own mapping of the arena;
the main process runs the very same descriptors. A *unit* is a tuple of tasks of one system
that one process claims and runs at once: a chunk of a big table, several small tables, or
every table of a system that must run whole.

Stages come from registration order and access sets: a system joins the stage after the last
earlier system it conflicts with, so any two conflicting systems run in registration order and
non-conflicting ones may run at once (their order cannot change the result). Access of a system:
- writes: its `Mut` components, the components of its `changed=`/`added=` filters (reading
  changes flushes that component's marks), and every resource array it takes (arrays are
  assumed written: a kernel's use of an array cannot be seen from outside);
- reads: its other components. Entity ids are never written during a frame.

Rows: a table of at least SPLIT_MIN_ROWS rows is cut into chunks whose boundaries are multiples
of ALIGN rows, so no two processes share a dirty-bit word or a cache line (two processes OR-ing
bits into one word lose bits): about CHUNKS_PER_PROCESS chunks per process, none under
SPLIT_MIN_ROWS // 4 rows. Smaller tables of one system are grouped into units of about that many
rows. A system that takes a resource array is one unit (all its tables) unless it declares
`split=True`. The cut depends only on (rows, processes); which process runs which unit is
decided at run time (claims.py), so results cannot depend on it. Every stage of a frame starts
after the one before it has ended (claims.py), whoever ran its units.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .binding import BoundSystem
from .memory import ArraySpec
from .system import COMMANDS, ENTITY, READ, REMOVED, ROWS, WRITE
from .table import Table

ALIGN = 512
# Below this many rows a table is not split: a worker round trip costs tens of us while a simple
# kernel over 16k rows takes ~6 us (0.36 ns/row, measured).
SPLIT_MIN_ROWS = 1 << 16
# Chunks per process of a split table: enough that a process slowed by another (a busy core)
# holds the others up by one chunk at most, few enough that the ~5-10 us a claimed unit costs in
# Python stays small against its kernel (a near-empty system over 200k rows, run(frames=1000) on
# 2 workers: 39 us a frame with 8 chunks).
CHUNKS_PER_PROCESS = 2


class FilterSpec(NamedTuple):
    """What a filtered task needs to find its rows: the table's bit matrix, the marks to flush
    (source slot, target slots) and the reader's own pending slot."""

    matrix: ArraySpec
    flushes: tuple[tuple[int, tuple[int, ...]], ...]
    reader_slot: int

    def fused(self) -> bool:
        """Whether its rows come from one flush into the reader (bits.flush_take_words)."""
        return len(self.flushes) == 1 and self.reader_slot in self.flushes[0][1]


class Task(NamedTuple):
    system: int                        # index into Plan.systems
    table: int
    start: int
    stop: int
    args: tuple                        # per parameter: tuple of field specs, (fields, marks), spec, None or name
    filter: FilterSpec | None
    marks: tuple[ArraySpec, ...]       # dirty words of each Mut component, for mark="auto"


class SystemValues(NamedTuple):
    """What one system's tasks receive in a run besides their rows: its named values and, for a
    removed= system, the ids handed over to it and the frame they are for (None: not due)."""

    named: dict[str, object]
    removed_ids: np.ndarray | None = None
    removed_frame: int | None = None


Unit = tuple[Task, ...]


class Plan(NamedTuple):
    """A frame's work: `units[s]` are stage s's claim units, biggest first; `processes`: how many
    processes the rows were cut for; `always_due[s]`: every unit of stage s runs every frame."""

    systems: tuple[tuple[str, str], ...]     # (module, attribute) of each system
    every: tuple[int, ...]
    units: tuple[tuple[Unit, ...], ...]
    processes: int
    offsets: tuple[int, ...]                 # each system's every= offset: it runs when (frame - offset) % every == 0
    always_due: tuple[bool, ...]
    cuts: tuple[tuple[int, ...], ...]        # per stage: its home ranges when every unit is due
    claim_seed: int | None = None            # a test hook: units are claimed in a seeded random order
    worth_sharing: bool = False              # see worth_sharing(); set by build_plan, read every run
    busy_stages: int = 0                     # stages with units; likewise
    largest_stage: int = 0                   # rows of the stage with the most (the same for any processes)

    def tasks(self) -> list[Task]:
        """Every task of the plan, in stage and unit order."""
        return [task for stage in self.units for unit in stage for task in unit]

    def width(self) -> int:
        """The most units of any stage: more processes than this can have nothing to do."""
        return max((len(stage) for stage in self.units), default=0)

    def due_units(self, stage: int, frame: int, values: list[SystemValues]) -> tuple[Unit, ...]:
        """Stage `stage`'s units that run in `frame`, in the order they are claimed."""
        units = self.units[stage]
        if not self.always_due[stage]:
            units = tuple(u for u in units if due(self, u[0], frame, values[u[0].system]))
        if self.claim_seed is not None and len(units) > 1:
            order = np.random.default_rng((self.claim_seed, frame, stage)).permutation(len(units))
            units = tuple(units[k] for k in order)
        return units


def unit_rows(unit: Unit) -> int:
    """Rows a unit covers (a task without a table counts as one)."""
    return sum(max(t.stop - t.start, 1) for t in unit)


def stages_of(systems: list[BoundSystem]) -> list[list[int]]:
    """Group system indices into stages; conflicting systems keep registration order."""
    stage_of: list[int] = []
    for i, bound in enumerate(systems):
        stage = 0
        for j in range(i):
            if conflicts(systems[j], bound):
                stage = max(stage, stage_of[j] + 1)
        stage_of.append(stage)
    stages: list[list[int]] = [[] for _ in range(max(stage_of, default=-1) + 1)]
    for i, stage in enumerate(stage_of):
        stages[stage].append(i)
    return stages


def conflicts(a: BoundSystem, b: BoundSystem) -> bool:
    writes_a, reads_a = access(a)
    writes_b, reads_b = access(b)
    return bool(writes_a & (writes_b | reads_b) or writes_b & reads_a)


def access(bound: BoundSystem) -> tuple[set[object], set[object]]:
    system = bound.system
    writes: set[object] = {info.id for info in system.components(WRITE)}
    writes |= {info.id for info in (*system.changed, *system.added)}
    writes |= {("resource", name) for name in bound.array_values()}
    reads: set[object] = {info.id for info in system.components(READ)}
    return writes, reads


def split_rows(n: int, processes: int) -> list[tuple[int, int]]:
    """Chunks covering [0, n) with interior boundaries at multiples of ALIGN: about
    CHUNKS_PER_PROCESS per process, none under SPLIT_MIN_ROWS // 4 rows (one when n is under
    SPLIT_MIN_ROWS or a single process runs it)."""
    if processes <= 1 or n < SPLIT_MIN_ROWS:
        return [(0, n)] if n else []
    chunk = max(-(-n // (processes * CHUNKS_PER_PROCESS)), SPLIT_MIN_ROWS // 4)
    chunk = -(-chunk // ALIGN) * ALIGN
    return [(start, min(start + chunk, n)) for start in range(0, n, chunk)]


TaskParts = tuple[tuple, FilterSpec | None, tuple[ArraySpec, ...]]   # a Task's args, filter and marks
PartsMemo = dict[tuple[int, int], TaskParts | None]                   # (system index, table id) -> parts


def table_task(bound: BoundSystem, system_index: int, table: Table, start: int, stop: int,
               memo: PartsMemo | None = None) -> Task | None:
    """The task of one system over rows [start, stop) of one table; None when a filtered system
    cannot have rows there. `memo` keeps task_parts by (system, table) between plans."""
    key = (system_index, table.id)
    if memo is not None and key in memo:
        parts = memo[key]
    else:
        parts = task_parts(bound, table)
        if memo is not None:
            memo[key] = parts
    return None if parts is None else Task(system_index, table.id, start, stop, *parts)


def task_parts(bound: BoundSystem, table: Table) -> TaskParts | None:
    """What a system's task over a table holds besides its rows: the arguments (column, bitset and
    id specs, which keep their place as the table grows), the change filter and the marks; None
    when a filtered system cannot have rows there. They change only with the systems or the
    change readers (ChangeTracker.version)."""
    system = bound.system
    args: list[object] = []
    marks = []
    for p in system.params:
        if p.kind in (READ, WRITE):
            fields = tuple(table.column_specs[p.info.id, field] for field in p.info.fields)  # type: ignore[union-attr]
            if p.kind == READ:
                args.append(fields)
            else:
                words = table.slot_spec(table.marks_slot[p.info.id])  # type: ignore[union-attr]
                args.append((fields, words))
                if system.mark == "auto":
                    marks.append(words)
        elif p.kind == ENTITY:
            args.append(table.entity_spec)
        elif p.kind in (ROWS, REMOVED, COMMANDS):
            args.append(None)
        else:
            args.append(p.name)
    filter_spec = None
    if system.filtered:
        tracker = bound.store.changes
        reader = bound.reader()
        slot = reader.slot_by_table.get(table.id)
        if slot is None:
            return None
        flushes = []
        for cid, kind in reader.terms:
            if cid in table.component_ids:
                source = table.marks_slot[cid] if kind == "changed" else table.added_slot[cid]
                flushes.append((source, tuple(int(t) for t in tracker.targets_of(table, cid, kind))))
        filter_spec = FilterSpec(table.bit_matrix_spec, tuple(flushes), slot)
    return tuple(args), filter_spec, tuple(marks)


def takes_rows(bound: BoundSystem) -> bool:
    """Whether the system works on table rows (components, ids or filters), or only on values."""
    system = bound.system
    return system.filtered or any(p.kind in (READ, WRITE, ENTITY, ROWS) for p in system.params)


def removed_task(bound: BoundSystem, system_index: int) -> Task:
    args = tuple(p.name if p.kind not in (REMOVED, COMMANDS) else None for p in bound.system.params)
    return Task(system_index, -1, 0, 0, args, None, ())


def due(plan: Plan, task: Task, frame: int, values: SystemValues) -> bool:
    """Whether `task` runs in `frame`: frame = offset + k * every (every=, offset=); a removed= task
    runs only at the frame its ids were taken for, and only if there are any."""
    if frame < plan.offsets[task.system] or (frame - plan.offsets[task.system]) % plan.every[task.system]:
        return False
    if task.table < 0 and values.removed_ids is not None:
        return frame == values.removed_frame and values.removed_ids.shape[0] > 0
    return True


def due_frames(plan: Plan, task: Task, first_frame: int, frames: int, values: SystemValues) -> int:
    """How many of the frames [first_frame, first_frame + frames) `task` runs in: the count of
    frames `due` says yes to, in O(1)."""
    stop = first_frame + frames
    offset, every = plan.offsets[task.system], plan.every[task.system]
    if task.table < 0 and values.removed_ids is not None:
        frame = values.removed_frame
        return int(frame is not None and first_frame <= frame < stop and due(plan, task, frame, values))
    start = max(first_frame, offset)
    start += (offset - start) % every
    return max(0, -(-(stop - start) // every))


def build_plan(systems: list[BoundSystem], processes: int, stages: list[list[int]] | None = None,
               claim_seed: int | None = None, memo: PartsMemo | None = None) -> Plan:
    """Cut every system's tables into claim units for `processes` processes (1: this process
    alone, one unit per system). `stages` (from stages_of) may be passed in: it depends only on
    the systems; so may `memo` (table_task's), kept while the systems and the change readers
    are the same: a plan rebuilt because row counts changed (births and deaths every frame)
    then only cuts rows."""
    stages = stages_of(systems) if stages is None else stages
    units: list[tuple[Unit, ...]] = []
    for stage in stages:
        stage_units: list[Unit] = []
        for i in stage:
            stage_units.extend(_units_of(systems[i], i, processes, memo))
        # biggest first: an indivisible unit claimed last would end the stage alone
        stage_units.sort(key=lambda unit: -unit_rows(unit))
        units.append(tuple(stage_units))
    always = tuple(all(systems[i].system.every == 1 and systems[i].system.offset == 0
                       and not systems[i].system.removed for i in stage) for stage in stages)
    return Plan(tuple(b.address for b in systems), tuple(b.system.every for b in systems), tuple(units),
                processes, tuple(b.system.offset for b in systems), always,
                tuple(home_cuts(stage_units, processes) for stage_units in units), claim_seed,
                worth_sharing(units), sum(1 for stage_units in units if stage_units),
                max((sum(unit_rows(u) for u in stage_units) for stage_units in units), default=0))


def worth_sharing(units: list[tuple[Unit, ...]]) -> bool:
    """Whether stages of these units have work worth sharing: a stage of several units that
    covers at least SPLIT_MIN_ROWS rows. Smaller stages cost less in one process than a
    worker's wake-up (WolfSheep, 1,500 agents on 10k grass cells, several small systems a
    stage: 0.19 s in this process, 0.43 s shared)."""
    return any(len(stage) > 1 and sum(unit_rows(u) for u in stage) >= SPLIT_MIN_ROWS for stage in units)


def home_cuts(units: tuple[Unit, ...], processes: int) -> tuple[int, ...]:
    """Boundaries of an epoch's home ranges (claims.py): range p is units[cuts[p]:cuts[p + 1]].
    A unit goes to the range its middle row falls in when the epoch's rows are cut into
    `processes` equal parts (a unit of no rows counts as one)."""
    if not units:
        return (0,) * (processes + 1)
    if processes == 1:          # one range of every unit (what the cut below gives), without numpy
        return (0, len(units))
    weights = np.array([unit_rows(unit) for unit in units], np.float64)
    middles = (np.cumsum(weights) - weights / 2) * (processes / weights.sum())
    return tuple(int(c) for c in np.searchsorted(middles, np.arange(processes + 1), side="left"))


def _units_of(bound: BoundSystem, index: int, processes: int, memo: PartsMemo | None) -> list[Unit]:
    """One system's units: chunks of its big tables; its small tables grouped into units of about
    SPLIT_MIN_ROWS // 4 rows; all its tables as one unit when it must run whole (a resource
    array without split=True) or one process runs everything."""
    if bound.system.removed or not takes_rows(bound):
        # one table-less task per frame: removed= ids come with the run's values, and a system of
        # named values only (e.g. one that clears a resource) runs once, not per table
        return [(removed_task(bound, index),)]
    whole = processes <= 1 or (bool(bound.array_values()) and not bound.system.split)
    units: list[Unit] = []
    group: list[Task] = []
    group_rows = 0
    for table in bound.query.matching_tables():
        ranges = [(0, table.n)] if whole and table.n else split_rows(table.n, processes)
        for start, stop in ranges:
            task = table_task(bound, index, table, start, stop, memo)
            if task is None:
                continue
            if len(ranges) > 1:
                units.append((task,))
                continue
            group.append(task)
            group_rows += stop - start
            if not whole and group_rows >= SPLIT_MIN_ROWS // 4:
                units.append(tuple(group))
                group, group_rows = [], 0
    if group:
        units.append(tuple(group))
    return units
