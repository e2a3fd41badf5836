"""Features agent models need: the frame as a kernel parameter (ecs.Frame), every= with an
offset, with_= filters, resource arrays that grow between frames."""

from __future__ import annotations

import numpy as np
import pytest

import ecs
from ecs import ArgumentTypeError, InvalidArgumentError, InvalidNameError, SystemDefinitionError, system
from tests.agent_systems import (
    Heat,
    Sheep,
    Stamp,
    count_sheep,
    every_third_from_two,
    fill_with_frame,
    log_frame,
    odd_frames,
    removed_on_odd_frames,
    stamp_frame,
)

SPLIT_ROWS = 70_000          # above plan.SPLIT_MIN_ROWS: split across two workers


def stamps(world: ecs.World) -> tuple[np.ndarray, np.ndarray]:
    batches = list(world.query(Stamp))
    return (np.concatenate([b[Stamp].last for b in batches]), np.concatenate([b[Stamp].total for b in batches]))


# ---------------------------------------------------------------- ecs.Frame
@pytest.mark.parametrize("workers", [0, 2])
def test_frame_parameter_gets_each_frame_on_every_row_split_within_one_run(workers: int) -> None:
    with ecs.World(workers=workers) as world:
        world.spawn_batch(SPLIT_ROWS, Stamp())
        world.resources["frame_log"] = np.zeros(16, np.int64)
        world.add_system(stamp_frame)
        world.add_system(log_frame)
        world.run(frames=5)                       # values shipped once: the frame must come per call
        last, total = stamps(world)
        assert (last == 4).all() and (total == 0 + 1 + 2 + 3 + 4).all()
        world.step()
        last, total = stamps(world)
        assert (last == 5).all() and (total == 15).all()
        assert world.resources["frame_log"].tolist() == [1] * 6 + [0] * 10


def test_frame_parameter_is_int64_and_only_one_per_system() -> None:
    assert stamp_frame.params[1].kind == "frame"

    def twice(a: ecs.Frame, b: ecs.Frame):
        pass
    with pytest.raises(SystemDefinitionError, match=r"more than one parameter is annotated Frame"):
        system(twice)


# ---------------------------------------------------------------- every= with offset=
@pytest.mark.parametrize("workers", [0, 2])
def test_offset_runs_on_offset_plus_multiples_of_every_in_run_and_in_steps(workers: int) -> None:
    logs = []
    for by_steps in (False, True):
        with ecs.World(workers=workers) as world:
            world.spawn_batch(10, Stamp())
            world.resources["odd_log"] = np.zeros(12, np.int64)
            world.add_system(odd_frames)
            world.add_system(every_third_from_two)
            if by_steps:
                for _ in range(9):
                    world.step()
            else:
                world.run(frames=4)
                world.run(frames=5)
            stats = world.stats()
            assert stats["odd_frames"]["calls"] == 4 == stats["odd_frames"]["kernel_calls"]   # 1, 3, 5, 7
            assert stats["every_third_from_two"]["calls"] == 3                                 # 2, 5, 8
            last, total = stamps(world)
            assert (last == 8).all() and (total == 2 + 5 + 8).all()
            logs.append(world.resources["odd_log"].tolist())
    assert logs[0] == logs[1] == [0, 1, 0, 1, 0, 1, 0, 1, 0, 0, 0, 0]


def test_a_removed_system_with_an_offset_gets_its_ids_at_its_first_due_frame() -> None:
    with ecs.World() as world:
        world.resources["gone_log"] = np.zeros(2, np.int64)
        ids = world.spawn_batch(3, Heat())
        world.add_system(removed_on_odd_frames)
        world.despawn_batch(ids[:2])
        world.step()                                 # frame 0: not due, the ids stay pending
        assert world.resources["gone_log"].tolist() == [0, 0]
        world.despawn(int(ids[2]))
        world.run(frames=3)                          # frames 1-3: all three at frame 1, none at 3
        assert world.resources["gone_log"].tolist() == [3, 1]
        assert world.stats()["removed_on_odd_frames"]["calls"] == 2


@pytest.mark.parametrize(("options", "pattern"), [
    ({"every": 2, "offset": 2}, r"offset=2: expected an int with 0 <= offset < every \(every=2\)"),
    ({"offset": -1}, r"offset=-1: expected an int with 0 <= offset < every \(every=1\)"),
    ({"every": 3, "offset": True}, r"offset=True: expected an int"),
    ({"every": 3, "offset": 1.0}, r"offset=1.0: expected an int"),
])
def test_bad_offset_is_refused_naming_the_option(options: dict, pattern: str) -> None:
    def f(stamp: Stamp):
        pass
    with pytest.raises(SystemDefinitionError, match=pattern):
        system(**options)(f)


