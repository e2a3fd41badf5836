"""Schedule: a world's systems in registration order, and the frame loop that runs them.

Systems take effect in the order they are added; `step()` runs one frame: every system whose
`every=N` divides the frame number (frames count from the world's first step), each over every
non-empty matching table. A filtered system (changed=/added=) is given only the rows that
changed since it last ran (changes.py) and is not called where none did.

The frame's work is a plan (plan.py), cached until the world's structure changes (a spawn,
despawn, archetype move, new system or new change reader). With `workers=0` this process runs
the plan's tasks through an Executor; with workers, the pool (pool.py) runs the same tasks, many
frames per round trip. Kernel commands are applied after every frame (commands.py), so a world
whose systems take `Commands` makes one round trip per frame.

The schedule owns the frame counter: only it advances the counter (after the frames a run
finished, and past a failed frame), and `start_at` sets it for restore and load.

Per system and table in this process: ~0.3 us per column view and ~1.5 us of numba dispatch,
plus one fill of dirty words per `Mut` component with mark="auto"; a unit of several tables
runs in one compiled call instead (driver.py, ~0.15 us per table).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .binding import BoundSystem, check_importable
from .changes import RemovalCursor
from .commands import CommandBuffers, apply_records, buffer_view
from .errors import InvalidArgumentError, KernelError, SystemDefinitionError
from .executor import Executor, stats_views
from .interrupts import held_interrupts
from .mailbox import MAX_RUN_UNITS
from .plan import SPLIT_MIN_ROWS, PartsMemo, Plan, SystemValues, Unit, build_plan, stages_of
from .pool import WorkerPool, main_takes_part, shippable
from .progress import Progress
from .record_lookups import RecordLookups
from .resources import Resources
from .store import Store
from .system import COMMANDS, VALUE, System, array_key

HandedOver = tuple[int, Any, RemovalCursor]   # (system index, reader, where its look ends)
# Schedule._values_key: resources' and systems' versions, keyword names, ids of the keyword values
ValuesKey = tuple[int, int, tuple[str, ...], tuple[int, ...]]
_SCALAR_TYPES = (int, float, bool)
_NO_VALUES = SystemValues({})   # of a system that takes no named value (never written to)
# A test hook: when set (to an integer) as a world is created, its units are claimed in an order
# shuffled by that seed, so tests can show that results do not depend on who runs what when.
CLAIM_SEED_VARIABLE = "ECS_CLAIM_SEED"


class Schedule:
    """Registration-ordered systems of one world, its frame counter, its cached plan and, with
    workers, its worker pool (started at the first run that needs it)."""

    def __init__(self, store: Store, resources: Resources, workers: int, step_timeout: float | None) -> None:
        self.store = store
        self.resources = resources
        self.workers = workers
        self.step_timeout = step_timeout
        self.systems: list[BoundSystem] = []
        self.frame = 0
        self.stats_rows = np.zeros((0, 3))    # per system: kernel calls, rows, seconds
        self._stats_views: list[memoryview[float]] = []   # its rows, as the executor takes them
        self.pool: WorkerPool | None = None
        self.commands: CommandBuffers | None = None   # made when the first system takes Commands
        self.record_lookups = RecordLookups(store)     # what checking their records reads, made on use
        self._systems_version = 0          # bumped by every add and remove: keys the cached plan
        self._plans: dict[int, Plan] = {}   # by processes, for the structure of _plan_key
        self._plans_before: dict[int, Plan] = {}   # the same for the structure before it
        self._plan_key: tuple[object, ...] = ()
        self._shape: tuple[int, ...] = ()   # rows of every table, as of structure version _shape_version
        self._shape_version = -1
        # values(): (key, the keyword values it names by id, kept alive so no id is reused, result)
        # (key, the keywords' values (kept alive), the values, each array value with its array_key)
        self._values_cached: tuple[ValuesKey | None, tuple[object, ...], list[SystemValues],
                                   list[tuple[np.ndarray, tuple[object, ...]]]] = (None, (), [], [])
        self._executor: Executor | None = None
        self._stages: list[list[int]] = []
        self._stages_key: tuple[object, ...] = ()
        self._parts_memo: PartsMemo = {}      # build_plan's, while the systems and change readers stay
        self._parts_key: tuple[int, int] | None = None
        self._claim_seed = os.environ.get(CLAIM_SEED_VARIABLE)   # read once: ~1 us per step
        self._drivers_ready: Plan | None = None   # the plan whose drivers were compiled here
        # unused_keywords': (systems version, the named values they take, the names already reported)
        self._keywords: tuple[int, frozenset[str], frozenset[str]] = (-1, frozenset(), frozenset())

    def add(self, system: System) -> BoundSystem:
        if not isinstance(system, System):
            raise SystemDefinitionError(getattr(system, "__name__", repr(system)),
                                        "add_system() takes a system: decorate the function with @ecs.system")
        if any(b.system is system for b in self.systems):
            raise SystemDefinitionError(system.name, "this system was already added to the world")
        if any(b.name == system.name for b in self.systems):   # names key stats() and errors
            raise SystemDefinitionError(system.name, "another system of this name is already in the world; "
                                                     "give one of them another name with @system(name=...)")
        if self.workers:
            check_importable(system)
        bound = BoundSystem(self.store, self.resources, system, len(self.systems))
        bound.try_compile(bound.resolve_values({}, required=False))
        if system.filtered:
            # its change reader now, not while a plan is built: the flushes of a plan's filtered
            # tasks name the readers that exist when it is built (one registered while building
            # it, system after system, was left out of the earlier systems' flushes for its run)
            bound.reader()
        if any(p.kind == COMMANDS for p in system.params) and self.commands is None:
            self.commands = CommandBuffers(self.store.arena, self.workers + 1)
        self.systems.append(bound)
        self._set_stats_rows(np.vstack([self.stats_rows, np.zeros((1, 3))]))
        self._systems_version += 1
        return bound

    def remove(self, system: System) -> None:
        """Take an added system out of the frame and free its change reader; the others keep
        their order and figures."""
        index = next((b.index for b in self.systems if b.system is system), None)
        if index is None:
            raise InvalidArgumentError(f"remove_system({system!r}): it was not added to this world")
        self.systems.pop(index).query.close()
        for k, bound in enumerate(self.systems):
            bound.index = k
        self._set_stats_rows(np.delete(self.stats_rows, index, axis=0))
        if self.pool is not None:
            self.pool.forget_system(index)
        self._systems_version += 1

    def unused_keywords(self, params: Mapping[str, object]) -> tuple[list[str], list[str]]:
        """The keywords of a step/run that no system takes as a named value and that were not
        reported before for the same systems (each such name once), and the names the systems do
        take. ~0.35 us when every keyword is known."""
        version, taken, reported = self._keywords
        if version != self._systems_version:
            taken = frozenset(p.name for b in self.systems for p in b.system.params if p.kind == VALUE)
            reported = frozenset()
            self._keywords = (self._systems_version, taken, reported)
        unused = [name for name in params if name not in taken and name not in reported]
        if unused:
            self._keywords = (self._systems_version, taken, reported.union(unused))
        return unused, sorted(taken) if unused else []

    def start_at(self, frame: int) -> None:
        """Set the frame counter (restore, load): the next step runs frame `frame`."""
        self.frame = frame

    def plan(self, workers: int) -> Plan:
        """The cached plan for the world's current structure on `workers` workers and, where it
        takes part (pool.main_takes_part), this process."""
        if workers == 0:
            processes = 1
        elif self.pool is not None and workers == self.pool.size:    # the pool's own decision, made once
            processes = workers + int(self.pool.main_takes_part)
        else:
            processes = workers + int(main_takes_part(workers, self.step_timeout))
        seed = self._claim_seed
        store = self.store
        if store.structure_version != self._shape_version:
            # a plan depends on the tables there are and their row counts, not on which entities
            # they hold (columns keep their place in the arena as tables grow): a change that
            # leaves every count as it was (the demo's emitter despawns and respawns as many rows
            # every 4 frames) keeps the plans, where two rebuilds cost ~0.5 ms
            self._shape_version, self._shape = store.structure_version, tuple(t.n for t in store.tables)
        key = (self._shape, store.changes.version, self._systems_version, seed)
        if key != self._plan_key:
            # at most two live per structure; none kept across a change of the systems: a system
            # removed and added again (or redefined under its name, as a notebook cell does) is
            # compiled anew, and a plan kept because it compares equal would keep every process's
            # prepared call of the kernel it had before
            systems_changed = self._plan_key[2:3] != key[2:3]
            self._plans_before, self._plans = {} if systems_changed else self._plans, {}
            self._plan_key = key
        plan = self._plans.get(processes)
        if plan is None:
            # stages depend only on the systems and their compiled value types: rebuilding them on
            # every structural change cost ~0.9 ms of pairwise access checks (demo, 7 systems)
            stages_key = (self._systems_version, tuple(b.compiled for b in self.systems))
            if stages_key != self._stages_key:
                self._stages, self._stages_key = stages_of(self.systems), stages_key
            memo_key = (self._systems_version, store.changes.version)
            if memo_key != self._parts_key:
                self._parts_memo, self._parts_key = {}, memo_key
            plan = build_plan(self.systems, processes, self._stages, None if seed is None else int(seed),
                              self._parts_memo)
            # a structural change often leaves the plan as it was (the demo's emitter despawns and
            # spawns as many rows every 4 frames): the same object ships nothing to the workers
            # and keeps every process's prepared arguments
            before = self._plans_before.get(processes)
            self._plans[processes] = plan = before if before == plan else plan
        return plan

    def values(self, params: Mapping[str, object], frames: int) -> tuple[list[SystemValues], list[HandedOver]]:
        """Resolve and type-check every system's named values; compile what was waiting for them.
        A removed= system due in the coming `frames` gets its pending ids, still pending: the
        second result lists what consume_handed_over consumes after the run. The same list again
        while nothing it was resolved from changed (the resources, the systems, scalar keywords):
        ~20 us for the demo's 10 systems, 3x that after the frames' kernels evicted the caches."""
        key = self._values_key(params)
        # an array's shape and flags may change in place (arr.shape = ..., flags.writeable): the
        # cached values hold only while each array still types as it did (~0.3 us an array)
        cached = self._values_cached
        if key is not None and key == cached[0] and \
                (not cached[3] or all(array_key(array) == typed for array, typed in cached[3])):
            return cached[2], []
        out: list[SystemValues] = []
        handed: list[HandedOver] = []
        resolved: dict[int, dict[str, object]] = {}
        for bound in self.systems:   # every system's values first: a refused call compiles nothing
            if not (bound.compiled and not bound.takes_values and not bound.system.removed):
                resolved[bound.index] = named = bound.resolve_values(params)
                if self.workers:   # refused whichever side runs it: the pool may send any run to the workers
                    shippable(self.store.arena, bound.name, named)
        if any(type(value) is np.ndarray for value in params.values()):
            _refuse_aliases(self.systems, resolved)
        for bound in self.systems:
            if bound.index not in resolved:
                out.append(_NO_VALUES)    # most systems: ~0.6 us a step saved per system
                continue
            named = resolved[bound.index]
            if not bound.compiled and bound.try_compile(named):
                # converted (and checked) as every later call's: an annotation's type may not hold them
                named = bound.resolve_values(params)
            if not bound.system.removed:
                out.append(SystemValues(named))
                continue
            first_due = bound.system.first_due(self.frame, frames)
            removed_ids = np.empty(0, np.int64)
            if first_due is not None:
                reader = bound.reader()
                removed_ids, ends = self.store.changes.removed_since(reader)
                if removed_ids.shape[0]:
                    handed.append((bound.index, reader, ends))
                else:   # a look that found nothing (its kernel is not called): later births count from now
                    self.store.changes.consume_removed(reader, ends)
            out.append(SystemValues(named, removed_ids, first_due))
        if key is not None and all(b.compiled and not b.system.removed for b in self.systems):
            arrays = [(value, array_key(value)) for values in out for value in values.named.values()
                      if type(value) is np.ndarray]
            self._values_cached = (key, tuple(params.values()), out, arrays)
        return out, handed

    def _values_key(self, params: Mapping[str, object]) -> ValuesKey | None:
        """What resolved values depend on: the resources' and systems' versions, the keywords'
        names and their values' ids (an equal float may differ: -0.0; the cache keeps the values
        alive, so an id it holds names no other object); None when a keyword is not a Python
        scalar (an array may change flags in place). One tuple comparison: ~0.1 us a step."""
        if not params:
            return self.resources.version, self._systems_version, (), ()
        for value in params.values():
            if type(value) not in _SCALAR_TYPES:
                return None
        return self.resources.version, self._systems_version, tuple(params), tuple(map(id, params.values()))

    def consume_handed_over(self, handed: list[HandedOver], calls_before: np.ndarray) -> None:
        """Consume the removed= ids of every system whose kernel was called with them (raising
        included, as changed= rows are): a run that failed before such a system leaves its ids
        pending for the next run."""
        calls = self.kernel_calls()
        for index, reader, ends in handed:
            if calls[index] > calls_before[index]:
                self.store.changes.consume_removed(reader, ends)

    # ---------------------------------------------------------------- running
    def run(self, frames: int, params: Mapping[str, object], progress: Progress | None = None) -> None:
        """Run `frames` frames with the same values (in this process or on the worker pool)."""
        if self.commands is None:
            self._run_frames(frames, params, progress)
            return
        # commands change structure: apply them after every frame, as a sequential run would
        for done in range(1, frames + 1):
            try:
                self._run_frames(1, params, None)
            except BaseException:   # a frame that failed applies none of its commands
                self.commands.discard()
                raise
            with held_interrupts():   # Ctrl-C after the frame's commands, never inside them
                records, owners = self.commands.take(self.store.arena)
                apply_records(self.store, records, owners, [b.name for b in self.systems], self.record_lookups)
            if progress is not None:
                progress.update(done)

    def _run_frames(self, frames: int, params: Mapping[str, object], progress: Progress | None) -> None:
        values, handed = self.values(params, frames)
        calls_before = self.kernel_calls() if handed else None
        try:
            plan = self._shared_plan(frames) if self.workers else None
            if plan is not None:
                started, pool_before = time.perf_counter(), self.pool
                self._run_on_pool(plan, values, frames, progress)
                if pool_before is not None and self.pool is pool_before:   # not the run that started it
                    self.pool.ran_shared(time.perf_counter() - started, frames)
            else:
                started = time.perf_counter()
                plan = self.plan(0)
                self._executor_here().use_plan(plan)
                for done in range(1, frames + 1):
                    self._run_frame_here(plan, values)
                    if progress is not None:
                        progress.update(done)
                if self.pool is not None:
                    self.pool.ran_here(time.perf_counter() - started, frames)
        finally:
            if calls_before is not None:
                self.consume_handed_over(handed, calls_before)

    def _shared_plan(self, frames: int) -> Plan | None:
        """The plan the workers run this run with, or None to run it here: with a step_timeout
        always theirs (this process runs no kernel then); else not while the machine is busy and
        the run short, nor while such runs went faster here (WorkerPool.helps), nor when there is
        little to share (Plan.worth_sharing).
        The pool and this process's plan (the same stages and rows) are asked first: the
        workers' plan is built only when they may take it (the physics demo beside a busy
        process rebuilt both plans at each emitter pass, ~1.4 ms every 4 frames; WolfSheep, whose
        stages are all too small to share, both at every frame)."""
        if self.step_timeout is not None:
            return self.plan(self.workers)
        here = self.plan(0)
        if here.largest_stage < SPLIT_MIN_ROWS or (self.pool is not None
                                                   and not self.pool.helps(frames, here.busy_stages,
                                                                           here.largest_stage)):
            return None
        plan = self.plan(self.workers)
        return plan if plan.worth_sharing else None

    def _run_on_pool(self, plan: Plan, values: list[SystemValues], frames: int, progress: Progress | None) -> None:
        if self.pool is None:
            self.pool = WorkerPool(self.store.arena, self.workers, self.step_timeout)
        self._executor_here().use_plan(plan)
        self._prepare_drivers(plan, values)
        run_here = None
        if self.step_timeout is None:     # the pool decides whether this process takes part
            def run_here(unit: Unit, frame: int) -> BaseException | None:
                try:
                    self._run_unit_here(unit, frame, values)
                except KernelError as error:
                    return error
                return None
        # a run's units are numbered in 31 bits (mailbox.MAX_RUN_UNITS): a longer run goes in pieces
        piece = max(1, MAX_RUN_UNITS // max(1, sum(len(stage) for stage in plan.units)))
        for offset in range(0, frames, piece):
            first_frame = self.frame
            if progress is not None:
                progress.base = offset
            outcome = self.pool.run(plan, values, first_frame, min(piece, frames - offset), self.commands,
                                    [b.name for b in self.systems], progress, run_here)
            self.frame = first_frame + outcome.frames_done
            self.count_calls(first_frame, outcome.frames_done)
            if outcome.error is not None:
                raise outcome.error

    def _run_frame_here(self, plan: Plan, values: list[SystemValues]) -> None:
        frame = self.frame
        try:
            for stage in range(len(plan.units)):
                for unit in plan.due_units(stage, frame, values):
                    self._run_unit_here(unit, frame, values)
        finally:  # a frame whose kernel raised still counts (as with workers): every=N keeps its cadence
            # the frame and its calls together, here: a KeyboardInterrupt between the two would leave
            # stats() a call ahead of the frame counter (or behind it)
            self.frame = frame + 1
            for bound in self.systems:
                if bound.system.is_due(frame):
                    bound.calls += 1

    def _executor_here(self) -> Executor:
        executor = self._executor
        if executor is None:
            executor = self._executor = Executor(self.store.arena)
        if self.commands is not None and executor.commands is None:
            executor.commands = buffer_view(self.store.arena, self.commands.spec(self.commands.processes - 1))
        return executor

    def _prepare_drivers(self, plan: Plan, values: list[SystemValues]) -> None:
        """Compile the drivers of a plan's units here before the workers meet them (once per plan)."""
        if plan is self._drivers_ready:
            return
        executor = self._executor_here()
        for stage in plan.units:
            for unit in stage:
                executor.prepare_unit(self.systems[unit[0].system].system, unit, values[unit[0].system])
        self._drivers_ready = plan

    def _run_unit_here(self, unit: Unit, frame: int, values: list[SystemValues]) -> None:
        """Run one unit's tasks in this process; a kernel's exception raises KernelError."""
        executor = self._executor_here()
        index = unit[0].system    # a unit's tasks are of one system
        bound = self.systems[index]
        executor.run_unit(bound.system, unit, values[index], self._stats_views[index], bound.raise_kernel_error, frame)

    def _set_stats_rows(self, rows: np.ndarray) -> None:
        self.stats_rows = rows
        self._stats_views = stats_views(rows)

    def count_calls(self, first_frame: int, frames: int) -> None:
        for bound in self.systems:
            bound.calls += bound.system.due_frames(first_frame, frames)

    # ---------------------------------------------------------------- figures
    def stats_total(self) -> np.ndarray:
        """Per system: kernel calls, rows, seconds, in this process and on the workers."""
        rows = self.stats_rows.copy()
        if self.pool is not None:
            rows += self.pool.stats_total(len(self.systems))
        return rows

    def kernel_calls(self) -> np.ndarray:
        return self.stats_total()[:, 0]

    def stats(self) -> dict[str, dict[str, float]]:
        rows = self.stats_total()
        return {b.name: {"calls": b.calls, "kernel_calls": int(rows[b.index, 0]), "rows": int(rows[b.index, 1]),
                         "seconds": float(rows[b.index, 2])} for b in self.systems}

    def close(self) -> None:
        """Stop the workers and drop every arena view the schedule holds (the executor's cache,
        the command buffers' count view); figures stay readable."""
        if self.pool is not None:
            self.pool.close()
        self._executor = None
        self.commands = None


def _refuse_aliases(systems: list[BoundSystem], resolved: dict[int, dict[str, object]]) -> None:
    """InvalidArgumentError when two systems receive one memory under two names (a keyword
    array that is a resource, or a view of one, passed as another name): stages are ordered by
    the names of the arrays systems take, so the two would run side by side on workers. Only
    keyword arrays can alias (every resource has memory of its own)."""
    arrays = [(bound, name, value) for bound in systems for name, value in resolved.get(bound.index, {}).items()
              if isinstance(value, np.ndarray)]
    for k, (first, first_name, first_array) in enumerate(arrays):
        for second, second_name, second_array in arrays[k + 1:]:
            if first_name != second_name and first is not second and np.may_share_memory(first_array, second_array):
                raise InvalidArgumentError(
                    f"system {first.name!r} gets {first_name!r} and system {second.name!r} gets {second_name!r}, "
                    f"one memory under two names: systems are ordered by the names of the arrays they take, so "
                    f"pass it under one name (or give each its own array)")
