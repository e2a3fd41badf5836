"""ecs.ensemble: every run equals the same run done alone, on a local pool and on a Dask cluster;
failures are reported per run; seeds differ per run."""

from __future__ import annotations

import concurrent.futures as cf
import math
import os
import time

import numpy as np
import pytest

import ecs
from ecs.ensemble import local_pool, results_table, run_one
from tests import results_worlds as worlds

pa = pytest.importorskip("pyarrow")
FRAMES = 40


def assert_rows_equal_alone(table, runs: list[dict], build=worlds.build, observe=worlds.observe) -> None:
    rows = table.to_pylist()
    assert [row["run"] for row in rows] == list(range(len(runs)))
    for row, params in zip(rows, runs, strict=True):
        assert row["error"] is None
        expected = worlds.alone(build, params, FRAMES, observe)
        assert {name: row[name] for name in expected} == expected
        assert {name: row[name] for name in params} == params


@pytest.fixture(scope="module")
def pool():
    """One local pool (the default executor's kind) shared by the tests that pass an executor."""
    with local_pool(2) as executor:
        yield executor


def test_default_executor_gives_one_row_per_run_equal_to_the_run_alone() -> None:
    runs = [{"seed": 1, "gravity": -9.81}, {"seed": 2, "gravity": -1.62}, {"seed": 3, "gravity": -3.7, "n": 64}]
    worlds.alone(worlds.build, runs[0], 1, worlds.observe)   # compile here first: one process writes the cache
    table = ecs.ensemble(worlds.build, runs, frames=FRAMES, observe=worlds.observe)
    assert table.column_names == ["run", "seed", "gravity", "n", "mean_y", "bounces", "first_x", "error"]
    assert table["n"].to_pylist() == [None, None, 64]
    assert table.schema.field("error").type == pa.string()
    assert_rows_equal_alone(table, runs)


def test_dask_cluster_gives_the_same_rows_as_each_run_alone() -> None:
    distributed = pytest.importorskip("distributed")
    runs = [{"seed": seed, "gravity": -9.81 + seed} for seed in range(6)]
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=None, protocol="tcp") as cluster, \
            distributed.Client(cluster) as client:
        table = ecs.ensemble(worlds.build, runs, frames=FRAMES, observe=worlds.observe,
                             executor=client.get_executor(), progress=False)
        ran_on = client.run(lambda: True)
    assert len(ran_on) == 2
    assert_rows_equal_alone(table, runs)


def test_a_failing_run_reports_its_error_and_the_others_finish(pool) -> None:
    runs = [{"seed": 1}, {"seed": 2, "fail": True}, {"seed": 3}]
    table = ecs.ensemble(worlds.build_failing, runs, frames=FRAMES, observe=worlds.observe, executor=pool)
    rows = table.to_pylist()
    assert rows[1]["error"] == "ValueError: run with seed 2 refuses to build"
    assert rows[1]["mean_y"] is None and rows[1]["bounces"] is None
    for k in (0, 2):
        assert rows[k]["error"] is None
        assert rows[k]["mean_y"] == worlds.alone(worlds.build_failing, runs[k], FRAMES, worlds.observe)["mean_y"]
    assert rows[1]["fail"] is True and rows[0]["fail"] is None


def test_runs_without_seeds_get_distinct_seeds_and_differ(pool) -> None:
    runs = [{} for _ in range(4)] + [{"seed": 7}, {"seed": 7}]
    table = ecs.ensemble(worlds.build, runs, frames=FRAMES, observe=worlds.observe, executor=pool)
    seeds = table["seed"].to_pylist()
    assert len(set(seeds[:4])) == 4 and 7 not in seeds[:4] and seeds[4:] == [7, 7]
    first_x = table["first_x"].to_pylist()
    assert len(set(first_x[:4])) == 4 and first_x[4] == first_x[5]
    again = ecs.ensemble(worlds.build, [{} for _ in range(4)], frames=FRAMES, observe=worlds.observe, executor=pool)
    assert again["seed"].to_pylist() == seeds[:4]            # reproducible: the same base seed=0
    other = ecs.ensemble(worlds.build, [{}], frames=0, observe=worlds.observe, executor=pool, seed=1)
    assert other["seed"].to_pylist()[0] not in seeds