def test_every_and_offset_take_numpy_integers() -> None:
    def f(stamp: Stamp):
        pass
    made = system(every=np.int64(3), offset=np.uint8(2))(f)
    assert (made.every, made.offset) == (3, 2) and type(made.every) is int
    with pytest.raises(SystemDefinitionError, match=r"every=(np\.)?True_?: expected an int >= 1"):
        system(every=np.bool_(True))(f)


# ---------------------------------------------------------------- with_=
def test_with_filter_restricts_tables_without_binding_the_component() -> None:
    assert [info.cls for info in count_sheep.required] == [Sheep]
    with ecs.World() as world:
        world.resources["sheep_count"] = np.zeros(1, np.int64)
        world.spawn_batch(3, Stamp(), Sheep())
        world.spawn_batch(5, Stamp())
        world.spawn_batch(2, Sheep(), Heat())
        world.add_system(count_sheep)
        world.step()
        assert world.resources["sheep_count"][0] == 5


def test_with_filter_takes_only_component_classes_and_not_with_removed() -> None:
    def f(ids: ecs.Entity):
        pass
    with pytest.raises(SystemDefinitionError, match=r"with_= lists 3, which is not a component class"):
        system(with_=[3])(f)

    def g(gone: ecs.Removed):
        pass
    with pytest.raises(SystemDefinitionError,
                       match=r"removed= cannot be combined with changed=/added=/without=/with_="):
        system(removed=[Heat], with_=[Sheep])(g)


def test_table_filters_are_refused_on_a_system_that_takes_no_table() -> None:
    """A system of named values only runs once a frame whatever the tables: a with_=/without=
    filter would be ignored, so it is refused."""
    def census(sheep_count: np.ndarray):
        sheep_count[0] += 1
    for options, which in (({"with_": [Sheep]}, "with_="), ({"without": [Heat]}, "without=")):
        with pytest.raises(SystemDefinitionError, match=rf"system 'census': {which} selects tables, and this "
                                                        rf"system takes none"):
            system(**options)(census)


# ---------------------------------------------------------------- resources.resize
@pytest.mark.parametrize("workers", [0, 2])
def test_resized_resource_keeps_its_contents_and_kernels_see_the_new_array(workers: int) -> None:
    with ecs.World(workers=workers) as world:
        world.resources["buf"] = np.zeros(4, np.int64)
        world.add_system(fill_with_frame)
        world.step()
        assert world.resources["buf"].tolist() == [1] * 4
        grown = world.resources.resize("buf", 8)
        assert grown is world.resources["buf"] and grown.tolist() == [1] * 4 + [0] * 4
        world.run(frames=2)                      # the new place is shipped with this run's values
        assert world.resources["buf"].tolist() == [3] * 8
        world.resources.resize("buf", (2,))
        world.step()
        assert world.resources["buf"].tolist() == [4, 4]


def test_resize_keeps_the_overlap_of_each_axis() -> None:
    with ecs.World() as world:
        world.resources["grid"] = np.arange(6, dtype=np.float32).reshape(2, 3)
        world.resources.resize("grid", (3, 2))
        assert world.resources["grid"].tolist() == [[0, 1], [3, 4], [0, 0]]
        assert world.resources["grid"].dtype == np.float32


def test_resize_refuses_unknown_names_scalars_and_other_shapes() -> None:
    with ecs.World() as world:
        world.resources["grid"] = np.zeros((2, 2))
        world.resources["g"] = 9.81
        with pytest.raises(InvalidNameError, match=r"no resource 'nope'"):
            world.resources.resize("nope", 3)
        with pytest.raises(ArgumentTypeError, match=r"resize\('g', \.\.\.\): the resource is a float, not an array"):
            world.resources.resize("g", 3)
        with pytest.raises(InvalidArgumentError, match=r"resize\('grid', 4\): expected 2 non-negative extents"):
            world.resources.resize("grid", 4)
        with pytest.raises(InvalidArgumentError, match=r"resize\('grid', \(2, -1\)\): expected 2"):
            world.resources.resize("grid", (2, -1))
        with pytest.raises(ecs.CapacityError, match=r"resources.resize\('grid', \(2, 1152921504606846976\)\): an "
                                                    r"array of \d+ bytes does not fit: arena of \d+ bytes; use a "
                                                    r"smaller array"):
            world.resources.resize("grid", (2, 2**60))
        assert world.resources["grid"].shape == (2, 2)
        with pytest.raises(ecs.CapacityError, match=r"resources\['big'\] = \.\.\.: an array of"):
            world.resources["big"] = np.broadcast_to(np.zeros(1), (2**45,))
        assert "big" not in world.resources
