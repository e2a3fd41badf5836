"""Calls a user can get wrong: each raises an error that names the thing and the value, and
changes nothing (found by a fuzzing review of the public calls and of crafted files)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

import ecs
from ecs import ArgumentTypeError, InvalidArgumentError, WorldClosedError
from tests.components import Health, Position, Velocity


def saved_bytes(world: ecs.World, tmp_path) -> bytes:
    path = tmp_path / "state.ecs"
    world.save(path)
    return path.read_bytes()


@pytest.mark.parametrize("call", ["despawn_batch", "add_batch", "remove_batch", "set_batch"])
def test_a_bool_among_the_ids_of_a_batch_is_refused(call: str, tmp_path) -> None:
    """numpy makes 1 of True in a list of ints: entity 1 must not be changed for it."""
    with ecs.World() as world:
        first, second = world.spawn_batch(2, Position(x=1, y=1), Velocity(x=0, y=0)).tolist()
        assert first == 1
        before = saved_bytes(world, tmp_path)
        args = {"despawn_batch": (), "add_batch": (Health(hp=3),), "remove_batch": (Velocity,),
                "set_batch": (Position(x=5, y=5),)}[call]
        for flag in (True, np.True_):
            with pytest.raises(ArgumentTypeError, match=rf"an entity id is an int, got {flag!r}"):
                getattr(world, call)([second, flag], *args)
        assert saved_bytes(world, tmp_path) == before


def test_set_batch_refuses_an_id_listed_twice(tmp_path) -> None:
    with ecs.World() as world:
        e = world.spawn(Position(x=0, y=0))
        before = saved_bytes(world, tmp_path)
        with pytest.raises(InvalidArgumentError, match=rf"set_batch: entity {e} is listed more than once"):
            world.set_batch([e, e], Position(x=np.array([1.0, 2.0], np.float32), y=0.0))
        assert saved_bytes(world, tmp_path) == before


@pytest.mark.parametrize("name, value, most", [("max_entities", 2**33, 2**32), ("max_rows", 2**31 + 1, 2**31),
                                               ("max_rows", 63, 2**31)])
def test_world_limits_past_what_ids_and_rows_can_address_are_refused(name: str, value: int, most: int) -> None:
    """An id holds a 32-bit slot and rows are int32: such a world's file could not be loaded."""
    with pytest.raises(InvalidArgumentError, match=rf"World\({name}={value}\): expected an int in \[64, {most}\]"):
        ecs.World(**{name: value})


def test_the_largest_limits_save_and_load(tmp_path) -> None:
    with ecs.World(max_rows=2**31, max_entities=2**32) as world:
        world.spawn(Position(x=1, y=2))
        world.save(tmp_path / "w.ecs")
    with ecs.World.load(tmp_path / "w.ecs") as loaded:
        assert len(loaded) == 1


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), 0.0, -1.0])
def test_a_step_timeout_that_is_not_a_positive_number_of_seconds_is_refused(timeout: float) -> None:
    with pytest.raises(InvalidArgumentError, match=rf"World\(step_timeout={timeout!r}\): expected seconds > 0"):
        ecs.World(step_timeout=timeout)


def test_a_spawn_batch_past_a_capacity_makes_no_table(tmp_path) -> None:
    with ecs.World(max_rows=64, max_entities=64) as world:
        world.spawn(Health(hp=1))
        before = saved_bytes(world, tmp_path)
        with pytest.raises(MemoryError, match=r"table \(Position\) cannot hold 65 rows"):
            world.spawn_batch(65, Position(x=0, y=0))
        with pytest.raises(MemoryError, match=r"cannot spawn 64 entities"):
            world.spawn_batch(64, Velocity(x=0, y=0))
        assert saved_bytes(world, tmp_path) == before   # the file lists its tables: no new, empty one


@ecs.component
class Huge:                  # 2**25 rows of 40 KB: a table that cannot fit a world's 1 TiB arena
    a: ecs.f32
    b: ecs.u8[40000]