def test_observed_arrays_give_one_row_per_element(pool) -> None:
    runs = [{"seed": 1, "n": 3}, {"seed": 2, "n": 2}]
    table = ecs.ensemble(worlds.build, runs, frames=5, observe=worlds.observe_arrays, executor=pool)
    assert table["run"].to_pylist() == [0, 0, 0, 1, 1]
    assert table["n"].to_pylist() == [3, 3, 3, 2, 2]
    assert table["count"].to_pylist() == [3, 3, 3, 2, 2]       # a scalar repeats over the run's rows
    alone = worlds.alone(worlds.build, runs[1], 5, worlds.observe_arrays)
    assert table["y"].to_pylist()[3:] == alone["y"].tolist()
    assert table["entity"].to_pylist()[3:] == alone["entity"].tolist()


def test_a_run_whose_arrays_are_empty_keeps_one_row_of_nulls(pool) -> None:
    runs = [{"seed": 1, "n": 2}, {"seed": 2, "n": 0}, {"seed": 3, "n": 3}]    # run 1: nobody left
    table = ecs.ensemble(worlds.build, runs, frames=2, observe=worlds.observe_arrays, executor=pool)
    assert table["run"].to_pylist() == [0, 0, 1, 2, 2, 2]
    assert table["n"].to_pylist() == [2, 2, 0, 3, 3, 3]
    assert table["count"].to_pylist() == [2, 2, 0, 3, 3, 3]
    assert table["y"].to_pylist()[2] is None and table["entity"].to_pylist()[2] is None
    assert table["error"].to_pylist() == [None] * 6


def test_a_run_that_calls_sys_exit_reports_it_and_the_others_finish(pool) -> None:
    runs = [{"seed": 1}, {"seed": 2, "code": 3}, {"seed": 3}]
    table = ecs.ensemble(worlds.build_exiting, runs, frames=2, observe=worlds.observe, executor=pool)
    assert table["error"].to_pylist() == [None, "SystemExit: 3", None]
    assert table["mean_y"].null_count == 1


def test_a_run_whose_process_dies_fails_alone() -> None:
    """The local pool breaks when a process dies; the runs it lost are run again, each alone."""
    runs = [{"seed": 1}, {"seed": 2, "how": "segfault"}, {"seed": 3}, {"seed": 4, "how": "exit"}, {"seed": 5},
            {"seed": 6, "how": "interrupt"}]
    table = ecs.ensemble(worlds.build_dying, runs, frames=2, observe=worlds.observe, progress=False)
    errors = table["error"].to_pylist()
    assert [e is None for e in errors] == [True, False, True, False, True, False], errors
    assert "BrokenProcessPool" in errors[1] and "BrokenProcessPool" in errors[3] and errors[5] == "KeyboardInterrupt"
    for row, params in zip(table.to_pylist(), runs, strict=True):
        if row["error"] is None:
            assert row["mean_y"] == worlds.alone(worlds.build_dying, params, 2, worlds.observe)["mean_y"]


def test_an_observed_name_may_not_be_another_run_s_parameter(pool) -> None:
    """Both runs observe "bounces", a parameter of run 1: its column holds run 1's parameter."""
    runs = [{"seed": 1}, {"seed": 2, "bounces": 7}]
    table = ecs.ensemble(worlds.build_ignoring, runs, frames=1, observe=worlds.observe, executor=pool)
    errors = table["error"].to_pylist()
    assert all(e is not None and "'bounces'" in e and "a parameter name" in e for e in errors), errors
    assert table["bounces"].to_pylist() == [None, 7]


