"""Query.to_arrow / to_pandas: names, types, where the columns are shared and where copied."""

from __future__ import annotations

import gc
import sys

import numpy as np
import pytest

import ecs
from ecs import bool_, component, f32, i16
from tests.components import Frozen, Health, Position, Tint, Velocity

pa = pytest.importorskip("pyarrow")


@component
class Flags:
    on: bool_
    level: i16 = 3


def data_address(array) -> int:
    """Address of an Arrow array's values (of its child values for a FixedSizeList)."""
    while pa.types.is_fixed_size_list(array.type):
        array = array.values
    return array.buffers()[1].address


def spawn_moving(world: ecs.World, n: int = 5) -> np.ndarray:
    return world.spawn_batch(n, Position(x=np.arange(n, dtype=np.float32), y=1.0),
                             Velocity(x=0.5, y=np.arange(n, dtype=np.float32) * 2))


def test_columns_are_entity_then_component_dot_field_with_numpy_types(world) -> None:
    ids = world.spawn_batch(3, Position(x=[1.0, 2.0, 3.0], y=0.0), Tint(rgb=[[1, 2, 3], [4, 5, 6], [7, 8, 9]]),
                            Flags(on=[True, False, True]), Health(), Frozen())
    table = world.query(Position, Tint, Flags, Health, Frozen).to_arrow()
    assert table.column_names == ["entity", "Position.x", "Position.y", "Tint.rgb", "Flags.on", "Flags.level",
                                  "Health.hp"]
    assert table.schema.field("Position.x").type == pa.float32()
    assert table.schema.field("Tint.rgb").type == pa.list_(pa.uint8(), 3)
    assert table.schema.field("Flags.on").type == pa.bool_()
    assert table.schema.field("Flags.level").type == pa.int16()
    assert table["entity"].to_pylist() == ids.tolist()
    assert table["Tint.rgb"].to_pylist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert table["Flags.on"].to_pylist() == [True, False, True]
    assert table["Health.hp"].to_pylist() == [100, 100, 100]


def test_one_table_shares_numeric_columns_without_copy(world) -> None:
    world.spawn_batch(4, Position(x=1.0, y=2.0), Tint(rgb=[9, 8, 7]), Flags(on=True))
    table = world.query(Position, Tint, Flags).to_arrow()
    batch = next(iter(world.query(Position, Tint, Flags)))
    assert table["entity"].num_chunks == 1
    assert data_address(table["entity"].chunk(0)) == batch.entities.ctypes.data
    assert data_address(table["Position.x"].chunk(0)) == batch[Position].x.ctypes.data
    assert data_address(table["Position.y"].chunk(0)) == batch[Position].y.ctypes.data
    assert data_address(table["Tint.rgb"].chunk(0)) == batch[Tint].rgb.ctypes.data
    assert data_address(table["Flags.level"].chunk(0)) == batch[Flags].level.ctypes.data
    # bools are packed into bits by Arrow: that column is a copy
    assert data_address(table["Flags.on"].chunk(0)) != batch[Flags].on.ctypes.data


def test_a_shared_table_is_a_live_view_and_copy_true_keeps_the_moment(world) -> None:
    ids = spawn_moving(world, 3)
    shared = world.query(Position).to_arrow()
    kept = world.query(Position).to_arrow(copy=True)
    world.set_batch(ids, Position(x=[7.0, 8.0, 9.0], y=0.0))
    assert shared["Position.x"].to_pylist() == [7.0, 8.0, 9.0]
    assert kept["Position.x"].to_pylist() == [0.0, 1.0, 2.0]
    batch = next(iter(world.query(Position)))
    assert data_address(kept["Position.x"].chunk(0)) != batch[Position].x.ctypes.data


def test_several_tables_are_concatenated_into_one_copied_chunk(world) -> None:
    moving = spawn_moving(world, 3)
    still = world.spawn_batch(2, Position(x=[10.0, 11.0], y=5.0))
    table = world.query(Position).to_arrow()
    assert table.num_rows == 5 and table["Position.x"].num_chunks == 1
    by_id = dict(zip(table["entity"].to_pylist(), table["Position.x"].to_pylist(), strict=True))
    assert by_id == {**dict(zip(moving.tolist(), [0.0, 1.0, 2.0], strict=True)), still[0]: 10.0, still[1]: 11.0}
    addresses = {batch[Position].x.ctypes.data for batch in world.query(Position)}
    assert data_address(table["Position.x"].chunk(0)) not in addresses


