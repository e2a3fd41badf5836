"""Plans: one frame's work as stages of tasks, the same for the main process and workers.

A *task* is one system over rows [start, stop) of one table, described only by arena offsets
(`ArraySpec`), so it can be pickled to a worker and run there on its own mapping of the arena;
the main process runs the very same descriptors when `workers=0`.

Stages come from registration order and access sets: a system joins the stage after the last
earlier system it conflicts with, so any two conflicting systems run in registration order and
non-conflicting ones may run at once (their order cannot change the result). Access of a system:
- writes: its `Mut` components, the components of its `changed=`/`added=` filters (reading
  changes flushes that component's marks), and every resource array it takes (arrays are
  assumed written: a kernel's use of an array cannot be seen from outside);
- reads: its other components. Entity ids are never written during a frame.

Rows: a table of at least SPLIT_MIN_ROWS rows is split across all workers in ranges whose
boundaries are multiples of ALIGN rows, so no two workers share a dirty-bit word or a cache line
(two processes OR-ing bits into one word lose bits). The split depends only on (rows, workers), so the
same rows stay on the same worker frame after frame. Smaller tables go whole to the least loaded
worker of the stage. A system that takes a resource array runs whole on one worker unless it
declares `split=True`.
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


class FilterSpec(NamedTuple):
    """What a filtered task needs to find its rows: the table's bit matrix, the marks to flush
    (source slot, target slots) and the reader's own pending slot."""

    matrix: ArraySpec
    flushes: tuple[tuple[int, tuple[int, ...]], ...]
    reader_slot: int


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


class Plan(NamedTuple):
    """Stages of tasks per worker; `barriers[s]` says whether workers meet after stage s."""

    systems: tuple[tuple[str, str], ...]     # (module, attribute) of each system
    every: tuple[int, ...]
    tasks: tuple[tuple[tuple[Task, ...], ...], ...]   # tasks[worker][stage]
    barriers: tuple[bool, ...]
    participants: tuple[int, ...]            # workers with any task
    offsets: tuple[int, ...] = ()            # each system's every= offset: it runs when (frame - offset) % every == 0


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


def split_rows(n: int, workers: int) -> list[tuple[int, int]]:
    """Ranges covering [0, n) with interior boundaries at multiples of ALIGN, one per worker
    (fewer when n is small)."""
    chunk = -(-n // workers)
    chunk = -(-chunk // ALIGN) * ALIGN
    return [(start, min(start + chunk, n)) for start in range(0, n, chunk)]


def table_task(bound: BoundSystem, system_index: int, table: Table, start: int, stop: int) -> Task | None:
    """The task of one system over rows [start, stop) of one table; None when a filtered system
    cannot have rows there."""
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
    return Task(system_index, table.id, start, stop, tuple(args), filter_spec, tuple(marks))


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


def build_plan(systems: list[BoundSystem], workers: int, stages: list[list[int]] | None = None) -> Plan:
    """Assign every system's tables (or row ranges) to `workers` executors (1 = this process).
    `stages` (from stages_of) may be passed in: it depends only on the systems."""
    stages = stages_of(systems) if stages is None else stages
    per_worker: list[list[list[Task]]] = [[[] for _ in stages] for _ in range(workers)]
    for s, stage in enumerate(stages):
        load = np.zeros(workers, np.int64)
        for i in stage:
            bound = systems[i]
            if bound.system.removed or not takes_rows(bound):
                # one table-less task per frame: removed= ids come with the run's values, and a
                # system of named values only (e.g. one that clears a resource) runs once, not per table
                worker = int(np.argmin(load))
                per_worker[worker][s].append(removed_task(bound, i))
                load[worker] += 1
                continue
            whole_on = None
            if bound.array_values() and not bound.system.split:
                whole_on = int(np.argmin(load))   # one worker for every table of this system
            for table in bound.query.matching_tables():
                n = table.n
                if n == 0:
                    continue
                if whole_on is None and workers > 1 and n >= SPLIT_MIN_ROWS:
                    ranges = list(enumerate(split_rows(n, workers)))
                else:
                    ranges = [(whole_on if whole_on is not None else int(np.argmin(load)), (0, n))]
                for worker, (start, stop) in ranges:
                    task = table_task(bound, i, table, start, stop)
                    if task is not None:
                        per_worker[worker][s].append(task)
                        load[worker] += stop - start
    participants = tuple(w for w in range(workers) if any(per_worker[w]))
    local = [not bound.array_values() for bound in systems]
    barriers = _barriers(per_worker, len(participants), local)
    return Plan(tuple(b.address for b in systems), tuple(b.system.every for b in systems),
                tuple(tuple(tuple(stage) for stage in w) for w in per_worker), barriers, participants,
                tuple(b.system.offset for b in systems))


def _barriers(per_worker: list[list[list[Task]]], participants: int,
              local: list[bool]) -> tuple[bool, ...]:
    """Whether workers meet after each stage.

    A kernel sees only its own slice's views, so a task on a table slice that takes no resource
    array (`local[system]`) touches only its own rows. Workers must meet before a stage when
    work since the last meeting spans more than one worker and the stage has a task that is not
    local, non-local work happened since, or a task that touches rows (table, range) another
    worker touched since the last meeting. Consecutive split stages over the same rows therefore
    need no barrier: a row stays on its worker. The last stage ends the frame: workers meet there
    whenever more than one takes part, so that none runs a frame after one in which another
    failed (a run's last frame needs no meeting: the answers end it)."""
    stages = len(per_worker[0]) if per_worker else 0
    touched: dict[int, list[tuple[int, int, int]]] = {}
    workers_since: set[int] = set()
    shared = False          # non-local work since the last meeting

    def tasks_of(stage: int) -> list[tuple[int, Task]]:
        return [(w, task) for w, ws in enumerate(per_worker) for task in ws[stage]]

    def record(stage: int) -> None:
        nonlocal shared
        for w, task in tasks_of(stage):
            workers_since.add(w)
            if task.table >= 0 and local[task.system]:
                touched.setdefault(task.table, []).append((task.start, task.stop, w))
            else:
                shared = True

    def must_meet(stage: int) -> bool:
        following = tasks_of(stage)
        if not following or len(workers_since | {w for w, _ in following}) <= 1:
            return False
        if shared:
            return True
        for w, task in following:
            if task.table < 0 or not local[task.system]:
                return True
            for start, stop, other in touched.get(task.table, ()):
                if other != w and start < task.stop and task.start < stop:
                    return True
        return False

    out = []
    if stages:
        record(0)
    for stage in range(1, stages):
        meet = must_meet(stage)
        out.append(meet)
        if meet:
            touched.clear()
            workers_since.clear()
            shared = False
        record(stage)
    if stages:
        out.append(participants > 1)
    return tuple(out)
