"""Drivers: one compiled call runs a system's kernel over every task of a unit.

Called from Python, a kernel costs ~1.5 us of numba dispatch plus ~0.3 us per column view for
every table it visits, so a system over 26 tables of 20 rows took ~32 us of calls for ~1 us of
work. A driver is a small njit function generated from the system's parameters: it takes the
arena's bytes, the byte offset of every column of every task, and the tasks' row bounds, builds
each task's views in compiled code and calls the kernel on them, then fills the auto marks.
One call over 26 tables of 20 rows costs 2.1 us (~80 ns a task; measured, in a 4.6 us step()).

What a driver runs is exactly what the Python path runs (executor.py): the same kernel on the
same views, in task order, marks filled after each call, also after a call that raised. For a
system with `changed=`/`added=` filters the driver first flushes each table's pending bits into
the unit's scratch (the same kernels the Python path calls) and hands the kernel those rows; a
table with none selected is skipped. Table-less tasks run through the Python path.

Compiling a driver takes ~0.3 s. Drivers are cached on disk like kernels: the generated source
is written to a file under numba's cache directory, named by a digest of that source and of the
kernel's own source file (path, size, modification time: numba's own stamp, so editing the
kernel compiles a new driver), and imported from there with numba's `cache=True`. A kernel with
no source file (exec, `python -c`) gets a driver compiled in memory each process.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import sys
import types
from typing import Any

import numba
import numpy as np

from ecs.kernels._jit import CACHE_DIR, OPTIONS, compiled_entry

from .memory import ArraySpec
from .plan import Task, Unit
from .system import COMMANDS, ENTITY, FRAME, READ, ROWS, VALUE, WRITE, System

DRIVER_FORMAT = 4           # bump when the generated source changes meaning
_DRIVER_DIR = os.path.join(CACHE_DIR, "drivers")


class UnitLayout:
    """What a driver call needs of one unit, computed once per unit: per task, the byte offset of
    every array the kernel receives and of every auto-mark word array (`offsets`), and its
    (start, stop, table) (`bounds`); plus its task count and rows for stats(). A filtered
    system's unit also has, per task, its bit matrix (byte offset, slots, words), its range of
    `flushes` (source slot, range of `targets`) and its reader's slot (`filters`); `counts`
    receives the rows each task was given (0: not called), `scratch` the rows of the task
    being run (for its marks after an exception)."""

    __slots__ = ("offsets", "bounds", "rows", "filters", "flushes", "targets", "counts", "scratch")

    def __init__(self, system: System, unit: Unit) -> None:
        self.offsets = np.array([_task_offsets(system, task) for task in unit], np.int64).reshape(len(unit), -1)
        self.bounds = np.array([(t.start, t.stop, t.table) for t in unit], np.int64).reshape(len(unit), 3)
        self.rows = int(sum(t.stop - t.start for t in unit))
        filters: list[tuple[int, ...]] = []
        flushes: list[tuple[int, int, int]] = []
        targets: list[int] = []
        for task in unit:
            spec = task.filter
            if spec is None:
                continue
            first = len(flushes)
            for source, slots in spec.flushes:
                flushes.append((source, len(targets), len(targets) + len(slots)))
                targets.extend(slots)
            filters.append((spec.matrix.offset, spec.matrix.shape[0], spec.matrix.shape[1], first, len(flushes),
                            spec.reader_slot, spec.fused()))
        self.filters = np.array(filters, np.int64).reshape(-1, 7)
        self.flushes = np.array(flushes, np.int64).reshape(-1, 3)
        self.targets = np.array(targets, np.int64)
        self.counts = np.zeros(len(unit), np.int64)
        self.scratch = np.zeros(max((t.stop - t.start for t in unit), default=0), np.int64)


def drivable(system: System, unit: Unit) -> bool:
    """Whether a driver runs this unit: several tasks over table rows."""
    return len(unit) > 1 and unit[0].table >= 0


class Driver:
    """The compiled driver of one system; `run` calls it over one unit's layout.

    `run` raises whatever the kernel raised; `progress[0]` then holds the index of the task
    whose call raised (every earlier task ran and was marked). `usable` turns False when numba
    cannot compile the driver (`run` then runs nothing and returns False: the caller runs the
    unit through the Python path)."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.source, self.globals = _source(system)
        self.takes_commands = any(p.kind == COMMANDS for p in system.params)
        self.takes_frame = any(p.kind == FRAME for p in system.params)
        self.value_names = [p.name for p in system.params if p.kind == VALUE]
        self.filtered = system.filtered
        # a driver of arena, offsets, bounds and progress only: no filter, commands, frame or value
        self._bare = not (self.filtered or self.takes_commands or self.takes_frame or self.value_names)
        self.progress = np.zeros(1, np.int64)
        self.usable = True
        self._compiled: Any = None
        # a bare driver's compiled entry (_jit.compiled_entry): its arguments are the library's
        # own arrays, of the same types at every call
        self._bare_entry: Any = None

    def run(self, arena: np.ndarray, ro: np.ndarray, layout: UnitLayout, named: dict[str, object], frame: int,
            commands: Any, system_index: int) -> bool:
        """Run the unit; False (and nothing run) when the driver cannot be compiled. `ro`: a
        read-only view of the same bytes, for the columns the kernel only reads."""
        if self._bare_entry is not None:    # the common case, ~0.5 us less a call
            self._bare_entry(arena, ro, layout.offsets, layout.bounds, self.progress)
            return True
        compiled = self._compiled
        extra = self._extra(named, frame, commands, system_index)
        if compiled is None:
            compiled = self._compile(arena, ro, layout, extra)
            if compiled is None:
                return False
        # progress still holds the last run's count; an argument numba cannot convert raises
        # before the driver's first line writes it
        self.progress[0] = 0
        compiled(arena, ro, layout.offsets, layout.bounds, self.progress, *self._filter_args(layout), *extra)
        return True

    def _filter_args(self, layout: UnitLayout) -> tuple[np.ndarray, ...]:
        if not self.filtered:
            return ()
        return layout.filters, layout.flushes, layout.targets, layout.counts, layout.scratch

    def prepare(self, arena: np.ndarray, ro: np.ndarray, layout: UnitLayout, named: dict[str, object],
                commands: Any, system_index: int) -> None:
        """Compile the driver now (or load it from the disk cache: ~4 ms), running nothing."""
        if self._compiled is None and self.usable:
            self._compile(arena, ro, layout, self._extra(named, 0, commands, system_index))

    def _extra(self, named: dict[str, object], frame: int, commands: Any, system_index: int) -> list[object]:
        extra: list[object] = []
        if self.takes_commands:
            extra += [commands, system_index]
        if self.takes_frame:
            extra.append(frame)
        extra += [named[name] for name in self.value_names]
        return extra

    def _compile(self, arena: np.ndarray, ro: np.ndarray, layout: UnitLayout, extra: list[object]) -> Any:
        """Compile (or load) the driver by a call over no task, so that a failure to compile is
        told apart from a kernel's exception."""
        try:
            compiled = _compile(self.system, self.source, self.globals)
            compiled(arena, ro, layout.offsets[:0], layout.bounds[:0], self.progress, *self._filter_args(layout),
                     *extra)
        except (numba.core.errors.NumbaError, OSError, SyntaxError):
            self.usable = False
            return None
        self._compiled = compiled
        if self._bare:
            self._bare_entry = compiled_entry(compiled, arena, ro, layout.offsets, layout.bounds, self.progress)
        return compiled


