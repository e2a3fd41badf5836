"""Recorders: component columns and per-frame reductions sampled while the world runs.

`world.record(Position, Energy, every=10, reductions={"energy": total_energy})` returns a
Recorder. From then on, `step()` and `run()` stop at every frame count that is a multiple of
`every` and the recorder copies, in the main process, the fields of every entity that has all
the recorded components, and calls each reduction `fn(world) -> scalar`. With workers this is
the same: `run(frames=F)` is split into segments that end at the sampling frames, and the main
process samples between segments, when no worker is running.

Which state a sample holds: its "frame" is the world's frame count when it was taken, the number
of frames run so far. Frame 0 is the state before the first frame ran (taken at the start of the
first step()/run() after record(), so entities spawned before that are in it); frame f > 0 is the
state right after the f-th frame ran, before anything else happens. A frame count is sampled once
(a later run that starts where the previous one stopped does not sample it again), except after
`restore()` of an earlier snapshot, which replays frame counts: those are sampled again.

Storage: one preallocated numpy block per recorded field, holding many samples back to back; a
sample is one copy of each column into the block's next rows (a new, larger block when it is
full: doubling up to BLOCK_BYTES per field). The entity ids are copied only when the world's
structure changed since the previous sample; samples of an unchanged structure share one id
array. Reductions go into growable numpy arrays. `to_arrow()` wraps the blocks without copying
the field values; the "frame" and "entity" columns are built at that call (O(rows)).

Cost of a sample: one copy of the recorded columns (a memcpy per column and table), plus the
query's ~2 us per table, plus, with workers, one round trip per segment (run(frames=F) with
every=1 makes F round trips instead of one).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from . import arrow
from .errors import ArgumentTypeError, InvalidArgumentError
from .query import Query
from .schema import ComponentInfo, info_of

BLOCK_BYTES = 16 << 20     # a field's block grows by doubling up to this size (at least one sample)
FIRST_BLOCK_ROWS = 1024
RESERVED_NAMES = frozenset({"frame", "entity"})


class Recorder:
    """Samples of recorded components and reductions; built by `World.record`."""

    def __init__(self, query: Callable[[], Query | None], components: tuple[type, ...], every: int,
                 reductions: Mapping[str, Callable[[Any], Any]] | None, argument: Callable[[], Any]) -> None:
        """`query()`: makes the query over `components` (None without components), once every
        argument is checked; `reductions`: name ->
        fn(x) -> scalar, called with `argument()` (World.record passes the world, held weakly)."""
        self._argument = argument
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise InvalidArgumentError(f"record(every={every!r}): expected an int >= 1 (sample every N frames)")
        self.infos: tuple[ComponentInfo, ...] = tuple(info_of(c) for c in components)
        if len({info.id for info in self.infos}) != len(self.infos):
            raise InvalidArgumentError(f"record(): a component is listed twice in {[i.name for i in self.infos]}")
        self.every = every
        if reductions is not None and not isinstance(reductions, Mapping):
            raise ArgumentTypeError(f"record(reductions={reductions!r}): expected a dict of name -> callable(world)")
        self.reductions = dict(reductions or {})
        taken = RESERVED_NAMES | set(arrow.column_names(self.infos))
        for name, fn in self.reductions.items():
            if not isinstance(name, str) or name in taken:
                raise InvalidArgumentError(f"record(reductions=...): name {name!r} is not a str or is already a column "
                                 f"({sorted(taken)})")
            if not callable(fn):
                raise ArgumentTypeError(f"record(reductions=...): {name!r} maps to {fn!r}, expected a callable(world)")
        if not self.infos and not self.reductions:
            raise InvalidArgumentError("record() needs components to record, reductions, or both")
        self.dtypes = [dtype for info in self.infos for dtype in info.fields.values()]
        self._query = query()
        self._blocks: list[_Block] = []
        self._frames = _Growable(np.int64)      # per sample: its frame count
        self._counts = _Growable(np.int64)      # per sample: entities in it
        self._ids: list[np.ndarray] = []        # per sample: its ids (shared while the structure is unchanged)
        self._ids_version: int | None = None
        self._values = {name: _Growable(None) for name in self.reductions}
        self.last_frame = -1
        self.closed = False

    # ---------------------------------------------------------------- sampling (called by World)
    def is_due(self, frame: int) -> bool:
        return frame % self.every == 0 and frame != self.last_frame

    def next_due(self, frame: int) -> int:
        """The first sampling frame count after `frame`."""
        return (frame // self.every + 1) * self.every

    def sample(self, frame: int, structure_version: int) -> None:
        """Take one sample: reductions first (one that raises leaves no partial sample), then
        one copy of every recorded column."""
        subject = self._argument() if self.reductions else None
        values = {name: _scalar(name, fn(subject)) for name, fn in self.reductions.items()}
        for name, value in values.items():
            try:
                self._values[name].admit(value)
            except InvalidArgumentError as exc:
                raise InvalidArgumentError(f"reduction {name!r}: {exc}") from None
        count = 0
        if self._query is not None:
            batches = list(self._query)   # an unfiltered query: iterating consumes nothing
            count = sum(len(batch) for batch in batches)
            block = self._block_for(count)
            row = block.rows
            for batch in batches:
                n = len(batch)
                targets = iter(block.columns)
                for info in self.infos:
                    for column in batch[info.cls]:
                        next(targets)[row:row + n] = column
                row += n
            if structure_version != self._ids_version or not self._ids:
                ids = (np.concatenate([batch.entities for batch in batches]) if batches
                       else np.empty(0, np.int64))
                self._ids_version = structure_version
            else:
                ids = self._ids[-1]
            self._ids.append(ids)
            block.rows = row
            block.samples += 1
        for name, value in values.items():
            self._values[name].append(value)
        self._frames.append(frame)
        self._counts.append(count)
        self.last_frame = frame

    def _block_for(self, rows: int) -> _Block:
        block = self._blocks[-1] if self._blocks else None
        if block is not None and block.rows + rows <= block.capacity:
            return block
        row_bytes = max((dtype.itemsize for dtype in self.dtypes), default=1)
        most = max(rows, BLOCK_BYTES // row_bytes)
        capacity = max(rows, min(2 * block.capacity if block else FIRST_BLOCK_ROWS, most))
        block = _Block(self.dtypes, capacity)
        self._blocks.append(block)
        return block

    # ---------------------------------------------------------------- results
    @property
    def frames(self) -> np.ndarray:
        """The frame count of every sample taken, in order."""
        return self._frames.values().copy()

    def __len__(self) -> int:
        """Samples taken."""
        return len(self._frames)

    def to_arrow(self) -> Any:
        """The samples as a pyarrow.Table. With components: one row per entity per sample,
        "frame", "entity", then "Component.field" per field. Without: one row per sample,
        "frame" and the reductions (reductions_to_arrow()). The field values are not copied:
        the table shares the recorder's blocks, which later samples never overwrite."""
        pa = arrow.require(call="Recorder.to_arrow()")
        if not self.infos:
            return self.reductions_to_arrow()
        names = ["frame", "entity", *arrow.column_names(self.infos)]
        dtypes = [np.dtype(np.int64), np.dtype(np.int64), *self.dtypes]
        schema = pa.schema([pa.field(name, arrow.arrow_type(dtype), nullable=False)
                            for name, dtype in zip(names, dtypes, strict=True)])
        frames, counts = self._frames.values(), self._counts.values()
        batches = []
        first = 0
        for block in self._blocks:
            if block.samples == 0:
                continue
            last = first + block.samples
            frame_column = np.repeat(frames[first:last], counts[first:last])
            ids = (np.concatenate(self._ids[first:last]) if block.samples > 1 else self._ids[first])
            arrays = [arrow.column_to_arrow(frame_column, dtypes[0]), arrow.column_to_arrow(ids, dtypes[1])]
            arrays += [arrow.column_to_arrow(column[:block.rows], dtype)
                       for column, dtype in zip(block.columns, self.dtypes, strict=True)]
            batches.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
            first = last
        return pa.Table.from_batches(batches, schema=schema)

    def reductions_to_arrow(self) -> Any:
        """One row per sample: "frame", then each reduction's value."""
        pa = arrow.require(call="Recorder.reductions_to_arrow()")
        columns = {"frame": pa.array(self._frames.values())}
        for name, values in self._values.items():
            columns[name] = pa.array(values.values())
        return pa.table(columns)

    def to_parquet(self, path: str | os.PathLike[str], **options: Any) -> None:
        """Write to_arrow() to a Parquet file (pyarrow.parquet.write_table; `options` go there)."""
        parquet = arrow.require("pyarrow.parquet", call="Recorder.to_parquet()")
        parquet.write_table(self.to_arrow(), os.fspath(path), **options)

    def close(self) -> None:
        """Stop sampling; the samples stay readable. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._query = None

    def __repr__(self) -> str:
        what = ", ".join([*(i.name for i in self.infos), *self.reductions])
        state = "closed" if self.closed else f"every {self.every} frames"
        return f"<Recorder of {what}: {len(self)} samples, {state}>"


def run_recorded(recorders: list[Recorder], frames: int, frame_now: Callable[[], int],
                 structure_version: Callable[[], int], run_frames: Callable[[int, Any], None],
                 progress: Any) -> None:
    """Run `frames` frames as segments that end at the recorders' sampling frames, sampling
    before the first frame (when due) and after each segment. `frame_now()`: frames run so far;
    `structure_version()`: a number that changes with every structural change; `run_frames(n,
    progress)` runs n frames; `progress` (a progress bar or None) counts the whole run."""
    if frames == 0:
        return
    _sample_due(recorders, frame_now(), structure_version)
    done = 0
    while done < frames:
        frame = frame_now()
        live = [r for r in recorders if not r.closed] or recorders
        segment = min(frames - done, min(r.next_due(frame) for r in live) - frame)
        run_frames(segment, None if progress is None else _Shifted(progress, done))
        done += segment
        _sample_due(recorders, frame_now(), structure_version)


def _sample_due(recorders: list[Recorder], frame: int, structure_version: Callable[[], int]) -> None:
    for recorder in list(recorders):
        if not recorder.closed and recorder.is_due(frame):
            recorder.sample(frame, structure_version())


class _Shifted:
    """A progress bar seen by one segment: its `done` counts from the segment's start."""

    def __init__(self, bar: Any, start: int) -> None:
        self.bar = bar
        self.start = start

    def update(self, done: int) -> None:
        self.bar.update(self.start + done)


