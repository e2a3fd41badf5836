"""Schedule: a world's systems in registration order, and the frame loop that runs them.

Systems take effect in the order they are added; `step()` runs one frame: every system whose
`every=N` divides the frame number (frames count from the world's first step), each over every
non-empty matching table. A filtered system (changed=/added=) is given only the rows that
changed since it last ran (changes.py) and is not called where none did.

The frame's work is a plan (plan.py), cached until the world's structure changes (a spawn,
despawn, archetype move, new system or new change reader). With `workers=0` this process
runs the plan's tasks through an Executor; with workers, the pool (workers.py) runs the same
tasks, many frames per round trip. Per system and table in this process: ~0.3 us per column
view and ~1.5 us of numba dispatch (measured), plus one fill of dirty words per `Mut`
component with mark="auto".
"""

from __future__ import annotations

import importlib
import inspect
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from kernels.commands import empty_buffer

from .commands import CommandBuffers, apply_records, buffer_view
from .errors import KernelError, SystemDefinitionError
from .executor import Executor
from .plan import REMOVED_FRAME, REMOVED_IDS, Plan, build_plan, due, stages_of
from .query import Query
from .system import (
    COMMANDS,
    ENTITY,
    REMOVED,
    ROWS,
    VALUE,
    WRITE,
    System,
    annotation_type,
    convert_value,
    value_type,
)

if TYPE_CHECKING:
    from .world import World

_MISSING = object()


class BoundSystem:
    """A system added to one world: its query, its compiled signature, its figures."""

    def __init__(self, world: World, system: System, index: int) -> None:
        self.world = world
        self.system = system
        self.index = index
        self.query = Query(world, [i.cls for i in system.required], [i.cls for i in system.without],
                           [i.cls for i in system.changed], [i.cls for i in system.added],
                           [i.cls for i in system.removed])
        self.value_types: dict[str, Any] = {}
        self.compiled = False
        self.calls = 0
        self.address = address_of(system)

    @property
    def name(self) -> str:
        return self.system.name

    def array_values(self) -> list[str]:
        """Names of the value parameters compiled as arrays (resource arrays)."""
        return [name for name, t in self.value_types.items() if isinstance(t, numba.types.Array)]

    # ---------------------------------------------------------------- values and compilation
    def resolve_values(self, params: Mapping[str, object], *, required: bool = True) -> dict[str, object]:
        """Named values by parameter: step/run keywords, then world.resources, then defaults."""
        values = {}
        for p in self.system.params:
            if p.kind != VALUE:
                continue
            value = params.get(p.name, _MISSING)
            if value is _MISSING:
                value = self.world.resources.get(p.name, _MISSING)
            if value is _MISSING and p.default is not inspect.Parameter.empty:
                value = p.default
            if value is _MISSING:
                if required:
                    raise SystemDefinitionError(self.name, f"no value: pass step({p.name}=...) or "
                                                           f"set world.resources[{p.name!r}]", p.name)
                continue
            if p.name in self.value_types:
                value = convert_value(value, self.value_types[p.name], p, self.name)
            values[p.name] = value
        return values

    def try_compile(self, values: Mapping[str, object]) -> bool:
        """Compile the kernel for its exact signature if every value type is known."""
        if self.compiled:
            return True
        system = self.system
        types = []
        for p in system.params:
            if p.kind == VALUE:
                known = annotation_type(p)
                if known is None and p.name not in values:
                    return False
                self.value_types[p.name] = known or value_type(values[p.name], p, self.name)
                types.append(self.value_types[p.name])
            else:
                types.append(numba.typeof(_sample_argument(p)))
        try:
            system.kernel.compile(tuple(types))
        except (numba.core.errors.NumbaError, numba.core.errors.UnsupportedBytecodeError) as exc:
            self.value_types.clear()
            described = ", ".join(f"{p.name}: {t}" for p, t in zip(system.params, types, strict=True))
            lines = [line for line in str(exc).splitlines()
                     if line.strip() and not line.startswith(("Failed in nopython", "During: Pass"))]
            detail = "\n    ".join(lines[:12])
            raise SystemDefinitionError(self.name, f"numba could not compile the kernel for the parameter "
                                                   f"types ({described}):\n    {detail}") from exc
        self.compiled = True
        return True