def test_filtered_query_gives_its_selected_rows_and_does_not_consume_them(world) -> None:
    ids = spawn_moving(world, 6)
    query = world.query(Position, changed=[Position])
    list(query)                                   # the first look sees everything: consume it
    world.set_batch(ids[[1, 4]], Position(x=[40.0, 41.0], y=0.0))
    table = query.to_arrow()
    assert table["entity"].to_pylist() == ids[[1, 4]].tolist()
    assert table["Position.x"].to_pylist() == [40.0, 41.0]
    assert query.to_arrow().num_rows == 2 and query.count() == 2   # still pending
    assert [batch.rows.tolist() for batch in query] == [[1, 4]]   # iteration consumes
    assert query.to_arrow().num_rows == 0


def test_a_query_without_rows_has_the_full_schema(world) -> None:
    table = world.query(Position, Tint, without=[Frozen]).to_arrow()
    assert table.num_rows == 0
    assert table.column_names == ["entity", "Position.x", "Position.y", "Tint.rgb"]
    assert table.schema.field("Tint.rgb").type == pa.list_(pa.uint8(), 3)


def test_vector_field_of_two_dimensions_is_a_nested_fixed_size_list(world) -> None:
    @component
    class Frame:
        m: f32[2, 3]

    world.spawn_batch(2, Frame(m=np.arange(12, dtype=np.float32).reshape(2, 2, 3)))
    table = world.query(Frame).to_arrow()
    assert table.schema.field("Frame.m").type == pa.list_(pa.list_(pa.float32(), 3), 2)
    assert table["Frame.m"].to_pylist()[1] == [[6, 7, 8], [9, 10, 11]]


def test_table_stays_readable_after_the_world_is_closed() -> None:
    world = ecs.World()
    spawn_moving(world, 1000)
    table = world.query(Position, Velocity).to_arrow()
    world.close()
    gc.collect()
    assert table["Position.x"].to_numpy()[999] == 999.0       # the mapping lives while the table does
    assert table["Velocity.y"].to_numpy()[10] == 20.0
    del table
    gc.collect()


def test_closed_world_query_raises_world_closed() -> None:
    world = ecs.World()
    query = world.query(Position)
    world.close()
    with pytest.raises(ecs.WorldClosedError):
        query.to_arrow()


def test_to_pandas_goes_through_arrow(world) -> None:
    pd = pytest.importorskip("pandas")
    ids = spawn_moving(world, 3)
    frame = world.query(Position, Velocity).to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["entity", "Position.x", "Position.y", "Velocity.x", "Velocity.y"]
    assert frame["entity"].tolist() == ids.tolist()
    assert frame["Velocity.y"].tolist() == [0.0, 2.0, 4.0]


def test_to_pandas_is_a_copy_also_of_vector_fields(world) -> None:
    """pandas makes the cells of a vector column views of the Arrow buffer: to_pandas copies
    first, so later writes and moves of the world leave the frame as it was."""
    pytest.importorskip("pandas")
    ids = world.spawn_batch(3, Position(x=0.0, y=0.0), Tint(rgb=[[1, 1, 1], [2, 2, 2], [3, 3, 3]]))
    frame = world.query(Position, Tint).to_pandas()
    world.set(int(ids[0]), Tint(rgb=[9, 9, 9]))
    world.despawn(int(ids[1]))             # the last row moves into row 1
    assert [cell.tolist() for cell in frame["Tint.rgb"]] == [[1, 1, 1], [2, 2, 2], [3, 3, 3]]
    assert frame["entity"].tolist() == ids.tolist()


def test_polars_reads_the_arrow_table(world) -> None:
    pl = pytest.importorskip("polars")
    spawn_moving(world, 3)
    frame = pl.from_arrow(world.query(Position).to_arrow())
    assert frame["Position.x"].to_list() == [0.0, 1.0, 2.0]


def test_without_pyarrow_the_import_error_names_the_extra(world, monkeypatch) -> None:
    spawn_moving(world, 2)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match=r"to_arrow\(\) needs pyarrow.*columnar-ecs\[arrow\]"):
        world.query(Position).to_arrow()
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match=r"to_pandas\(\) needs pandas.*columnar-ecs\[pandas\]"):
        world.query(Position).to_pandas()


def test_two_components_of_one_class_name_get_distinct_columns(world) -> None:
    """Position of tests.components and Position of the flocking example, in one query: each
    is named by its stored name (module:Class), so no two columns share a name."""
    from examples.flocking_systems import Position as BirdPosition

    world.spawn_batch(2, Position(x=1.0, y=2.0), BirdPosition(x=3.0, y=4.0))
    table = world.query(Position, BirdPosition).to_arrow()
    assert table.column_names == ["entity", "tests.components:Position.x", "tests.components:Position.y",
                                  "examples.flocking_systems:Position.x", "examples.flocking_systems:Position.y"]
    assert table["examples.flocking_systems:Position.y"].to_pylist() == [4.0, 4.0]
    assert world.query(Position).to_arrow().column_names == ["entity", "Position.x", "Position.y"]
