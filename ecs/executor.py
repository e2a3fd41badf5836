"""Executor: runs plan tasks (plan.py) over one process's mapping of the arena.

The main process (workers=0) and every worker run tasks through this one class, so a system
computes the same thing wherever it runs. For a task over rows [start, stop) it builds the
kernel's arguments as views sliced to those rows (full-reservation views are made once per
array and cached: arena regions never move), finds a filtered system's rows (flush its filter
components' marks over the task's words, then take its pending bits), calls the kernel, and
applies auto marks. `start` is always a multiple of 64, so slice-local row i is bit i of the
slice's words.

A unit of several tasks over table rows (filtered or not) runs in one compiled call (driver.py):
~0.8 us plus ~0.15 us per task. Otherwise, per task: ~0.3 us per column slice and namedtuple,
and the kernel's call through its compiled entry (_kernel_entry), or through numba's dispatcher
(~1.4 us more) for a system given named arrays.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import numpy as np

from ecs.kernels import bits
from ecs.kernels._jit import compiled_entry

from .driver import Driver, UnitLayout, drivable
from .memory import PAGE, Arena, ArraySpec, page_round, read_only
from .plan import Plan, SystemValues, Task, Unit
from .system import COMMANDS, ENTITY, FRAME, READ, REMOVED, ROWS, WRITE, System

StatsRow: TypeAlias = "memoryview[float]"   # a system's figures: kernel calls, rows, seconds


def stats_views(rows: np.ndarray) -> list[StatsRow]:
    """The rows of a (systems, 3) float64 array of figures, as Executor.run_unit takes them."""
    return [memoryview(row).cast("B").cast("d") for row in rows]


class Executor:
    """Task runner of one process. A unit's `stats` is its system's row of float64 figures
    [kernel calls, rows, seconds], as a memoryview (an element update costs ~40 ns, a numpy
    row's ~80 ns: three a unit)."""

    def __init__(self, arena: Arena) -> None:
        self._arena = arena
        self._views: dict[ArraySpec, np.ndarray] = {}
        # per task: its kernel arguments that depend only on the task (column slices and their
        # namedtuples, ids), the positions of those that change per call, and its marks' words.
        # Plans are cached, so a frame meets the same tasks again: building the slices each call
        # cost 2.8 us of a 14 us step of one system over 10k rows (measured), this lookup 0.3 us.
        # Keyed by id(task), holding the task (so its id is not reused while cached): hashing a
        # task's nested tuples cost ~1 us a call.
        self._prepared: dict[int, _Prepared] = {}
        self.commands: Any = None        # this process's CommandBuffer, once a system takes Commands
        self._mapped: dict[int, int] = {}  # column's first page -> where this process's mapping of it ends
        self._drivers: dict[System, Driver] = {}
        # by id(unit), holding the unit (so its id is not reused while cached): hashing a unit of
        # 26 tasks cost ~2 us of a 8 us step
        self._units: dict[int, tuple[Unit, Driver | None, UnitLayout | None]] = {}
        self._bytes: np.ndarray | None = None   # the whole arena as bytes, for drivers
        self._read_only_bytes = np.empty(0, np.uint8)   # and a read-only view of them (with _bytes)
        self._recent_plans: list[Plan] = []      # the plans the caches above serve (see use_plan)

    def use_plan(self, plan: Plan) -> None:
        """Tasks of `plan` come next. Switching between the last two plans keeps the caches (a
        world may alternate between its plan here and its plan for the workers); a plan that is
        neither empties them (an earlier plan that comes back prepares its tasks again). A world
        whose structure changes every frame has a new plan every frame: caching theirs (up to
        4,096 tasks) kept young objects alive, and the garbage collector ran 5x as often
        (WolfSheep by commands: 72 -> 59 ms, measured)."""
        recent = self._recent_plans
        if recent and recent[-1] is plan:
            return
        if any(p is plan for p in recent):
            recent.reverse()
            return
        if len(recent) == 2:
            self._prepared.clear()
            self._units.clear()
            del recent[0]
        recent.append(plan)

    def view(self, spec: ArraySpec) -> np.ndarray:
        view = self._views.get(spec)
        if view is None:
            view = self._views[spec] = self._arena.view_of(spec)
        return view

    def map_in(self, tasks: Sequence[Task]) -> None:
        """Map the rows of these tasks' columns into this process now, one call per column and
        only rows not mapped before. A worker does this when a plan arrives: any process may
        claim any chunk, and a chunk first touched inside a kernel took a page fault per 4 KiB
        (move over 1M rows: 4 MB a chunk, 5-14 ms instead of 0.05 ms on this VM)."""
        for task in tasks:
            for spec in _column_specs(task):
                row_bytes = np.dtype(spec.dtype).itemsize * math.prod(spec.shape[1:])   # a vector field's row
                start = spec.offset - spec.offset % PAGE
                stop = spec.offset + task.stop * row_bytes
                mapped = self._mapped.get(start, start)
                if stop > mapped:
                    self._arena.populate(mapped, page_round(stop - mapped))
                    self._mapped[start] = mapped + page_round(stop - mapped)

    def run_unit(self, system: System, unit: Unit, values: SystemValues, stats: StatsRow,
                 on_error: Callable[[BaseException], None], frame: int = 0) -> bool:
        """Run one unit (tasks of one system) of frame `frame`; a kernel exception goes to
        `on_error` (after its rows are marked) and ends the unit: False. Several tasks over
        table rows run in one compiled call (driver.py)."""
        cached = self._units.get(id(unit))
        if cached is None or cached[0] is not unit:
            cached = self._driving(system, unit)
        driver = cached[1]
        if driver is not None and driver.usable:
            return self._run_driven(driver, cached[2], unit, values, stats, on_error, frame)  # type: ignore[arg-type]
        return all(self.run_task(system, task, values, stats, on_error, frame) for task in unit)

    def prepare_unit(self, system: System, unit: Unit, values: SystemValues) -> None:
        """Compile the unit's driver now, if it has one (before a run on workers: a worker then
        loads it from the disk cache in ~4 ms instead of compiling it inside a timed frame)."""
        cached = self._units.get(id(unit))
        if cached is None or cached[0] is not unit:
            cached = self._driving(system, unit)
        if cached[1] is not None:
            cached[1].prepare(self._arena_bytes(), self._read_only_bytes, cached[2],  # type: ignore[arg-type]
                              values.named, self.commands, unit[0].system)

    def _arena_bytes(self) -> np.ndarray:
        if self._bytes is None:
            self._bytes = self._arena.view(np.uint8, 0, (self._arena.size,))
            self._read_only_bytes = read_only(self._bytes.view())   # the drivers' twin: columns only read
        return self._bytes

    def _driving(self, system: System, unit: Unit) -> tuple[Unit, Driver | None, UnitLayout | None]:
        """The unit's entry in the cache: its driver and layout, or None for the Python path."""
        if len(self._units) >= 4096:   # plans of structures long gone
            self._units.clear()
        entry: tuple[Unit, Driver | None, UnitLayout | None] = (unit, None, None)
        if drivable(system, unit):
            driver = self._drivers.get(system)
            if driver is None:
                driver = self._drivers[system] = Driver(system)
            entry = (unit, driver, UnitLayout(system, unit))
        self._units[id(unit)] = entry
        return entry

    def _run_driven(self, driver: Driver, layout: UnitLayout, unit: Unit, values: SystemValues, stats: StatsRow,
                    on_error: Callable[[BaseException], None], frame: int) -> bool:
        started = time.perf_counter()
        try:
            ran = driver.run(self._arena_bytes(), self._read_only_bytes, layout, values.named, frame, self.commands,
                             unit[0].system)
        except Exception as exc:  # noqa: BLE001 - the kernel's own exception, reported as KernelError
            failed = int(driver.progress[0])      # tasks before it ran and were marked
            task = unit[failed]
            for spec in task.marks:              # the failing call's rows are marked too
                words = self.view(spec)[task.start >> 6:]
                if driver.filtered:
                    bits.mark_rows(words, layout.scratch[:layout.counts[failed]])
                else:
                    bits.fill_range(words, 0, task.stop - task.start)
            self._count(driver, layout, unit, failed + 1, stats, started)
            on_error(exc)
            return False
        if not ran:    # numba could not compile the driver: the Python path runs every task
            return self.run_unit(driver.system, unit, values, stats, on_error, frame)
        self._count(driver, layout, unit, len(unit), stats, started)
        return True

    @staticmethod
    def _count(driver: Driver, layout: UnitLayout, unit: Unit, tasks: int, stats: StatsRow, started: float) -> None:
        """stats() of the unit's first `tasks` tasks: kernel calls, rows given, seconds."""
        if driver.filtered:    # a task whose filter selected no row made no call
            given = layout.counts[:tasks]
            stats[0] += np.count_nonzero(given)
            stats[1] += int(given.sum())
        else:
            stats[0] += tasks
            stats[1] += layout.rows if tasks == len(unit) else sum(t.stop - t.start for t in unit[:tasks])
        stats[2] += time.perf_counter() - started

    def run_task(self, system: System, task: Task, values: SystemValues, stats: StatsRow,
                 on_error: Callable[[BaseException], None], frame: int = 0) -> bool:
        """Run one task of frame `frame` (what an `ecs.Frame` parameter receives); a kernel
        exception goes to `on_error` (after its rows are marked): False."""
        started = time.perf_counter()
        start, stop = task.start, task.stop
        rows = None
        if task.filter is not None:
            matrix, flushes, reader = self.view(task.filter.matrix), task.filter.flushes, task.filter.reader_slot
            if task.filter.fused():    # one filter term: ~2x less memory traffic
                rows = bits.flush_take_words(matrix, flushes[0][0], np.asarray(flushes[0][1], np.int64), reader,
                                             start, stop)
            else:
                for source, targets in flushes:
                    bits.flush_marks_words(matrix, source, np.asarray(targets, np.int64), start >> 6,
                                           (stop + 63) >> 6)
                rows = bits.take_rows(matrix[reader], start, stop)
            if rows.shape[0] == 0:
                return True
        prepared = self._prepared.get(id(task))
        if prepared is None or prepared.task is not task:
            prepared = self._prepare(system, task)
        args = self._arguments(prepared, task, rows, values, frame)
        call = prepared.call
        if call is None:
            call = prepared.call = _kernel_entry(system, prepared, args)
        marks = prepared.marks
        marked = rows.copy() if marks and rows is not None else rows   # the kernel may write its Rows
        raised = None
        try:
            call(*args)
        except Exception as exc:  # noqa: BLE001 - the kernel's own exception, reported as KernelError
            raised = exc
        finally:
            for words in marks:
                if marked is None:
                    bits.fill_range(words, 0, stop - start)
                else:
                    bits.mark_rows(words, marked)
            stats[0] += 1
            if task.table < 0:
                stats[1] += values.removed_ids.shape[0] if values.removed_ids is not None else 0
            else:
                stats[1] += (stop - start) if rows is None else rows.shape[0]
            stats[2] += time.perf_counter() - started
        if raised is not None:
            on_error(raised)
            return False
        return True
    def _arguments(self, prepared: _Prepared, task: Task, rows: np.ndarray | None,
                   values: SystemValues, frame: int) -> list[object]:
        """The kernel's arguments for this call of a prepared task."""
        if not prepared.dynamic:
            return prepared.static
        args = prepared.static.copy()
        for position, kind, key in prepared.dynamic:
            if kind == ROWS:
                args[position] = rows
            elif kind == REMOVED:
                args[position] = values.removed_ids
            elif kind == COMMANDS:
                args[position] = self.commands._replace(base=task.start, system=task.system, table=task.table)
            elif kind == FRAME:
                args[position] = frame
            else:
                args[position] = values.named[key]  # type: ignore[index]
        return args

    def _prepare(self, system: System, task: Task) -> _Prepared:
        start, stop = task.start, task.stop
        static: list[object] = []
        dynamic: list[tuple[int, str, object]] = []
        for position, (p, spec) in enumerate(zip(system.params, task.args, strict=True)):
            if p.kind == READ:   # read-only arrays, as the kernel was compiled for (binding._sample_argument)
                static.append(p.info.view_type(*map(read_only, self._slices(spec, start, stop))))  # type: ignore[union-attr]
            elif p.kind == WRITE:
                fields, marks = spec
                words = self.view(marks)[start >> 6: (stop + 63) >> 6]
                static.append(p.info.mut_view_type(*self._slices(fields, start, stop), words))  # type: ignore[union-attr,call-arg]
            elif p.kind == ENTITY:
                static.append(read_only(self.view(spec)[start:stop]))
            else:   # rows, removed ids, commands, named values: per call
                static.append(None)
                dynamic.append((position, p.kind, spec))
        marks_words = [self.view(spec)[start >> 6:] for spec in task.marks]
        if len(self._prepared) >= 4096:   # plans of structures long gone
            self._prepared.clear()
        prepared = self._prepared[id(task)] = _Prepared(task, static, dynamic, marks_words)
        return prepared

    def _slices(self, specs: Sequence[ArraySpec], start: int, stop: int) -> list[Any]:
        return [self.view(spec)[start:stop] for spec in specs]


class _Prepared:
    """A task's kernel arguments that depend only on the task (column slices and their
    namedtuples, ids; None where a call's own goes), the positions of those that change per
    call (`dynamic`: position, kind, value name), its marks' words, and the callable that runs
    the kernel (`call`, chosen at the first call: _kernel_entry)."""

    __slots__ = ("task", "static", "dynamic", "marks", "call")

    def __init__(self, task: Task, static: list[object], dynamic: list[tuple[int, str, object]],
                 marks: list[np.ndarray]) -> None:
        self.task, self.static, self.dynamic, self.marks = task, static, dynamic, marks
        self.call: Callable[..., object] | None = None


def _kernel_entry(system: System, prepared: _Prepared, args: list[object]) -> Callable[..., object]:
    """What runs a prepared task's kernel: its compiled entry for these arguments' types
    (_jit.compiled_entry: ~1.4 us a call less than the dispatcher, whose matching of namedtuple
    arguments is slow) when every later call's arguments have them: the task's own slices, the
    library's rows (new int64 arrays), commands and frame, named values converted to the
    compiled scalar types (system.convert_value; a scalar unboxes by value). A named array value
    keeps the dispatcher, which checks its type at each call: the array is the user's, and its
    dtype or shape can change in place; so do removed= systems (once a frame, not per table)."""
    for position, kind, _ in prepared.dynamic:
        if kind == REMOVED or (kind not in (ROWS, COMMANDS, FRAME) and isinstance(args[position], np.ndarray)):
            return system.kernel  # type: ignore[no-any-return]
    try:
        return compiled_entry(system.kernel, *args)
    except Exception:  # noqa: BLE001 - no entry for these types: the dispatcher's call reports why
        return system.kernel  # type: ignore[no-any-return]


def _column_specs(task: Task) -> list[ArraySpec]:
    """The row-indexed arrays (columns, ids) a task's kernel receives."""
    specs: list[ArraySpec] = []
    for arg in task.args:
        if isinstance(arg, ArraySpec):
            specs.append(arg)
        elif isinstance(arg, tuple) and arg:
            fields = arg[0] if isinstance(arg[0], tuple) else arg
            specs.extend(spec for spec in fields if isinstance(spec, ArraySpec))
    return specs