def test_ctrl_c_stops_the_local_pool_s_processes_at_once() -> None:
    """KeyboardInterrupt in this process ends the call; the pool's processes are terminated,
    not left to finish their runs (here: each would sleep 60 s)."""
    import multiprocessing
    import signal
    import threading

    before = set(multiprocessing.active_children())
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            ecs.ensemble(worlds.build_slowly, [{"seed": k, "seconds": 60.0} for k in range(4)], frames=1,
                         progress=False)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 30.0      # not after the runs' 60 s: nothing waited for them
    for process in set(multiprocessing.active_children()) - before:
        process.join(timeout=10)
        assert not process.is_alive(), f"{process} still runs its run"


def test_observe_errors_are_reported_per_run() -> None:
    assert run_one(worlds.build, {"seed": 1, "n": 4}, 1, lambda w: [1])["error"].startswith(
        "ecs.errors.ArgumentTypeError: observe")
    out = run_one(worlds.build, {"seed": 1, "n": 4}, 1, lambda w: {"a": np.zeros(2), "b": np.zeros(3)})
    assert "differ in length" in out["error"]
    out = run_one(worlds.build, {"seed": 1, "n": 4}, 1, lambda w: {"seed": 3})
    assert "a parameter name" in out["error"]
    out = run_one(lambda **p: 3, {}, 1, None)
    assert out["error"] == "ecs.errors.ArgumentTypeError: build(**{}) returned int, expected an ecs.World"


def test_an_executor_failure_becomes_the_run_error() -> None:
    class Refusing(cf.Executor):
        def submit(self, fn, /, *args, **kwargs):
            future: cf.Future = cf.Future()
            if args[1].get("seed") == 2:
                future.set_exception(OSError("worker lost"))
            else:
                future.set_result(fn(*args, **kwargs))
            return future

    table = ecs.ensemble(worlds.build, [{"seed": 1, "n": 8}, {"seed": 2, "n": 8}], frames=2,
                         observe=worlds.observe, executor=Refusing())
    assert table["error"].to_pylist() == [None, "OSError: worker lost"]


def test_default_executor_refuses_functions_it_cannot_ship() -> None:
    with pytest.raises(TypeError, match="module-level function"):
        ecs.ensemble(lambda seed: worlds.build(seed), [{"seed": 1}], frames=1)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="frames=-1"):
        ecs.ensemble(worlds.build, [{}], frames=-1)
    with pytest.raises(TypeError, match="run 0 is 3"):
        ecs.ensemble(worlds.build, [3], frames=1)
    with pytest.raises(ValueError, match="'run'"):
        ecs.ensemble(worlds.build, [{"run": 1}], frames=1)


def test_no_runs_give_an_empty_table(pool) -> None:
    table = ecs.ensemble(worlds.build, [], frames=1, observe=worlds.observe, executor=pool)
    assert table.num_rows == 0 and table.column_names == ["run", "error"]


def test_results_table_widens_types_across_runs_and_keeps_nulls() -> None:
    outcomes = [{"observed": {"v": np.asarray(1)}, "error": None},
                {"observed": {"v": np.asarray(2.5), "label": np.asarray("b")}, "error": None},
                {"observed": {}, "error": "boom"}]
    table = results_table(pa, [{"p": 1}, {"p": "x"}, {}], outcomes)
    assert table.schema.field("v").type == pa.float64()
    assert table["v"].to_pylist() == [1.0, 2.5, None]
    assert table["label"].to_pylist() == [None, "b", None]
    assert table["p"].to_pylist() == ["1", "x", None]     # mixed types fall back to text
    assert table["error"].to_pylist() == [None, None, "boom"]
    assert not any(isinstance(v, float) and math.isnan(v) for v in table["label"].to_pylist())


def test_progress_is_silent_when_stderr_is_not_a_terminal(pool, capsys) -> None:
    ecs.ensemble(worlds.build, [{"seed": 1, "n": 4}], frames=1, observe=worlds.observe, executor=pool,
                 progress=True)
    assert capsys.readouterr().err == ""


def test_without_pyarrow_the_import_error_names_the_extra(monkeypatch) -> None:
    import sys
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match=r"ensemble\(\) needs pyarrow.*columnar-ecs\[arrow\]"):
        ecs.ensemble(worlds.build, [{}], frames=1)
