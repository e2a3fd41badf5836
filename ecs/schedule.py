"""Schedule: a world's systems in registration order, and the frame loop that runs them.

Systems take effect in the order they are added; `step()` runs one frame: every system whose
`every=N` divides the frame number (frames count from the world's first step), each over every
non-empty matching table. A filtered system (changed=/added=) is given only the rows that
changed since it last ran (changes.py) and is not called for tables where none did.

Per system and table, the cost in this process is building the column views (~0.2 us per
field) and one kernel call (~1.5 us of numba dispatch for namedtuple arguments, measured),
plus one fill of the dirty words per `Mut` component with mark="auto".
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from kernels import bits

from .errors import KernelError, SystemDefinitionError
from .query import Query
from .system import ENTITY, READ, ROWS, VALUE, WRITE, System, annotation_type, convert_value, value_type
from .table import Table

if TYPE_CHECKING:
    from .world import World

_MISSING = object()


class BoundSystem:
    """A system added to one world: its query, its compiled signature, its figures."""

    def __init__(self, world: World, system: System) -> None:
        self.world = world
        self.system = system
        self.query = Query(world, [i.cls for i in system.required], [i.cls for i in system.without],
                           [i.cls for i in system.changed], [i.cls for i in system.added])
        self.value_types: dict[str, Any] = {}
        self.compiled = False
        self.calls = 0
        self.kernel_calls = 0
        self.rows = 0
        self.seconds = 0.0

    @property
    def name(self) -> str:
        return self.system.name

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
        except numba.core.errors.TypingError as exc:
            self.value_types.clear()
            described = ", ".join(f"{p.name}: {t}" for p, t in zip(system.params, types))
            lines = [line for line in str(exc).splitlines()
                     if line.strip() and not line.startswith(("Failed in nopython", "During: Pass"))]
            detail = "\n    ".join(lines[:12])
            raise SystemDefinitionError(self.name, f"numba could not compile the kernel for the parameter "
                                                   f"types ({described}):\n    {detail}") from exc
        self.compiled = True
        return True

    # ---------------------------------------------------------------- running
    def arguments(self, table: Table, rows: np.ndarray | None, values: Mapping[str, object]) -> list[object]:
        n = table.n
        args: list[object] = []
        for p in self.system.params:
            if p.kind == READ:
                cols = table.columns_by_component[p.info.id]  # type: ignore[union-attr]
                args.append(p.info.view_type(*(c[:n] for c in cols.values())))  # type: ignore[union-attr]
            elif p.kind == WRITE:
                cid = p.info.id  # type: ignore[union-attr]
                cols = table.columns_by_component[cid]
                words = table.bit_matrix[table.marks_slot[cid], : (n + 63) >> 6]
                args.append(p.info.mut_view_type(*(c[:n] for c in cols.values()), words))  # type: ignore[union-attr]
            elif p.kind == ENTITY:
                args.append(table.entities_all[:n])
            elif p.kind == ROWS:
                args.append(rows)
            else:
                args.append(values[p.name])
        return args

    def run(self, values: Mapping[str, object]) -> None:
        """Run the kernel over every matching table (selected rows only when filtered)."""
        started = time.perf_counter()
        system = self.system
        writes = system.components(WRITE) if system.mark == "auto" else ()
        try:
            for table, rows in self.query._selected(consume=True):
                args = self.arguments(table, rows, values)
                try:
                    system.kernel(*args)
                except Exception as exc:
                    raise KernelError(self.name, exc) from exc
                finally:
                    # rows the kernel was given may have been written even if it raised
                    for info in writes:
                        words = table.bit_matrix[table.marks_slot[info.id]]
                        if rows is None:
                            bits.fill_range(words, 0, table.n)
                        else:
                            bits.mark_rows(words, rows)
                self.kernel_calls += 1
                self.rows += table.n if rows is None else rows.shape[0]
        finally:
            self.calls += 1
            self.seconds += time.perf_counter() - started


class Schedule:
    """Registration-ordered systems of one world and its frame counter."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.systems: list[BoundSystem] = []
        self.frame = 0

    def add(self, system: System) -> BoundSystem:
        if not isinstance(system, System):
            raise SystemDefinitionError(getattr(system, "__name__", repr(system)),
                                        "add_system() takes a system: decorate the function with @ecs.system")
        if any(b.system is system for b in self.systems):
            raise SystemDefinitionError(system.name, "this system was already added to the world")
        bound = BoundSystem(self.world, system)
        bound.try_compile(bound.resolve_values({}, required=False))
        self.systems.append(bound)
        return bound

    def step(self, params: Mapping[str, object]) -> None:
        frame = self.frame
        for bound in self.systems:
            if frame % bound.system.every:
                continue
            values = bound.resolve_values(params)
            bound.try_compile(values)
            bound.run(values)
        self.frame = frame + 1

    def stats(self) -> dict[str, dict[str, float]]:
        return {b.name: {"calls": b.calls, "kernel_calls": b.kernel_calls, "rows": b.rows,
                         "seconds": b.seconds} for b in self.systems}


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
    if p.kind in (ENTITY, ROWS):
        return np.empty(0, np.int64)
    columns = [np.empty((0, *dtype.shape), dtype.base) for dtype in p.info.fields.values()]
    if p.kind == WRITE:
        return p.info.mut_view_type(*columns, np.empty(0, np.uint64))
    return p.info.view_type(*columns)