def test_a_table_too_large_for_the_arena_reserves_nothing() -> None:
    """Each refused spawn reserved the columns before the one that did not fit (~384 MiB of the
    arena's address space, never reused): a few thousand refusals left no room for any table."""
    with ecs.World() as world:
        for _ in range(3000):
            with pytest.raises(ecs.CapacityError, match=r"the world's address space is exhausted"):
                world.spawn(Huge(a=1.0, b=np.zeros(40000, np.uint8)))
        world.spawn(Health(hp=1))
        assert len(world) == 1


def test_resources_of_a_closed_world_raise_world_closed_error() -> None:
    world = ecs.World()
    world.resources["grid"] = np.zeros(4)
    world.close()
    with pytest.raises(WorldClosedError, match=r"resources\[\.\.\.\]"):
        world.resources["grid"]


def test_a_resource_wider_than_float64_is_refused_when_assigned() -> None:
    with ecs.World() as world:
        for value in (np.longdouble(1.5), np.zeros(3, np.longdouble)):
            message = r"resource 'x': a (float128|longdouble) is wider than a float64, which kernels \(numba\)"
            with pytest.raises(ArgumentTypeError, match=message):
                world.resources["x"] = value
        assert "x" not in world.resources


def test_resize_refuses_a_bool_extent() -> None:
    with ecs.World() as world:
        world.resources["grid"] = np.zeros((2, 3))
        with pytest.raises(InvalidArgumentError, match=r"resources.resize\('grid', \(True, 3\)\): expected 2"):
            world.resources.resize("grid", (True, 3))
        assert world.resources["grid"].shape == (2, 3)


@pytest.mark.parametrize("path", [3, None, "with\0nul"])
def test_save_and_load_refuse_what_is_not_a_path(path: object) -> None:
    with ecs.World() as world, pytest.raises(ArgumentTypeError, match=r"save\(path=.*\): expected a file path"):
        world.save(path)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match=r"load\(path=.*\): expected a file path"):
        ecs.World.load(path)  # type: ignore[arg-type]


def test_saving_to_a_directory_names_it_and_writes_nothing_beside_it(tmp_path) -> None:
    target = tmp_path / "folder"
    target.mkdir()
    with ecs.World() as world, pytest.raises(InvalidArgumentError, match=r"save\('.*folder'\): the path is a "
                                                                         r"directory; name a file in it"):
        world.save(target)
    assert os.listdir(tmp_path) == ["folder"] and os.listdir(target) == []


def test_saving_over_a_fifo_a_loop_or_a_path_ending_in_a_separator_is_refused(tmp_path) -> None:
    fifo, loop, plain = tmp_path / "pipe", tmp_path / "loop", tmp_path / "plain.ecs"
    os.mkfifo(fifo)
    os.symlink(loop, loop)
    with ecs.World() as world:
        with pytest.raises(InvalidArgumentError, match=r"save\('.*pipe'\): the path is not a regular file \(a "
                                                       r"device, a FIFO or a socket\), which a save would replace"):
            world.save(fifo)
        with pytest.raises(InvalidArgumentError, match=r"save\('.*loop'\): cannot use the path: "):
            world.save(loop)
        with pytest.raises(InvalidArgumentError, match=r"the path names a directory; name a file in it"):
            world.save(str(tmp_path / "notadir") + os.sep)
        plain.write_bytes(b"")
        os.chmod(plain, 0o600)
        world.save(plain)                                    # a regular file: replaced, its mode kept
        assert os.stat(plain).st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ["loop", "pipe", "plain.ecs"]
    assert os.path.islink(loop) and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_an_object_array_of_ints_fills_an_int_field_when_they_fit() -> None:
    with ecs.World() as world:
        ids = world.spawn_batch(3, Health(hp=np.array([1, 2, 3], object)))
        assert [int(world.get(int(e), Health).hp) for e in ids] == [1, 2, 3]
        with pytest.raises(ecs.ComponentValueError, match=r"Health\.hp = 4294967296: does not fit int32 \(element 1\)"):
            world.spawn_batch(2, Health(hp=np.array([1, 2**32], object)))
        assert len(world) == 3
