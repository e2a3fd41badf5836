"""Executor: runs plan tasks (plan.py) over one process's mapping of the arena.

The main process (workers=0) and every worker run tasks through this one class, so a system
computes the same thing wherever it runs. For a task over rows [start, stop) it builds the
kernel's arguments as views sliced to those rows (full-reservation views are made once per
array and cached: arena regions never move), finds a filtered system's rows (flush its filter
components' marks over the task's words, then take its pending bits), calls the kernel, and
applies auto marks. `start` is always a multiple of 64, so slice-local row i is bit i of the
slice's words.

Per task cost here: ~0.3 us per column slice and namedtuple, ~1.5 us of numba dispatch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from kernels import bits

from .memory import Arena, ArraySpec
from .plan import REMOVED_IDS, Task
from .system import COMMANDS, ENTITY, READ, REMOVED, ROWS, WRITE, System


class Executor:
    """Task runner of one process. `stats[system] = [kernel calls, rows, seconds]`."""

    def __init__(self, arena: Arena) -> None:
        self._arena = arena
        self._views: dict[ArraySpec, np.ndarray] = {}
        self.commands: Any = None        # this process's CommandBuffer, once a system takes Commands

    def view(self, spec: ArraySpec) -> np.ndarray:
        view = self._views.get(spec)
        if view is None:
            view = self._views[spec] = self._arena.view_of(spec)
        return view

    def run_task(self, system: System, task: Task, values: Mapping[str, object], stats: np.ndarray,
                 on_error: Callable[[BaseException], None]) -> None:
        """Run one task; a kernel exception goes to `on_error` (after its rows are marked)."""
        started = time.perf_counter()
        start, stop = task.start, task.stop
        rows = None
        if task.filter is not None:
            matrix = self.view(task.filter.matrix)
            first, stop_word = start >> 6, (stop + 63) >> 6
            for source, targets in task.filter.flushes:
                bits.flush_marks_words(matrix, source, np.asarray(targets, np.int64), first, stop_word)
            rows = bits.take_rows(matrix[task.filter.reader_slot], start, stop)
            if rows.shape[0] == 0:
                return
        args = self._arguments(system, task, rows, values)
        try:
            system.kernel(*args)
        except Exception as exc:  # noqa: BLE001 - the kernel's own exception, reported as KernelError
            on_error(exc)
        finally:
            for spec in task.marks:
                words = self.view(spec)[start >> 6:]
                if rows is None:
                    bits.fill_range(words, 0, stop - start)
                else:
                    bits.mark_rows(words, rows)
            stats[0] += 1
            if task.table < 0:
                stats[1] += values[REMOVED_IDS].shape[0] if REMOVED_IDS in values else 0
            else:
                stats[1] += (stop - start) if rows is None else rows.shape[0]
            stats[2] += time.perf_counter() - started

    def _arguments(self, system: System, task: Task, rows: np.ndarray | None,
                   values: Mapping[str, object]) -> list[object]:
        start, stop = task.start, task.stop
        args: list[object] = []
        for p, spec in zip(system.params, task.args):
            if p.kind == READ:
                args.append(p.info.view_type(*self._slices(spec, start, stop)))  # type: ignore[union-attr]
            elif p.kind == WRITE:
                fields, marks = spec
                words = self.view(marks)[start >> 6: (stop + 63) >> 6]
                args.append(p.info.mut_view_type(*self._slices(fields, start, stop), words))  # type: ignore[union-attr]
            elif p.kind == ENTITY:
                args.append(self.view(spec)[start:stop])
            elif p.kind == ROWS:
                args.append(rows)
            elif p.kind == REMOVED:
                args.append(values[REMOVED_IDS])
            elif p.kind == COMMANDS:
                args.append(self.commands._replace(base=start, system=task.system, table=task.table))
            else:
                args.append(values[spec])
        return args

    def _slices(self, specs: Sequence[ArraySpec], start: int, stop: int) -> list[Any]:
        return [self.view(spec)[start:stop] for spec in specs]