class Schedule:
    """Registration-ordered systems of one world, its frame counter and its cached plan."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.systems: list[BoundSystem] = []
        self.frame = 0
        self.stats_rows = np.zeros((0, 3))    # per system: kernel calls, rows, seconds
        self._plan: Plan | None = None
        self._plan_key: tuple[int, ...] = ()
        self._executor: Executor | None = None
        self.commands: CommandBuffers | None = None   # made when the first system takes Commands
        self._stages: list[list[int]] = []
        self._stages_key: tuple[object, ...] = ()

    def add(self, system: System) -> BoundSystem:
        if not isinstance(system, System):
            raise SystemDefinitionError(getattr(system, "__name__", repr(system)),
                                        "add_system() takes a system: decorate the function with @ecs.system")
        if any(b.system is system for b in self.systems):
            raise SystemDefinitionError(system.name, "this system was already added to the world")
        if any(b.name == system.name for b in self.systems):   # names key stats() and errors
            raise SystemDefinitionError(system.name, "another system of this name is already in the world; "
                                                     "give one of them another name with @system(name=...)")
        if self.world.workers:
            check_importable(system)
        bound = BoundSystem(self.world, system, len(self.systems))
        bound.try_compile(bound.resolve_values({}, required=False))
        if any(p.kind == COMMANDS for p in system.params) and self.commands is None:
            self.commands = CommandBuffers(self.world, self.world.workers + 1)
        self.systems.append(bound)
        self.stats_rows = np.vstack([self.stats_rows, np.zeros((1, 3))])
        return bound

    def plan(self, workers: int) -> Plan:
        """The cached plan for the world's current structure."""
        world = self.world
        key = (world._structure_version, world._changes.version, len(self.systems), workers)
        if self._plan is None or key != self._plan_key:
            # stages depend only on the systems and their compiled value types: rebuilding them on
            # every structural change cost ~0.9 ms of pairwise access checks (demo, 7 systems)
            stages_key = (len(self.systems), tuple(b.compiled for b in self.systems))
            if stages_key != self._stages_key:
                self._stages, self._stages_key = stages_of(self.systems), stages_key
            self._plan = build_plan(self.systems, max(workers, 1), self._stages)
            self._plan_key = key
        return self._plan

    def values(self, params: Mapping[str, object], frames: int) -> tuple[list[dict[str, object]], list[Any]]:
        """Resolve and type-check every system's named values; compile what was waiting for them.
        A removed= system due in the coming `frames` gets its pending ids, still pending: the
        second result lists (system, reader, cursors) for consume_handed_over after the run."""
        out: list[dict[str, object]] = []
        handed: list[Any] = []
        for bound in self.systems:
            values = bound.resolve_values(params)
            bound.try_compile(values)
            if bound.system.removed:
                every = bound.system.every
                first_due = next((f for f in range(self.frame, self.frame + frames) if f % every == 0), None)
                values[REMOVED_FRAME] = first_due
                values[REMOVED_IDS] = np.empty(0, np.int64)
                if first_due is not None:
                    reader = bound.query._ensure_reader()
                    values[REMOVED_IDS], ends = self.world._changes.removed_since(reader)
                    handed.append((bound.index, reader, ends))
            out.append(values)
        return out, handed

    def consume_handed_over(self, handed: list[Any], calls_before: np.ndarray) -> None:
        """Consume the removed= ids of every system whose kernel was called with them (raising
        included, as changed= rows are): a run that failed before such a system leaves its ids
        pending for the next run."""
        calls = self.kernel_calls()
        for index, reader, ends in handed:
            if calls[index] > calls_before[index]:
                self.world._changes.consume_removed(reader, ends)

    def run(self, frames: int, params: Mapping[str, object], progress: Progress | None = None) -> None:
        """Run `frames` frames with the same values (in this process or on the worker pool)."""
        if self.commands is not None:
            # commands change structure: apply them after every frame, as a sequential run would
            for done in range(1, frames + 1):
                try:
                    self._run_frames(1, params, None)
                except BaseException:   # a frame that failed applies none of its commands
                    self.commands.take(self.world._arena)
                    raise
                records, owners = self.commands.take(self.world._arena)
                apply_records(self.world, records, owners, [b.name for b in self.systems])
                if progress is not None:
                    progress.update(done)
            return
        self._run_frames(frames, params, progress)

    def _run_frames(self, frames: int, params: Mapping[str, object], progress: Progress | None) -> None:
        values, handed = self.values(params, frames)
        calls_before = self.kernel_calls() if handed else None
        pool = self.world._pool()
        try:
            if pool is not None:
                plan = self.plan(pool.size)
                pool.run(plan, values, self.frame, frames, self, progress)
            else:
                plan = self.plan(0)
                for done in range(1, frames + 1):
                    self._run_frame_here(plan, values)
                    if progress is not None:
                        progress.update(done)
        finally:
            if calls_before is not None:
                self.consume_handed_over(handed, calls_before)

    def _run_frame_here(self, plan: Plan, values: list[dict[str, object]]) -> None:
        if self._executor is None:
            self._executor = Executor(self.world._arena)
        executor = self._executor
        if self.commands is not None and executor.commands is None:
            executor.commands = buffer_view(self.world._arena, self.commands.spec(self.commands.processes - 1))
        frame = self.frame
        systems = self.systems
        stats = self.stats_rows
        for bound in systems:
            if frame % bound.system.every == 0:
                bound.calls += 1
        try:
            for stage in plan.tasks[0]:
                for task in stage:
                    if not due(plan, task, frame, values[task.system]):
                        continue
                    bound = systems[task.system]
                    executor.run_task(bound.system, task, values[task.system], stats[task.system],
                                      _raiser(bound.name))
        finally:  # a frame whose kernel raised still counts (as with workers): every=N keeps its cadence
            self.frame = frame + 1

    def count_calls(self, first_frame: int, frames: int) -> None:
        for bound in self.systems:
            every = bound.system.every
            bound.calls += sum(1 for f in range(first_frame, first_frame + frames) if f % every == 0)

    def stats_total(self) -> np.ndarray:
        """Per system: kernel calls, rows, seconds, in this process and on the workers."""
        rows = self.stats_rows.copy()
        pool = self.world._workers
        if pool is not None:
            rows += pool.stats_total(len(self.systems))
        return rows

    def kernel_calls(self) -> np.ndarray:
        return self.stats_total()[:, 0]

    def stats(self) -> dict[str, dict[str, float]]:
        rows = self.stats_total()
        return {b.name: {"calls": b.calls, "kernel_calls": int(rows[b.index, 0]), "rows": int(rows[b.index, 1]),
                         "seconds": float(rows[b.index, 2])} for b in self.systems}


