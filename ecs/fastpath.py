"""Generated paths for one-entity calls: straight-line Python over memoryviews.

`World.get`, `set`, `add` and `remove` of one entity are Python-bound: every attribute lookup
and loop counts (numpy scalar indexing costs ~100 ns an item, a memoryview item ~30 ns).
- `compile_access`: for one component in one table, a reader and a writer of its fields as
  Python scalars, with no loop over fields. Cost per call at 100k entities: get ~0.6 us,
  set ~0.6 us.
- `compile_move`: for one table edge (source -> target), the archetype move of one row: its
  shared columns, entity id and change bits copied, the source's last row moved into the hole,
  both entities placed, in one kernel call over the arena's bytes (kernels/moves.py) with a
  plan of offsets built here, through the kernel's compiled entry (_jit.compiled_entry, ~0.14 us
  a call).
- `compile_add` / `compile_remove`: `World.add(e, C(...))` / `remove(e, C)` of one component
  from one source table, given the entity id: the kernel checks that the id is a live one of
  the source and moves it (no locate from Python), the new fields are written. Per op, 10,000
  adds then removes, `C()` built in the loop: ~0.93 us, on a day esper took 0.27-0.35 us:
  about 0.25 us is the kernel call (its entry ~0.15 us; the row's bytes and bits ~0.075 us),
  0.25 us the path's Python, 0.4 us World.add's and the store's (the path is found by the
  table id the entity index holds for the id's slot, without a locate: the kernel checks the
  id). The least one compiled call per op costs from Python is ~0.3 us (the floor row of
  bench_structural), about esper's whole op.
- `compile_spawn`: `World.spawn` of one tuple of component types into its table (~1.3-1.6 us).
- `compile_despawn`: `World.despawn` of one entity of one table, given its id: the hole filled
  by a kernel of the same plan, the slot freed.
The store (store.py) caches them per (table, component), per edge, per table and per type
tuple. They are the store's own code: they change rows and entity places only when the store
calls them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from ecs.kernels import moves
from ecs.kernels._jit import compiled_entry

from .table import BYTE_FLIP

if TYPE_CHECKING:
    from .changes import ChangeTracker
    from .entity import EntityIndex
    from .memory import Arena
    from .schema import ComponentInfo
    from .table import Table


class Store(Protocol):
    """What the generated paths use of the store that caches them (store.py)."""

    structure_version: int
    changes: ChangeTracker
    entities: EntityIndex
    arena: Arena

Read = Callable[[int], tuple[Any, ...]]               # get's fast path: row -> raw field scalars
Write = Callable[[int, tuple[Any, ...]], None]        # set's fast path: (row, raw) -> stored
Move = Callable[[int, int], int]                      # (entity slot, row in source) -> row in target
AddPath = Callable[[int, Any], bool]                  # add's fast path: (entity id, raw) -> done
RemovePath = Callable[[int], bool]                    # remove's fast path: (entity id) -> done
DespawnPath = Callable[[int], bool]                   # despawn's fast path: (entity id) -> done


def compile_access(views: tuple[memoryview, ...]) -> tuple[Read, Write]:
    """read(row) -> the fields as Python scalars; write(row, raw) stores them (straight-line
    memoryview items: a list comprehension over the views cost ~0.25 us more)."""
    items = "".join(f"v{j}[row], " for j in range(len(views)))
    namespace: dict[str, Any] = {f"v{j}": view for j, view in enumerate(views)}
    exec(f"def read(row):\n    return ({items})\n"  # noqa: S102 - built from field counts only
         f"def write(row, raw):\n    {items + '= raw' if views else '()= raw'}\n", namespace)
    return namespace.pop("read"), namespace.pop("write")


def no_fast_path(*components: object) -> None:
    """The fast path before any exists: never applies."""
    return None


class EdgeMove(NamedTuple):
    """The one-row move of a table edge: `move(index, row) -> new_row`, the kernel the paths call
    for an entity id (moves.move_entity's compiled entry) and what it is called with (the
    arena's bytes and the edge's plan)."""

    move: Move
    kernel: Callable[..., bool]
    arena: np.ndarray
    plan: np.ndarray


def compile_move(store: Store, source: Table, target: Table, slot_pairs: list[tuple[int, int]]) -> EdgeMove:
    """move(index, row) -> new_row: move entity slot `index` from `row` of `source` to the end of
    `target` (reserved by the caller) and fill the hole with the source's last row, in one
    kernel call (moves.move_row). The values of the components both tables have go along, and
    the bits of `slot_pairs` (source slot, target slot): those that follow a row. The
    components new to the entity are marked added and changed in the target row."""
    new = [info for info in target.components if info.id not in source.component_ids]
    marks = [slot for info in new for slot in (target.marks_slot[info.id], target.added_slot[info.id])]
    arena, plan = _arena_bytes(store), _row_plan(store, source, target, slot_pairs, marks)
    move_row = compiled_entry(moves.move_row, arena, plan, 0, 0, 0, 0)
    move_entity = compiled_entry(moves.move_entity, arena, plan, 1, 0, 0, 0)

    def move(index: int, row: int) -> int:
        new_row = target.n
        target.n = new_row + 1
        last = source.n - 1
        source.n = last
        move_row(arena, plan, index, row, new_row, last)
        return new_row  # type: ignore[no-any-return]

    return EdgeMove(move, move_entity, arena, plan)


def compile_despawn(store: Store, source: Table) -> DespawnPath:
    """despawn(entity) -> True: despawn the live id `entity` (a Python int in (0, 2**63)) of
    `source`: the source's last row fills the hole (moves.take_entity) and the slot is freed.
    False, having changed nothing, when the id is not a live one of `source` or once the change
    tracker or the source's slots changed. Compiled only while no reader journals a component
    of the table (registering one changes the tracker's version). ~0.8 us."""
    arena, plan = _arena_bytes(store), _row_plan(store, source, None, [], [])
    changes, version, nslots, entities = store.changes, store.changes.version, source.nslots, store.entities
    take_entity, free_one = compiled_entry(moves.take_entity, arena, plan, 1, 0, 0), entities.free_one

    def despawn(entity: int) -> bool:
        if changes.version != version or source.nslots != nslots:
            return False
        last = source.n - 1
        index = take_entity(arena, plan, entity, entities.high_water, last)
        if index < 0:
            return False
        source.n = last
        store.structure_version += 1
        free_one(index)
        return True

    return despawn


def _arena_bytes(store: Store) -> np.ndarray:
    """The store's whole arena as bytes (a view: no copy; dropped with the path that holds it)."""
    return store.arena.view(np.uint8, 0, (store.arena.size,))


def _row_plan(store: Store, source: Table, target: Table | None, slot_pairs: list[tuple[int, int]],
              marks: list[int]) -> np.ndarray:
    """The plan of moves.move_row (or take_row, without a target) for one edge: see the layout in
    kernels/moves.py."""
    def offset(array: np.ndarray) -> int:
        spec = store.arena.spec_of(array)
        assert spec is not None, "a table's arrays lie in its store's arena"
        return spec.offset

    shared: list[int] = []
    columns: list[int] = []
    target_specs = target.column_specs if target is not None else {}
    for key, spec in source.column_specs.items():
        size = np.dtype(spec.dtype).itemsize * math.prod(spec.shape[1:])
        columns += [spec.offset, size]
        if key in target_specs:
            shared += [spec.offset, target_specs[key].offset, size]
    into = target if target is not None else source
    header = [len(shared) // 3, len(columns) // 2, len(slot_pairs), source.nslots,
              source.entity_spec.offset, into.entity_spec.offset,
              offset(store.entities.table_of), offset(store.entities.row_of), source.id, into.id,
              source.bit_matrix_spec.offset, into.bit_matrix_spec.offset,
              source.max_words * 8, into.max_words * 8, BYTE_FLIP, len(marks), offset(store.entities.generation)]
    assert len(header) == moves.HEADER
    pairs = [slot for pair in slot_pairs for slot in pair]
    return np.array(header + shared + columns + pairs + marks, np.int64)


def compile_add(store: Store, source: Table, target: Table, info: ComponentInfo, edge: EdgeMove) -> AddPath | None:
    """add(entity, raw) -> True: give the live id `entity` (a Python int in (0, 2**63)) of
    `source` (which lacks the component) the component's `_raw` field scalars, moving it to
    `target` through the edge's kernel (which marks its row added and changed there). False,
    having changed nothing, when the id is not a live one of `source`, for values not given as
    scalars (raw None), when `target` has no free row, or once the change tracker or the
    source's slots changed (the move's bits would be stale). None when a field is a vector."""
    views = target.field_items[info.id]
    if views is None:
        return None
    namespace = _edge_namespace(store, source, target, edge)
    fields = "".join(f"f{j}, " for j in range(len(views)))
    lines = ["def add(entity, raw):",
             f"    if raw is None or {_stale(store, source)}:",
             "        return False"]
    if views:
        lines.append(f"    {fields}= raw")
    lines += _edge_move_lines()
    if views:
        lines.append(f"    {''.join(f'v{j}[new_row], ' for j in range(len(views)))}= ({fields})")
    namespace.update({f"v{j}": view for j, view in enumerate(views)})
    lines.append("    return True")
    exec("\n".join(lines), namespace)  # noqa: S102 - source built above from ints and fixed names
    return namespace.pop("add")  # type: ignore[no-any-return]   # popped: no cycle keeps the views alive


def compile_remove(store: Store, source: Table, target: Table, edge: EdgeMove) -> RemovePath:
    """remove(entity) -> True: move the live id `entity` (a Python int in (0, 2**63)) of `source`
    to `target` (one component fewer) through the edge's kernel. False, having changed nothing,
    when the id is not a live one of `source`, when `target` has no free row, or once the change
    tracker or the source's slots changed. Compiled only while no reader journals the removed
    component (registering one changes the tracker's version)."""
    namespace = _edge_namespace(store, source, target, edge)
    lines = ["def remove(entity):",
             f"    if {_stale(store, source)}:",
             "        return False",
             *_edge_move_lines(),
             "    return True"]
    exec("\n".join(lines), namespace)  # noqa: S102 - fixed source and two ints
    return namespace.pop("remove")  # type: ignore[no-any-return]


def _stale(store: Store, source: Table) -> str:
    """The test that an edge path is stale: the change tracker or the source's slots changed
    since it was compiled (the edge's move, compiled with them, would carry the wrong bits)."""
    return f"changes.version != {store.changes.version} or source.nslots != {source.nslots}"


def _mark_lines(table: Table, infos: tuple[ComponentInfo, ...], row: str) -> list[str]:
    """Lines that mark row `row` of `table` added and changed for each of `infos` (bytes of the
    table's bits, named `bits` in the generated function's globals)."""
    lines = [f"    byte = ({row} >> 3) ^ {BYTE_FLIP}", f"    bit = 1 << ({row} & 7)"]
    for info in infos:
        for slot in (table.marks_slot[info.id], table.added_slot[info.id]):
            lines.append(f"    bits[{slot * table.max_words * 8} + byte] |= bit")
    return lines


def _edge_namespace(store: Store, source: Table, target: Table, edge: EdgeMove) -> dict[str, Any]:
    """The globals of an add or remove path along `edge` (`edge` itself names the move it was
    compiled from: Store._cache_edge_path compares it)."""
    return {"store": store, "changes": store.changes, "entities": store.entities, "source": source,
            "target": target, "edge": edge, "move_entity": edge.kernel, "arena": edge.arena, "plan": edge.plan}


def _edge_move_lines() -> list[str]:
    """Store._move's steps for one entity id, with the edge's kernel inline: return False unless
    the target has a free row and the kernel finds the id in the source and moves it to
    `new_row`; then count the rows and a structural change."""
    return ["    new_row = target.n",
            "    if new_row >= target.capacity:",
            "        return False",
            "    last = source.n - 1",
            "    if not move_entity(arena, plan, entity, entities.high_water, new_row, last):",
            "        return False",
            "    target.n = new_row + 1",
            "    source.n = last",
            "    store.structure_version += 1"]


def compile_spawn(store: Store, table: Table, infos: tuple[ComponentInfo, ...]) -> Callable[..., int | None] | None:
    """Store.spawn's fast path for one tuple of component types: a function of the values that
    places one entity in `table` with straight-line memoryview writes (no loops over fields, no
    numpy scalars, no kernel dispatch), or returns None, having changed nothing, unless it gets
    exactly these types with `_raw` scalars (schema.py). None when a component has a vector field.
    Cost per entity at 100k, values built in the loop: ~1.6 us."""
    views = [table.field_items[info.id] for info in infos]
    if any(v is None for v in views):
        return None
    namespace: dict[str, Any] = {"table": table, "store": store, "allocate_one": store.entities.allocate_one,
                                 "entity_items": table.entity_items, "bits": table.bit_bytes}
    values = [f"c{k}" for k in range(len(infos))]
    checks = ["extra"]
    for k, info in enumerate(infos):
        namespace[f"T{k}"] = info.cls
        checks.append(f"type(c{k}) is not T{k}")
    lines = [f"def spawn({''.join(v + '=None, ' for v in values)}*extra):",
             f"    if {' or '.join(checks)}:",
             "        return None"]
    lines += [f"    r{k} = c{k}._raw" for k in range(len(infos))]
    if infos:
        lines += [f"    if {' or '.join(f'r{k} is None' for k in range(len(infos)))}:",
                  "        return None"]
    lines += ["    row = table.n",
              "    if row >= table.capacity:",
              "        table.reserve(row + 1)",
              f"    entity = allocate_one({table.id}, row, entity_items)",
              "    store.structure_version += 1",
              "    table.n = row + 1"]
    for k, component_views in enumerate(views):
        targets = []
        for j, view in enumerate(component_views):  # type: ignore[arg-type]
            namespace[f"v{k}_{j}"] = view
            targets.append(f"v{k}_{j}[row], ")
        if targets:
            lines.append(f"    {''.join(targets)}= r{k}")
    lines += _mark_lines(table, infos, "row") + ["    return entity"]
    exec("\n".join(lines), namespace)  # noqa: S102 - source built above from ints and fixed names
    # popped, so that the function and its globals (the namespace) form no cycle: dropping the
    # fast path must free its memoryviews at once, or close() cannot unmap the arena
    return namespace.pop("spawn")  # type: ignore[no-any-return]