def _task_offsets(system: System, task: Task) -> list[int]:
    start = task.start
    out: list[int] = []
    for p, spec in zip(system.params, task.args, strict=True):
        if p.kind == READ:
            out += [_row_offset(field, start) for field in spec]
        elif p.kind == WRITE:
            fields, words = spec
            out += [_row_offset(field, start) for field in fields]
            out.append(words.offset + (start >> 6) * 8)
        elif p.kind == ENTITY:
            out.append(_row_offset(spec, start))
    out += [words.offset + (start >> 6) * 8 for words in task.marks]
    return out


def _row_offset(spec: ArraySpec, row: int) -> int:
    return spec.offset + row * np.dtype(spec.dtype).itemsize * int(np.prod(spec.shape[1:], dtype=np.int64))


_FILTER_LINES = """\
f = filters[t]
matrix = arena[f[0]:f[0] + f[1] * f[2] * 8].view(np.uint64).reshape((f[1], f[2]))
if f[6]:
    rows = flush_take_words(matrix, flushes[f[3], 0], targets[flushes[f[3], 1]:flushes[f[3], 2]], f[5], start,
                            start + n)
else:
    for k in range(f[3], f[4]):
        flush_marks_words(matrix, flushes[k, 0], targets[flushes[k, 1]:flushes[k, 2]], start >> 6,
                          (start + n + 63) >> 6)
    rows = take_rows(matrix[f[5]], start, start + n)
counts[t] = rows.shape[0]
if rows.shape[0] == 0:
    continue""".splitlines()