def _raiser(name: str):
    def raise_kernel_error(exc: BaseException) -> None:
        raise KernelError(name, exc) from exc
    return raise_kernel_error


def address_of(system: System) -> tuple[str, str]:
    """(module, attribute) under which workers find the system: the module-level name bound to
    it, else the kernel function's own qualified name."""
    module_name = system.py_func.__module__
    module = sys.modules.get(module_name)
    if module is not None:
        for name, obj in vars(module).items():
            if obj is system:
                return module_name, name
    return module_name, system.py_func.__qualname__


def check_importable(system: System) -> None:
    """Workers import systems by module and name; refuse what they could not find."""
    module_name, attribute = address_of(system)
    qualname = system.py_func.__qualname__
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise SystemDefinitionError(system.name, f"it is defined inside a function ({qualname}), so worker "
                                                 f"processes cannot import it; define it at module level")
    module = sys.modules.get(module_name)
    if module_name == "__main__" and not getattr(module, "__file__", None):
        raise SystemDefinitionError(system.name, "it is defined in an interactive session, which worker "
                                                 "processes cannot import; define it in a module or script")
    try:
        found = resolve_system(module_name, attribute)
    except Exception:
        found = None
    if found is not system:
        raise SystemDefinitionError(system.name, f"worker processes look it up as {module_name}.{attribute} "
                                                 f"and would not find this system there; bind it to a "
                                                 f"module-level name")


def resolve_system(module_name: str, attribute: str) -> System:
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    obj: Any = module
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


class Progress:
    """A one-line progress bar on stderr, redrawn at most 10 times a second; silent when stderr
    is not a terminal."""

    def __init__(self, total: int, enabled: bool, label: str = "frames") -> None:
        self.total = total
        self.enabled = enabled and sys.stderr.isatty()
        self.label = label
        self.started = time.perf_counter()
        self._drawn = 0.0

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._drawn < 0.1 and done < self.total:
            return
        self._drawn = now
        width = 30
        filled = width * done // max(self.total, 1)
        rate = done / max(now - self.started, 1e-9)
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} {self.label} "
                         f"{rate:,.1f}/s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _sample_argument(p: Any) -> object:
    """A zero-row argument with exactly the types the real views will have."""
    if p.kind in (ENTITY, ROWS, REMOVED):
        return np.empty(0, np.int64)
    if p.kind == COMMANDS:
        return empty_buffer()
    columns = [np.empty((0, *dtype.shape), dtype.base) for dtype in p.info.fields.values()]
    if p.kind == WRITE:
        return p.info.mut_view_type(*columns, np.empty(0, np.uint64))
    return p.info.view_type(*columns)