class _Block:
    """Preallocated rows for every recorded field; samples are appended whole, never split."""

    __slots__ = ("columns", "capacity", "rows", "samples")

    def __init__(self, dtypes: list[np.dtype], capacity: int) -> None:
        self.columns = [np.empty((capacity, *dtype.shape), dtype.base if dtype.shape else dtype) for dtype in dtypes]
        self.capacity = capacity
        self.rows = 0
        self.samples = 0


class _Growable:
    """A 1-D numpy array that grows by doubling; dtype None: taken from the first value, widened
    (np.result_type) when a later value needs it."""

    def __init__(self, dtype: type | None) -> None:
        self._data: np.ndarray | None = np.empty(16, dtype) if dtype is not None else None
        self._n = 0

    def admit(self, value: Any) -> None:
        """Make the array's dtype hold `value` (InvalidArgumentError, nothing appended, where no
        dtype holds it with the values so far)."""
        if self._data is None:
            self._data = np.empty(16, np.asarray(value).dtype)
        elif not np.can_cast(np.asarray(value).dtype, self._data.dtype, "safe") and np.ndim(value) == 0:
            self._data = self._data.astype(self._widened(np.asarray(value)))

    def append(self, value: Any) -> None:
        self.admit(value)
        assert self._data is not None
        if self._n == self._data.shape[0]:
            grown = np.empty(2 * self._n, self._data.dtype)
            grown[:self._n] = self._data
            self._data = grown
        self._data[self._n] = value
        self._n += 1

    def _widened(self, value: np.ndarray) -> np.dtype:
        """The dtype that holds the values so far and `value`: np.result_type's, except that
        int64 and uint64 values (numpy's result: float64, which rounds past 2**53) stay integers
        where int64 or uint64 holds them all; InvalidArgumentError where neither does."""
        assert self._data is not None
        dtype = np.result_type(self._data.dtype, value.dtype)
        kinds = {self._data.dtype.kind, value.dtype.kind}
        if dtype.kind != "f" or not kinds <= {"i", "u", "b"}:
            return dtype
        held = np.append(self._data[:self._n].astype(object), value.item())
        for integer in (np.int64, np.uint64):
            info = np.iinfo(integer)
            if all(info.min <= int(v) <= info.max for v in held):
                return np.dtype(integer)
        raise InvalidArgumentError(f"a reduction returned {value.item()} after {max(held, key=abs)}: no 64-bit "
                                   f"integer type holds both; return floats if they need not be exact")

    def values(self) -> np.ndarray:
        return self._data[:self._n] if self._data is not None else np.empty(0)

    def __len__(self) -> int:
        return self._n


def _scalar(name: str, value: Any) -> Any:
    array = np.asarray(value)
    if array.ndim != 0 or array.dtype.kind not in "biuf":
        raise InvalidArgumentError(f"reduction {name!r} returned {value!r}; a reduction returns one number or bool")
    return array[()]

