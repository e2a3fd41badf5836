"""Change-tracking slots as a limit: every table has 256 bitsets (2 per component, 1 per change
reader that reads it). Running out raises CapacityError naming the limit, and a call that fails
for lack of slots changes nothing: no table is left half-made, no slot is left taken."""

from __future__ import annotations

import pytest

import ecs
from ecs import component, f32
from tests import introspect


def _make(name: str) -> type:
    return component(type(name, (), {"__annotations__": {"v": f32}, "__module__": __name__, "__qualname__": name}))


A, B, Z = _make("SlotA"), _make("SlotB"), _make("SlotZ")
MANY = [_make(f"Slot{k}") for k in range(128)]


def filled(world: ecs.World, component: type, readers: int) -> list[ecs.Query]:
    queries = [world.query(component, changed=[component]) for _ in range(readers)]
    for query in queries:
        query.count()
    return queries


def test_a_spawn_that_lacks_slots_leaves_no_table_behind() -> None:
    with ecs.World() as world:
        world.spawn(A(v=1.0))
        keep = filled(world, A, 254)        # the table of A alone: 2 + 254 = 256 slots
        tables = len(introspect.tables(world))
        for _ in range(2):                  # the second try fails the same way: nothing was registered
            with pytest.raises(ecs.CapacityError, match=r"has no free change-tracking slot: all 256 are in use"):
                world.spawn(A(v=1.0), B(v=2.0))    # a new table would need 4 + 254
            assert len(introspect.tables(world)) == tables
        assert len(world) == 1 and len(keep) == 254


def test_a_reader_that_lacks_slots_takes_none_anywhere() -> None:
    with ecs.World() as world:
        world.spawn(A(v=1.0), Z(v=0.0))                       # 4 slots
        world.spawn(A(v=1.0), *(c(v=0.0) for c in MANY[:100]))  # 202 slots
        keep = filled(world, A, 54)                           # fills the big table: 256
        for _ in range(300):
            with pytest.raises(ecs.CapacityError):
                filled(world, A, 1)
        z_reader = world.query(Z, changed=[Z])               # the small table still has its free slots
        assert z_reader.count() == 1 and len(keep) == 54


def test_an_archetype_of_too_many_components_names_the_limit() -> None:
    with ecs.World() as world, pytest.raises(ecs.CapacityError, match=r"an archetype of 128 components: at most "
                                                                       r"127 \(each takes 2 of a table's 256"):
        world.spawn(*(c(v=0.0) for c in MANY))
    with ecs.World() as world:
        world.spawn(*(c(v=0.0) for c in MANY[:127]))
        assert len(world) == 1
