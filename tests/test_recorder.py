"""world.record: which frames are sampled, what each sample holds, with and without workers."""

from __future__ import annotations

import numpy as np
import pytest

import ecs
from ecs import recorder as recorder_module
from tests.components import Frozen, Position, Tint
from tests.results_worlds import Tally, count_up

pa = pytest.importorskip("pyarrow")


def counting_world(workers: int = 0, n: int = 4) -> tuple[ecs.World, np.ndarray]:
    """Every frame adds 1 to each entity's Tally.n, so a sample at frame f holds n == f."""
    world = ecs.World(workers=workers)
    ids = world.spawn_batch(n, Tally(), Position(x=np.arange(n, dtype=np.float32), y=0.0))
    world.add_system(count_up)
    return world, ids


def counts_by_frame(table) -> dict[int, list[int]]:
    by_frame: dict[int, list[int]] = {}
    for frame, n in zip(table["frame"].to_pylist(), table["Tally.n"].to_pylist(), strict=True):
        by_frame.setdefault(frame, []).append(n)
    return by_frame


def test_frame_f_is_the_state_after_f_frames_and_frame_0_the_state_before_the_first() -> None:
    world, ids = counting_world()
    with world:
        rec = world.record(Tally, every=3)
        world.run(frames=10)
        assert rec.frames.tolist() == [0, 3, 6, 9]
        table = rec.to_arrow()
        assert table.column_names == ["frame", "entity", "Tally.n"]
        assert counts_by_frame(table) == {f: [f] * 4 for f in (0, 3, 6, 9)}
        assert table["entity"].to_pylist() == ids.tolist() * 4


def test_frame_0_is_taken_at_the_first_run_so_it_holds_what_was_spawned_after_record() -> None:
    world, _ = counting_world(n=2)
    with world:
        rec = world.record(Tally, every=1)
        world.spawn_batch(3, Tally(n=5), Position(x=0.0, y=0.0))
        assert len(rec) == 0
        world.step()
        assert counts_by_frame(rec.to_arrow()) == {0: [0, 0, 5, 5, 5], 1: [1, 1, 6, 6, 6]}


def test_steps_and_runs_continue_without_sampling_a_frame_twice() -> None:
    world, _ = counting_world()
    with world:
        rec = world.record(Tally, every=2)
        world.step()
        world.step()        # frame count 2: sampled after this step
        world.run(frames=3)  # starts at 2 (already sampled), ends at 5
        world.step()        # 6
        world.run(frames=0)
        assert rec.frames.tolist() == [0, 2, 4, 6]
        assert counts_by_frame(rec.to_arrow()) == {f: [f] * 4 for f in (0, 2, 4, 6)}


def test_recording_on_workers_equals_recording_in_process() -> None:
    tables = []
    for workers in (0, 2):
        world, _ = counting_world(workers=workers, n=100)
        with world:
            rec = world.record(Tally, Position, every=4,
                               reductions={"total": lambda w: w.query(Tally).to_arrow()["Tally.n"].to_numpy().sum()})
            world.run(frames=9)
            world.step()
            tables.append((rec.to_arrow(), rec.reductions_to_arrow()))
    (entities0, totals0), (entities2, totals2) = tables
    assert entities0.equals(entities2)
    assert totals0.equals(totals2)
    assert totals0.to_pydict() == {"frame": [0, 4, 8], "total": [0, 400, 800]}


def test_reductions_alone_give_one_row_per_sample() -> None:
    world, _ = counting_world()
    with world:
        rec = world.record(every=5, reductions={"alive": len, "mean": lambda w: float(w.query(Tally).to_arrow()
                                                                                      ["Tally.n"].to_numpy().mean())})
        world.run(frames=10)
        table = rec.to_arrow()
        assert table.to_pydict() == {"frame": [0, 5, 10], "alive": [4, 4, 4], "mean": [0.0, 5.0, 10.0]}
        assert table.equals(rec.reductions_to_arrow())


def test_integer_reductions_stay_exact_integers() -> None:
    """int64 and uint64 samples widened to float64 (numpy's rule), which rounds past 2**53."""
    values = iter([2**63 + 1, 5, 2**62, -1])

    with counting_world()[0] as world:
        rec = world.record(Tally, reductions={"big": lambda w: next(values)})
        world.run(frames=2)                          # samples frames 0, 1 and 2
        table = rec.reductions_to_arrow()
        assert table["big"].to_pylist() == [2**63 + 1, 5, 2**62] and str(table["big"].type) == "uint64"
        with pytest.raises(ValueError, match=r"reduction 'big': a reduction returned -1 after 9223372036854775809: "
                                             r"no 64-bit integer type holds both"):
            world.step()
        assert rec.frames.tolist() == [0, 1, 2] and rec.to_arrow().num_rows == 12   # no partial sample