_SCRATCH_LINE = "scratch[:rows.shape[0]] = rows"   # the rows to mark (raising or not): only with marks


class _Columns:
    """Source text of the arrays a task's kernel receives, in `offsets` column order."""

    def __init__(self) -> None:
        self.named: dict[str, object] = {}
        self.column = 0

    def array(self, dtype: np.dtype, source: str = "arena") -> str:
        """A column of `dtype` from `source`: "arena", or "ro" (its read-only twin) for what the
        kernel reads only."""
        scalar = f"T{len(self.named)}"
        self.named[scalar] = dtype.base.type
        width = dtype.base.itemsize * int(np.prod(dtype.shape, dtype=np.int64))
        text = f"{source}[o[{self.column}]:o[{self.column}] + n * {width}].view({scalar})"
        if dtype.shape:
            text += f".reshape((n, {', '.join(str(s) for s in dtype.shape)}))"
        self.column += 1
        return text

    def words(self) -> str:
        text = f"arena[o[{self.column}]:o[{self.column}] + ((n + 63) >> 6) * 8].view(np.uint64)"
        self.column += 1
        return text


def _source(system: System) -> tuple[str, dict[str, object]]:
    """The driver's source and the globals it names (view types, field scalar types)."""
    columns = _Columns()
    marks = sum(1 for p in system.params if p.kind == WRITE) if system.mark == "auto" else 0
    lines: list[str] = (_FILTER_LINES + [_SCRATCH_LINE] * bool(marks)) if system.filtered else []
    for k, p in enumerate(system.params):
        if p.kind in (READ, WRITE):
            view = f"V{k}"
            columns.named[view] = p.info.view_type if p.kind == READ else p.info.mut_view_type  # type: ignore[union-attr]
            source = "ro" if p.kind == READ else "arena"     # read-only views, as in executor.py
            fields = [columns.array(dtype, source) for dtype in p.info.fields.values()]  # type: ignore[union-attr]
            if p.kind == WRITE:
                fields.append(columns.words())
            lines.append(f"a{k} = {view}({', '.join(fields)})")
        elif p.kind == ENTITY:
            columns.named["T_ids"] = np.int64
            lines.append(f"a{k} = ro[o[{columns.column}]:o[{columns.column}] + n * 8].view(T_ids)")
            columns.column += 1
        elif p.kind == ROWS:
            lines.append(f"a{k} = rows")
        elif p.kind == COMMANDS:
            lines.append(f"a{k} = CommandBuffer(cmd.records, cmd.values, cmd.count, start, system, bounds[t, 2])")
    params = ["filters", "flushes", "targets", "counts", "scratch"] if system.filtered else []
    if any(p.kind == COMMANDS for p in system.params):
        params += ["cmd", "system"]
    if any(p.kind == FRAME for p in system.params):
        params.append("frame")
    args = []
    for k, p in enumerate(system.params):
        if p.kind == VALUE:
            params.append(f"v{k}")
        args.append({FRAME: "frame", VALUE: f"v{k}"}.get(p.kind, f"a{k}"))
    lines.append(f"kernel({', '.join(args)})")
    # the rows' copy in scratch, not `rows`: the kernel may have written its Rows array
    mark = "mark_rows({}, scratch[:rows.shape[0]])" if system.filtered else "fill_range({}, 0, n)"
    lines += [mark.format(columns.words()) for _ in range(marks)]
    body = "\n".join(f"        {line}" for line in lines)
    source = (f"# generated by ecs.driver for system {system.name!r} ({system.py_func.__qualname__})\n"
              f"def driver(arena, ro, offsets, bounds, progress{''.join(', ' + p for p in params)}):\n"
              f"    for t in range(bounds.shape[0]):\n"
              f"        start = bounds[t, 0]\n"
              f"        n = bounds[t, 1] - start\n"
              f"        o = offsets[t]\n"
              f"        progress[0] = t\n"
              f"{body}\n"
              f"    progress[0] = bounds.shape[0]\n")
    return source, columns.named


