"""World: the facade users hold. It checks every argument, then delegates.

A world is its store (store.py: the arena, entities, tables, change tracking and every
structural change), its resources (resources.py), and its schedule (schedule.py: the systems,
the frame counter and the worker pool). Queries (query.py), snapshots (snapshot.py), saved
files (worldfile.py) and deferred changes (deferred.py) work on those parts; none of them
receives a World.

Every call validates all of its input before anything changes: a call that raises leaves the
world exactly as it was (no half-spawned entity, no half-written batch). Structural changes
happen in the main process between frames.

Lifetime: `close()` (or the `with` block's end) stops the workers and releases the shared
memory; a world dropped without close() is released when it is collected, with a
ResourceWarning as for an unclosed file. A process forked from the one that made a world
(os.fork) sees the world as closed: every call raises WorldClosedError saying so, and the
child's exit touches none of the parent's workers or memory. One thread at a time may run
frames: step()/run() while another thread runs them raises ConcurrentUseError; close() from
another thread waits for the running frames to end.
"""

from __future__ import annotations

import math
import os
import threading
import warnings
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ecs.kernels import sets

from . import heap, snapshot, worldfile
from .coerce import as_int
from .deferred import Deferred
from .entity import MAX_ENTITIES, MAX_ROWS
from .errors import (
    ArgumentTypeError,
    ComponentValueError,
    ConcurrentUseError,
    DeadEntityError,
    InvalidArgumentError,
    WorldClosedError,
)
from .interrupts import held_interrupts
from .mailbox import MAX_WORKERS
from .parts import parts_of, values_of
from .progress import Progress
from .query import Query
from .recorder import Recorder, run_recorded
from .resources import Resources
from .schedule import Schedule
from .schema import info_of
from .snapshot import Snapshot
from .store import Store
from .system import System

DEFAULT_MAX_ROWS = 1 << 25        # rows one archetype table can hold (address space only)
DEFAULT_MAX_ENTITIES = 1 << 28    # live entities a world can hold (address space only)