def test_a_reduction_that_raises_stops_the_run_and_leaves_no_partial_sample() -> None:
    world, _ = counting_world()
    calls = []

    def fragile(w: ecs.World) -> int:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("reduction failed")
        return len(calls)

    with world:
        rec = world.record(Tally, every=2, reductions={"calls": fragile})
        with pytest.raises(RuntimeError, match="reduction failed"):
            world.run(frames=6)
        assert rec.frames.tolist() == [0]
        assert rec.to_arrow().num_rows == 4


def test_ids_follow_structural_changes_between_samples() -> None:
    world, ids = counting_world()
    with world:
        rec = world.record(Tally, every=1)
        world.step()
        world.despawn(int(ids[0]))
        world.step()
        extra = world.spawn(Tally(n=100))        # another table: no Position
        world.step()
        table = rec.to_arrow()
        rows = {f: [] for f in (0, 1, 2, 3)}
        for frame, entity in zip(table["frame"].to_pylist(), table["entity"].to_pylist(), strict=True):
            rows[frame].append(entity)
        assert rows[0] == rows[1] == ids.tolist()
        assert sorted(rows[2]) == sorted(ids[1:].tolist())
        assert sorted(rows[3]) == sorted([*ids[1:].tolist(), extra])


def test_samples_span_blocks_and_keep_vector_and_bool_fields(monkeypatch) -> None:
    monkeypatch.setattr(recorder_module, "FIRST_BLOCK_ROWS", 4)
    monkeypatch.setattr(recorder_module, "BLOCK_BYTES", 64)
    with ecs.World() as world:
        ids = world.spawn_batch(3, Tint(rgb=[[1, 2, 3], [4, 5, 6], [7, 8, 9]]), Frozen())
        rec = world.record(Tint, Frozen, every=1)
        world.run(frames=20)
        assert len(rec._blocks) > 3                # many blocks, each holding whole samples
        table = rec.to_arrow()
        assert table.num_rows == 21 * 3
        assert table.column_names == ["frame", "entity", "Tint.rgb"]
        assert table.schema.field("Tint.rgb").type == pa.list_(pa.uint8(), 3)
        assert table["Tint.rgb"].to_pylist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]] * 21
        assert table["frame"].to_pylist() == [f for f in range(21) for _ in range(3)]
        assert table["entity"].to_pylist() == ids.tolist() * 21


def test_a_table_taken_mid_recording_keeps_its_values_while_recording_goes_on() -> None:
    world, _ = counting_world()
    with world:
        rec = world.record(Tally, every=1)
        world.run(frames=2)
        early = rec.to_arrow()
        world.run(frames=30)
        assert counts_by_frame(early) == {f: [f] * 4 for f in range(3)}
        assert rec.to_arrow().num_rows == 33 * 4


def test_close_stops_sampling_and_samples_outlive_the_world(tmp_path) -> None:
    world, _ = counting_world()
    rec = world.record(Tally, every=1)
    world.run(frames=2)
    rec.close()
    rec.close()
    world.run(frames=2)
    world.close()
    assert rec.frames.tolist() == [0, 1, 2]
    path = tmp_path / "counts.parquet"
    rec.to_parquet(path)
    import pyarrow.parquet as pq
    assert pq.read_table(path).equals(rec.to_arrow())
    assert "3 samples, closed" in repr(rec)


def test_bad_arguments_are_refused() -> None:
    with ecs.World() as world:
        with pytest.raises(ValueError, match=r"every=0"):
            world.record(Tally, every=0)
        with pytest.raises(ValueError, match="listed twice"):
            world.record(Tally, Tally)
        with pytest.raises(ValueError, match="'frame'"):
            world.record(Tally, reductions={"frame": len})
        with pytest.raises(TypeError, match="expected a callable"):
            world.record(reductions={"n": 3})
        for not_a_dict in (3, [("n", len)]):
            with pytest.raises(TypeError, match=r"record\(reductions=.*\): expected a dict of name -> callable"):
                world.record(Tally, reductions=not_a_dict)
        with pytest.raises(ValueError, match="needs components"):
            world.record()
        with pytest.raises(TypeError, match="not a component class"):
            world.record(int)
        rec = world.record(reductions={"bad": lambda w: [1, 2]})
        world.spawn(Tally())
        with pytest.raises(ValueError, match="returns one number"):
            world.step()
        assert len(rec) == 0