def _compile(system: System, source: str, named: dict[str, object]) -> Any:
    """The njit driver: imported from a source file under the cache directory (so numba caches
    it) when the kernel has a source file of its own, else compiled from memory."""
    from ecs.kernels.bits import fill_range, flush_marks_words, flush_take_words, mark_rows, take_rows
    from ecs.kernels.commands import CommandBuffer
    fixed = {"np": np, "fill_range": fill_range, "flush_marks_words": flush_marks_words,
             "flush_take_words": flush_take_words, "mark_rows": mark_rows, "take_rows": take_rows,
             "CommandBuffer": CommandBuffer, "kernel": system.kernel, **named}
    stamp = _kernel_stamp(system)
    if stamp is not None:
        module = _module_from_file(source, stamp, fixed)
        if module is not None:
            try:
                return numba.njit(**OPTIONS)(module.driver)
            except RuntimeError as exc:   # numba found no cache locator for the file after all
                if "cannot cache" not in str(exc):
                    raise
    scope = dict(fixed)
    exec(compile(source, f"<driver of {system.name}>", "exec"), scope)  # noqa: S102 - our own generated source
    return numba.njit(**{**OPTIONS, "cache": False})(scope["driver"])


def _kernel_stamp(system: System) -> str | None:
    """What tells the kernel apart from every other: its source file with numba's stamp of it
    (size, modification time), its name and first line, and a digest of its code and closure
    (two kernels of one name in one file, or two made by one factory with different captured
    values, are told apart as numba's own cache tells them). None when the file is gone or a
    captured value cannot be pickled: the driver is then compiled from memory."""
    function = system.py_func
    code = function.__code__
    try:
        stat = os.stat(code.co_filename)
        captured = pickle.dumps(tuple(cell.cell_contents for cell in function.__closure__ or ()))
    except (OSError, ValueError, TypeError, AttributeError, pickle.PicklingError):   # ValueError: an empty cell
        return None
    # the dispatcher's options too: one function wrapped as njit(f) and njit(boundscheck=True)(f)
    # are two kernels, each with its own driver (and disk cache entry)
    options = repr(sorted(getattr(system.kernel, "targetoptions", {}).items())).encode()
    digest = hashlib.blake2b(_code_bytes(code) + captured + options, digest_size=10).hexdigest()
    where = f"{code.co_filename}:{stat.st_size}:{stat.st_mtime_ns}"
    return f"{where}:{function.__qualname__}:{code.co_firstlineno}:{digest}"


def _code_bytes(code: types.CodeType) -> bytes:
    """The bytecode and constants of `code` and of the code objects among its constants."""
    parts = [code.co_code]
    for const in code.co_consts:
        parts.append(_code_bytes(const) if isinstance(const, types.CodeType) else repr(const).encode())
    return b"\0".join(parts)


def _module_from_file(source: str, stamp: str, fixed: dict[str, object]) -> types.ModuleType | None:
    digest = hashlib.blake2b(f"{DRIVER_FORMAT}\n{numba.__version__}\n{stamp}\n{source}".encode(),
                             digest_size=10).hexdigest()
    name = f"ecs_driver_{digest}"
    module = sys.modules.get(name)
    if module is not None:
        # another dispatcher of the same function and options (a system wrapped twice) finds this
        # driver: it calls whichever kernel its module names, compiled alike
        return module
    path = os.path.join(_DRIVER_DIR, name + ".py")
    try:
        if not _holds(path, source):   # absent, or not what this digest names: (re)write it
            os.makedirs(_DRIVER_DIR, mode=0o700, exist_ok=True)
            temporary = f"{path}.{os.getpid()}.tmp"
            with open(temporary, "w", encoding="utf-8") as out:
                out.write(source)
            os.replace(temporary, path)   # never a half-written file under the final name
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            return None
        module = importlib.util.module_from_spec(spec)
        module.__dict__.update(fixed)
        spec.loader.exec_module(module)
    except OSError:    # an unwritable cache directory: compile from memory instead
        return None
    sys.modules[name] = module   # numba's cached environment is rebuilt by importing its module
    return module


def _holds(path: str, source: str) -> bool:
    try:
        with open(path, encoding="utf-8") as existing:
            return existing.read() == source
    except (OSError, UnicodeDecodeError):
        return False