class World:
    """Entities, their components as shared-memory columns, systems and resources.

    `workers`: 0 runs systems in this process; N >= 1 uses N worker processes; "auto" one working
    process per core: cores - 1 workers beside this process, which takes units too (with a
    step_timeout, which makes this process only supervise: one worker per core).
    `step_timeout`: seconds a frame may take on the workers before they are killed and replaced
    (WorkerCrashedError). `max_rows` / `max_entities` size the address-space reservations
    (memory is committed only as tables grow).
    """

    def __init__(self, workers: int | str = 0, *, step_timeout: float | None = None,
                 max_rows: int = DEFAULT_MAX_ROWS, max_entities: int = DEFAULT_MAX_ENTITIES) -> None:
        self.workers = _worker_count(workers, step_timeout)
        if step_timeout is not None and (isinstance(step_timeout, bool) or not isinstance(step_timeout, (int, float))
                                         or not 0 < step_timeout < math.inf):
            raise InvalidArgumentError(f"World(step_timeout={step_timeout!r}): expected seconds > 0 or None")
        self.step_timeout = step_timeout
        for name, value, most in (("max_rows", max_rows, MAX_ROWS), ("max_entities", max_entities, MAX_ENTITIES)):
            if isinstance(value, bool) or not isinstance(value, int) or not 64 <= value <= most:
                raise InvalidArgumentError(f"World({name}={value!r}): expected an int in [64, {most}]")
        heap.keep_freed_heap()
        self._store = Store(max_rows, max_entities, shared=self.workers > 0)
        self.resources = Resources(self._store.arena)
        self._schedule = Schedule(self._store, self.resources, self.workers, step_timeout)
        self._running = threading.Lock()   # held while frames run
        self._running_thread: int | None = None   # the thread that holds it (its frames' callbacks run there)
        self._recorders: list[Recorder] = []   # record(): sampled by step()/run() (recorder.py)
        # the parts hold no reference back to the world: dropping it collects it at once
        self._finalizer = weakref.finalize(self, _release_unclosed, self._schedule, self.resources, self._store)
        self._finalizer.atexit = False

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Stop the workers and release every column and resource; further use raises
        WorldClosedError. Views that user code holds keep their memory until they go. Idempotent."""
        if self._store.closed:
            return
        with self._frames_done("close"):
            self._finalizer.detach()
            _release(self._schedule, self.resources, self._store)

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_open(self, operation: str) -> None:
        if self._store.closed:
            raise WorldClosedError(operation, self._store.forked)

    def __len__(self) -> int:
        return len(self._store)   # also after close(): the count it had

    def __repr__(self) -> str:
        state = "closed" if self._store.closed else f"{len(self)} entities in {len(self._store.tables)} tables"
        return f"<World {state}, workers={self.workers}>"

    # ---------------------------------------------------------------- spawn / despawn
    def spawn(self, *components: object) -> int:
        """Create one entity with these component values; returns its id."""
        if self._store.closed:
            raise WorldClosedError("spawn", self._store.forked)
        entity = self._store.try_spawn_fast(components)
        if entity is not None:
            return entity
        parts = parts_of("spawn", components)
        for info, _, n in parts:
            if n is not None:
                raise ComponentValueError(info.name, None, f"<arrays of length {n}>",
                                          "spawn() takes scalar values; use spawn_batch(n, ...) for arrays")
        return self._store.spawn(parts)

    def spawn_batch(self, n: int, *components: object) -> np.ndarray:
        """Create `n` entities in one table placement; values are arrays of length n or scalars
        that broadcast. Returns their ids (int64). Cost: O(n) vectorised, no per-entity loop."""
        self._check_open("spawn_batch")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise InvalidArgumentError(f"spawn_batch(n={n!r}): n must be an int >= 0")
        n = int(n)
        parts = parts_of("spawn_batch", components)
        for info, values, length in parts:
            if length is not None and length != n:
                raise ComponentValueError(info.name, _batch_field(info, values), f"<array of length {length}>",
                                          f"batch length {length} differs from n={n}")
        with held_interrupts():   # Ctrl-C after the change, never inside it (interrupts.py)
            return self._store.spawn_batch(n, parts)

    def despawn(self, entity: int) -> None:
        """Destroy one entity; its id is never alive again. DeadEntityError if it is not alive."""
        if self._store.closed:
            raise WorldClosedError("despawn", self._store.forked)
        self._store.despawn(entity)

    def despawn_batch(self, entities: Sequence[int] | np.ndarray) -> None:
        """Destroy many entities; all must be alive and distinct, else nothing is despawned."""
        self._check_open("despawn_batch")
        ids = _id_array(entities)
        _check_distinct("despawn_batch", ids)
        with held_interrupts():
            self._store.despawn_batch(ids)

    def is_alive(self, entity: int) -> bool:
        self._check_open("is_alive")
        return self._store.is_alive(entity)

    # ---------------------------------------------------------------- components of one entity
    def has(self, entity: int, component: type) -> bool:
        self._check_open("has")
        info = info_of(component)
        _, table, _ = self._store.locate(entity)
        return info.id in table.component_ids

    def get(self, entity: int, component: type) -> Any:
        """A copy of the entity's component value (fields are numpy scalars)."""
        if self._store.closed:
            raise WorldClosedError("get", self._store.forked)
        value = self._store.values.try_get_fast(entity, component)
        if value is not None:
            return value
        return self._store.values.read(entity, info_of(component))

    def set(self, entity: int, value: object) -> None:
        """Write one component value and mark the row changed."""
        if self._store.closed:
            raise WorldClosedError("set", self._store.forked)
        if self._store.values.try_set_fast(entity, value):
            return
        info, values, length = values_of(value)
        if length is not None:
            raise ComponentValueError(info.name, None, f"<arrays of length {length}>",
                                      "set() takes scalar values; use set_batch(ids, ...) for arrays")
        self._store.values.write(entity, info, values)

    def set_batch(self, entities: Sequence[int] | np.ndarray, value: object) -> None:
        """Write one component for many entities (values: arrays of len(entities) or scalars)
        and mark their rows changed. Checks every id and length before writing anything."""
        self._check_open("set_batch")
        info, values, length = values_of(value)
        ids = _id_array(entities)
        _check_distinct("set_batch", ids)
        if length is not None and length != ids.shape[0]:
            raise ComponentValueError(info.name, _batch_field(info, values), f"<array of length {length}>",
                                      f"batch length {length} differs from the {ids.shape[0]} entities given")
        with held_interrupts():
            self._store.values.write_batch(ids, info, values)

    def add(self, entity: int, *components: object) -> None:
        """Give the entity these component values (overwriting ones it has). A new component moves
        the entity to another table, keeping every other value and its change state."""
        if self._store.closed:
            raise WorldClosedError("add", self._store.forked)
        if len(components) == 1 and self._store.try_add_fast(entity, components[0]):
            return
        parts = parts_of("add", components)
        for info, _, n in parts:
            if n is not None:
                raise ComponentValueError(info.name, None, f"<arrays of length {n}>", "add() takes scalar values")
        if len(parts) == 1:
            self._store.add_component(entity, parts[0].info, parts[0].values)
            return
        self._store.change_components(entity, [(part.info, part.values) for part in parts], ())

    def remove(self, entity: int, *components: type) -> None:
        """Take these components away; the entity keeps every other value and change state."""
        if self._store.closed:
            raise WorldClosedError("remove", self._store.forked)
        if len(components) == 1 and self._store.try_remove_fast(entity, components[0]):
            return
        infos = [info_of(c) for c in components]
        if len(infos) == 1:
            self._store.remove_component(entity, infos[0])
            return
        _, table, _ = self._store.locate(entity)
        for info in infos:
            if info.id not in table.component_ids:
                raise self._store.missing(entity, table, info)
        self._store.change_components(entity, (), infos)

    def add_batch(self, entities: Sequence[int] | np.ndarray, *components: object) -> None:
        """`add` for many entities: give each these component values (arrays of len(entities),
        or scalars that broadcast), overwriting ones it has. One archetype move per source
        table. Checks every id, length and duplicate before anything changes."""
        self._check_open("add_batch")
        ids = _id_array(entities)
        parts = parts_of("add_batch", components)
        for info, values, length in parts:
            if length is not None and length != ids.shape[0]:
                raise ComponentValueError(info.name, _batch_field(info, values), f"<array of length {length}>",
                                          f"batch length {length} differs from the {ids.shape[0]} entities given")
        _check_distinct("add_batch", ids)
        placed = self._store.placed(ids)  # DeadEntityError naming the first dead id
        with held_interrupts():
            self._store.change_components_batch(ids, [(part.info, part.values) for part in parts], [], placed=placed)

    def remove_batch(self, entities: Sequence[int] | np.ndarray, *components: type) -> None:
        """`remove` for many entities: each must have every component (MissingComponentError
        naming the first that lacks one, and nothing changes). One archetype move per source table."""
        self._check_open("remove_batch")
        ids = _id_array(entities)
        infos = [info_of(c) for c in components]
        _check_distinct("remove_batch", ids)
        placed = self._store.placed(ids, *infos)
        with held_interrupts():
            self._store.change_components_batch(ids, [], infos, placed=placed)

    def defer(self) -> Deferred:
        """`with world.defer() as d:` queue spawn/despawn/add/remove/set, applied at the block's
        end in one pass (one archetype move per entity); `d.spawned` then holds the new ids."""
        self._check_open("defer")
        return Deferred(self._store)

    # ---------------------------------------------------------------- queries
    def query(self, *components: type, without: Sequence[type] = (), changed: Sequence[type] = (),
              added: Sequence[type] = (), removed: Sequence[type] = ()) -> Query:
        """A cached query over tables with every component and none of `without`; see query.py.
        `removed=[C]`: `query.removed()` gives the ids that lost C since this query last looked."""
        self._check_open("query")
        return Query(self._store, components, without, changed, added, removed)

    # ---------------------------------------------------------------- systems
    def add_system(self, system: System) -> None:
        """Append a system to the frame; systems run in the order they are added. Binding and
        compilation happen here, so a parameter that cannot be bound fails now, not at step()."""
        self._check_open("add_system")
        self._schedule.add(system)

    def remove_system(self, system: System) -> None:
        """Take a system added with add_system out of the frame and free its change reader; the
        other systems keep their order. InvalidArgumentError if it was not added. Also the way
        out for a system whose kernel fails to compile at its first step."""
        self._check_open("remove_system")
        with self._frames_done("remove_system"):
            self._schedule.remove(system)

    def step(self, **params: object) -> None:
        """Run one frame: every due system once, in registration order. `params` bind kernel
        parameters by name (before world.resources)."""
        self._check_open("step")
        if params:
            self._warn_unused("step", params)
        # _start_frames and _end_frames inline: a step of a small world costs a few us in all
        if not self._running.acquire(blocking=False):
            raise ConcurrentUseError("step", inside=self._running_thread == threading.get_ident())
        self._running_thread = threading.get_ident()
        try:
            self._run(1, params, None)
        finally:
            self._running_thread = None
            self._running.release()

    def run(self, frames: int, *, progress: bool = False, **params: object) -> None:
        """Run `frames` frames with the same `params`; `progress=True` draws a progress bar on a
        terminal."""
        self._check_open("run")
        count = as_int(frames)     # numpy integers too
        if count is None or count < 0:
            raise InvalidArgumentError(f"run(frames={frames!r}): expected an int >= 0")
        frames = count
        if params:
            self._warn_unused("run", params)
        self._start_frames("run")
        bar = Progress(frames, progress)
        try:
            self._run(frames, params, bar)
        finally:
            bar.close()
            self._end_frames()

    def _start_frames(self, operation: str) -> None:
        """Take the frames' lock, or raise ConcurrentUseError (saying whether this very thread
        holds it: a reduction or callback of the running frames)."""
        if not self._running.acquire(blocking=False):
            raise ConcurrentUseError(operation, inside=self._running_thread == threading.get_ident())
        self._running_thread = threading.get_ident()

    def _end_frames(self) -> None:
        self._running_thread = None
        self._running.release()

    def _frames_done(self, operation: str) -> threading.Lock:
        """The frames' lock to wait on: another thread's frames are waited for; from inside this
        thread's running frames (a recorder's reduction) the wait would never end: refused."""
        if self._running_thread == threading.get_ident():
            raise ConcurrentUseError(operation, inside=True)
        return self._running

    def _warn_unused(self, call: str, params: dict[str, object]) -> None:
        """A UserWarning (once per name while the systems stay) for keywords no system takes:
        most often a misspelt name, which would leave a resource of the right name in use."""
        unused, taken = self._schedule.unused_keywords(params)
        for name in unused:
            warnings.warn(f"{call}({name}=...): no system of this world has a parameter {name!r}, so it is "
                          f"ignored (the systems' named values: {', '.join(taken) or 'none'})",
                          UserWarning, stacklevel=3)

    def _run(self, frames: int, params: dict[str, object], bar: Progress | None) -> None:
        if self._recorders:
            self._recorders = [r for r in self._recorders if not r.closed]
        if not self._recorders:
            self._schedule.run(frames, params, bar)
            return
        store, schedule = self._store, self._schedule
        run_recorded(self._recorders, frames, lambda: schedule.frame, lambda: store.structure_version,
                     lambda n, progress: schedule.run(n, params, progress), bar)

    # ---------------------------------------------------------------- recording (ecs/recorder.py)
    def record(self, *components: type, every: int = 1,
               reductions: dict[str, Callable[[World], Any]] | None = None) -> Recorder:
        """Sample these components' fields (for entities that have all of them) and the
        `reductions` (name -> fn(world) -> scalar) during step()/run(), every `every` frames,
        in this process between frames (workers too). A sample's "frame" is the number of
        frames run when it was taken: 0 is the state before the first frame, f the state
        right after the f-th. `recorder.to_arrow()` gives the samples, `close()` stops it."""
        self._check_open("record")
        recorder = Recorder(lambda: self.query(*components) if components else None, components, every, reductions,
                            weakref.ref(self))   # a recorder keeps its world alive through nothing
        self._recorders.append(recorder)
        return recorder

    def stats(self) -> dict[str, dict[str, float]]:
        """Per system: calls (frames it was due in, a frame that failed before it included: the
        count every=N keeps its cadence by), kernel_calls, rows given, seconds spent."""
        self._check_open("stats")
        return self._schedule.stats()

    # ---------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write every entity, column, resource and the frame counter to `path`, atomically
        (a crash mid-save leaves the old file). Format: ecs/worldfile.py; no pickle."""
        self._check_open("save")
        worldfile.save(path, self._store, self.resources, self._schedule.frame)

    @classmethod
    def load(cls, path: str | os.PathLike[str], workers: int | str = 0, **options: Any) -> World:
        """A new world with the saved ids, values, archetypes and resources. SnapshotError for a
        corrupt, truncated, foreign or newer file. Systems are code: add them again."""
        made: list[World] = []

        def open_world(limits: worldfile.Limits) -> tuple[Store, Resources]:
            for name, least, held in (("max_rows", limits.rows_needed, "its largest table has"),
                                      ("max_entities", limits.entities_needed, "it has handed out")):
                asked = as_int(options.get(name))   # other types: World() names them
                if asked is not None and 0 <= asked < least:
                    raise InvalidArgumentError(f"World.load({name}={asked!r}): the file's world needs {name} >= "
                                               f"{least} ({held} {least} {'rows' if name == 'max_rows' else 'ids'})")
            world = cls(workers, **{"max_rows": limits.max_rows, "max_entities": limits.max_entities, **options})
            made.append(world)
            return world._store, world.resources

        try:
            frame = worldfile.load(path, open_world)
        except BaseException:
            for world in made:
                world.close()
            raise
        made[0]._schedule.start_at(frame)
        return made[0]

    def snapshot(self) -> Snapshot:
        """An in-memory, read-only copy of the world's state for `restore`. Costs a copy of the
        field columns, plus the id columns unless a snapshot of the same structure is alive."""
        self._check_open("snapshot")
        return Snapshot(self._store, self.resources, self._schedule.frame)

    def restore(self, snap: Snapshot) -> None:
        """Put the world back as it was at `snap`; readers see only rows whose values differ.
        Costs a compare-copy of the field columns; of the ids and the entity index as well
        when something structural (spawn, despawn, add, remove) happened since."""
        self._check_open("restore")
        if not isinstance(snap, Snapshot):
            raise ArgumentTypeError(f"restore() takes a snapshot from world.snapshot(), got {snap!r}")
        with held_interrupts():
            self._schedule.start_at(snapshot.restore(self._store, self.resources, snap))


def _release(schedule: Schedule, resources: Resources, store: Store) -> None:
    schedule.close()
    resources.drop_views()
    store.close()


def _release_unclosed(schedule: Schedule, resources: Resources, store: Store) -> None:
    """A world collected without close(): release it all the same, and say so."""
    if store.closed:
        return
    warnings.warn(f"a World with {len(store)} entities was never closed; use `with ecs.World() as world:` "
                  f"or world.close()", ResourceWarning, stacklevel=2)
    _release(schedule, resources, store)


def _batch_field(info: Any, values: dict[str, np.ndarray]) -> str:
    """The first field of a batch value given as an array (the one whose length is wrong)."""
    return next(f for f, v in values.items() if v.ndim > len(info.fields[f].shape))


def _id_array(entities: Sequence[int] | np.ndarray) -> np.ndarray:
    """The ids as a new int64 array: never a view of the caller's array, which may be a table's
    own entity column (a query batch's `entities`) that the call's moves rewrite."""
    ids = np.asarray(entities)
    if not isinstance(entities, np.ndarray) and ids.dtype.kind in "iu" and ids.ndim == 1:
        kinds = set(map(type, entities))   # numpy makes 1 of True among ints: an id is never a bool
        if bool in kinds or np.bool_ in kinds:
            flag = next(e for e in entities if type(e) in (bool, np.bool_))
            raise ArgumentTypeError(f"an entity id is an int, got {flag!r}")
    if ids.ndim == 1 and ids.size and ids.dtype.kind in "fO" and not isinstance(entities, np.ndarray):
        # ints numpy made floats or objects of: past int64's range, or numpy ints of mixed signs
        exact = list(entities)
        if all(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in exact):
            outside = [int(e) for e in exact if not -(2**63) <= int(e) < 2**63]
            if outside:
                raise DeadEntityError(outside[0], "no entity was ever spawned with this id")
            ids = np.array([int(e) for e in exact], np.int64)
    if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
        first = ids.reshape(-1)[0].item() if ids.size else None
        raise ArgumentTypeError(f"expected a 1-D sequence of entity ids, got {ids.dtype} array of shape {ids.shape}"
                                + (f" (first value {first!r})" if ids.size else ""))
    if ids.dtype == np.uint64:   # int64 would wrap an id past 2**63 to a negative one
        past = np.flatnonzero(ids > np.uint64(np.iinfo(np.int64).max))
        if past.size:
            raise DeadEntityError(int(ids[past[0]]), "no entity was ever spawned with this id")
    return ids.astype(np.int64, copy=True)


def _check_distinct(call: str, ids: np.ndarray) -> None:
    repeat = sets.first_repeat(ids)
    if repeat >= 0:
        raise InvalidArgumentError(f"{call}: entity {int(ids[repeat])} is listed more than once")


def _worker_count(workers: int | str, step_timeout: float | None) -> int:
    """The worker processes `workers` asks for. "auto": as many processes doing work as cores.
    The main process is one of them unless a step_timeout makes it only supervise: with a
    worker per core it is a third process on two cores, and steps of the physics demo took
    4.0-5.7 ms against 4.0-4.1 ms with one worker (2 cores, runs of one session)."""
    if workers == "auto":
        cores = len(os.sched_getaffinity(0))
        return cores if step_timeout is not None else cores - 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise InvalidArgumentError(f"World(workers={workers!r}): expected an int >= 0 or 'auto'")
    if workers > MAX_WORKERS:   # refused here, before command buffers for that many are reserved
        raise InvalidArgumentError(f"World(workers={workers}): at most {MAX_WORKERS}")
    return workers
