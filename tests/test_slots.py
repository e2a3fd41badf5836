"""Change-tracking slots as a limit: every table has 64 bitsets for change readers (1 per live
changed=/added= reader that reads it) beside 2 per component. Running out raises CapacityError
naming the limit, and a call that fails for lack of slots changes nothing: no table is left
half-made, no slot is left taken."""

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
        world.spawn(B(v=1.0))
        keep = filled(world, A, 64) + filled(world, B, 1)   # A's table full, B's with one reader
        tables = len(introspect.tables(world))
        for _ in range(2):                  # the second try fails the same way: nothing was registered
            with pytest.raises(ecs.CapacityError, match=r"has no free change-tracking slot: all 64 for change "
                                                        r"readers are in use"):
                world.spawn(A(v=1.0), B(v=2.0))    # a new table would need 64 + 1
            assert len(introspect.tables(world)) == tables
        assert len(world) == 2 and len(keep) == 65
        del keep[-1]                        # B's reader gone, the table fits
        world.spawn(A(v=1.0), B(v=2.0))
        assert len(introspect.tables(world)) == tables + 1


def test_a_reader_that_lacks_slots_takes_none_anywhere() -> None:
    with ecs.World() as world:
        world.spawn(A(v=1.0), Z(v=0.0))
        world.spawn(A(v=1.0), B(v=0.0))
        keep = filled(world, B, 10) + filled(world, A, 54)    # (A, B) full: 64; (A, Z): 54
        for _ in range(300):
            with pytest.raises(ecs.CapacityError):
                filled(world, A, 1)
        z_readers = filled(world, Z, 10)                      # (A, Z) still has its 10 free slots
        assert all(query.count() == 1 for query in z_readers)
        with pytest.raises(ecs.CapacityError):
            filled(world, Z, 1)
        assert len(keep) == 64


def test_an_archetype_of_too_many_components_names_the_limit() -> None:
    with ecs.World() as world, pytest.raises(ecs.CapacityError, match=r"an archetype of 128 components: at most "
                                                                       r"127; split"):
        world.spawn(*(c(v=0.0) for c in MANY))
    with ecs.World() as world:
        world.spawn(*(c(v=0.0) for c in MANY[:127]))
        assert len(world) == 1
