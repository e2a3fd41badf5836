"""Ensembles: many independent runs of one world-building function, one table of results.

`ensemble(build, runs, frames=500, observe=observe)` does, for each parameter dict in `runs`, on
some executor's process: `world = build(**params)`, `world.run(frames=frames)`,
`observed = observe(world)`, `world.close()`. It returns a pyarrow.Table with one row per run (or
per array element, when observe returns arrays): "run" (the index into `runs`), the parameters,
the observed values, and "error".

Rules:
- `build` and `observe` travel to other processes by reference, so they must be module-level
  functions of an importable module (a script's functions work under
  `if __name__ == "__main__":`, as for World(workers=...)). So must the systems the worlds use.
- Seeds: a run's "seed" is passed to `build` as given. When `build` takes a `seed` parameter and
  a run has none, the run gets a distinct one, drawn from `numpy.random.SeedSequence(seed)`
  (`ensemble(..., seed=0)`), and it appears in the table, so every run can be repeated alone.
- A run that raises (in build, run, observe, or in shipping its result; SystemExit too) reports
  its exception as "ExcType: message" in "error", with nulls in its observed columns; the other
  runs go on. A run whose observed arrays are empty (an extinct population) has one row, with
  nulls in the per-element columns. KeyboardInterrupt (Ctrl-C) ends the whole call at once: the
  local pool's processes are terminated, and nothing is returned.
  A process that dies (a segfault, os._exit, the OOM killer) breaks a local process pool: the
  runs it had not finished are run again, each in a process of its own (as many at once as
  there are cores), so the run that kills its process reports the pool's BrokenProcessPool
  error alone. A run's own KeyboardInterrupt (raised by its code, or Ctrl-C reaching its
  process) is that run's error; Ctrl-C in this process ends the call.
- `executor`: any concurrent.futures.Executor. None: a local ProcessPoolExecutor, one process
  per core (at most one per run), started from a forkserver (spawn where there is none), never
  by fork: numba's and OpenMP's state make forked children crash. A Dask `Client.get_executor()`
  runs the same on a cluster (Dask's worker processes are daemons: the worlds there must use
  workers=0). Each run's world should use workers=0: the ensemble's processes are the
  parallelism.
- numba compiles each kernel once per process and caches it on disk. Runs that differ in the
  dtypes their kernels see compile different signatures at once in several processes, which
  corrupts numba's cache (../shared/RUNTIME.md, Q2): keep one dtype per kernel parameter across
  runs, or build one world of each kind in this process first.
- `progress=True` draws a bar of finished runs on stderr, when stderr is a terminal.

Cost: per run, the executor's hand-off (pickling the arguments and the observed values), plus
one world's build; a pool starts its processes once per call (~0.5 s for two, preloaded).
"""

from __future__ import annotations

import concurrent.futures as cf
import inspect
import multiprocessing as mp
import os
import pickle
import traceback
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from . import arrow
from .errors import ArgumentTypeError, InvalidArgumentError
from .progress import Progress
from .world import World

RESERVED_COLUMNS = frozenset({"run", "error"})


def ensemble(build: Callable[..., World], runs: Sequence[Mapping[str, Any]], frames: int = 500,
             observe: Callable[[World], Mapping[str, Any]] | None = None,
             executor: cf.Executor | None = None, progress: bool = True, *, seed: int = 0) -> Any:
    """Run `build(**params)` for every dict in `runs` for `frames` frames, observe and close
    each world, and return one pyarrow.Table of "run", the parameters, the observed values and
    "error" (None, or the exception of a run that failed), ordered by run. See the module doc."""
    pa = arrow.require(call="ensemble()")
    if not callable(build):
        raise ArgumentTypeError(f"ensemble(build={build!r}): expected a function params -> World")
    if observe is not None and not callable(observe):
        raise ArgumentTypeError(f"ensemble(observe={observe!r}): expected a function world -> dict, or None")
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 0:
        raise InvalidArgumentError(f"ensemble(frames={frames!r}): expected an int >= 0")
    params_list = [_checked_params(k, params) for k, params in enumerate(runs)]
    _give_seeds(build, params_list, seed)
    names = frozenset(_ordered_keys(params_list))   # no observed value may take a parameter's column
    own_pool = executor is None
    if own_pool:
        _check_picklable(build, observe)
        executor = local_pool(len(params_list))
    assert executor is not None
    outcomes: list[dict[str, Any] | None] = [None] * len(params_list)
    bar = Progress(len(params_list), progress, label="runs")
    try:
        future_runs = {}
        call = uuid.uuid4().hex   # Dask's default pure=True would serve a repeated call from its cache
        for k, params in enumerate(params_list):
            try:
                future_runs[executor.submit(run_one, build, params, frames, observe, f"{call}:{k}", names)] = k
            except Exception as exc:   # a run whose arguments cannot be shipped
                outcomes[k] = {"observed": {}, "error": _error_text(exc)}
        done = sum(outcome is not None for outcome in outcomes)
        broken = []
        for future in cf.as_completed(future_runs):
            k = future_runs[future]
            try:
                outcomes[k] = future.result()
            except cf.process.BrokenProcessPool as exc:   # some run's process died: which one is unknown
                outcomes[k] = {"observed": {}, "error": _error_text(exc)}
                broken.append(k)
                continue
            except Exception as exc:   # the executor failed the run (pickling)
                outcomes[k] = {"observed": {}, "error": _error_text(exc)}
            done += 1
            bar.update(done)
        if broken and own_pool:
            executor.shutdown(wait=True, cancel_futures=True)
            for k, outcome in _isolated(broken, build, params_list, frames, observe, names, call):
                outcomes[k] = outcome
                done += 1
                bar.update(done)
    except BaseException:    # Ctrl-C: the runs in the pool's hands would otherwise run to their end
        if own_pool:
            _stop_now(executor)   # type: ignore[arg-type]
            own_pool = False
        raise
    finally:
        bar.close()
        if own_pool:
            executor.shutdown(wait=True, cancel_futures=True)
    lost = {"observed": {}, "error": "the executor returned no result for this run"}
    return results_table(pa, params_list, [lost if o is None else o for o in outcomes])


def run_one(build: Callable[..., World], params: dict[str, Any], frames: int,
            observe: Callable[[World], Mapping[str, Any]] | None, task: str = "",
            names: frozenset[str] = frozenset()) -> dict[str, Any]:
    """One run, in whichever process the executor chose: build, run, observe, close. Returns
    {"observed": {name: scalar or 1-D array}, "error": None or "ExcType: message"}; never raises
    for an error of the run. `task` (call and run) only makes each task distinct: Dask names a
    task by a hash of its arguments and would hand out an earlier identical task's result.
    `names`: every run's parameter names, which observed values may not take."""
    del task
    world = None
    try:
        world = build(**params)
        if not isinstance(world, World):
            raise ArgumentTypeError(f"build(**{params!r}) returned {type(world).__name__}, expected an ecs.World")
        world.run(frames=frames)
        observed = {} if observe is None else _checked_observed(observe(world), names | params.keys())
        return {"observed": observed, "error": None}
    except (Exception, SystemExit, KeyboardInterrupt) as exc:   # a run's sys.exit() is its failure, not the call's
        return {"observed": {}, "error": _error_text(exc)}
    finally:
        if isinstance(world, World):
            world.close()


def _isolated(lost: list[int], build: Callable[..., World], params_list: list[dict[str, Any]], frames: int,
              observe: Callable[[World], Mapping[str, Any]] | None, names: frozenset[str],
              call: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(run, outcome) of the runs a broken pool lost, each run again in a pool of one process, as
    many at once as local_pool would run: only a run that kills its process reports the break."""
    width = _pool_size(len(lost))
    for first in range(0, len(lost), width):
        pools = {k: local_pool(1) for k in lost[first:first + width]}
        try:
            futures = {pool.submit(run_one, build, params_list[k], frames, observe, f"{call}:{k}:alone", names): k
                       for k, pool in pools.items()}
            for future in cf.as_completed(futures):
                try:
                    yield futures[future], future.result()
                except Exception as exc:   # its own process died
                    yield futures[future], {"observed": {}, "error": _error_text(exc)}
        except BaseException:
            for pool in pools.values():
                _stop_now(pool)
            raise
        for pool in pools.values():
            pool.shutdown(wait=True)


def local_pool(runs: int) -> cf.ProcessPoolExecutor:
    """The default executor: one process per core (at most `runs`), from a preloaded forkserver
    (the same server the world's workers use, workers.py), or spawn where there is none."""
    context: mp.context.BaseContext
    try:
        forkserver = mp.get_context("forkserver")
        forkserver.set_forkserver_preload(["__main__", "ecs._preload"])
        context = forkserver
    except ValueError:
        context = mp.get_context("spawn")
    return cf.ProcessPoolExecutor(max_workers=_pool_size(runs), mp_context=context)


def _pool_size(runs: int) -> int:
    """Processes for `runs` runs: one per core, at most one per run."""
    return max(1, min(runs, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def _stop_now(pool: cf.ProcessPoolExecutor) -> None:
    """Terminate the local pool's processes (their runs are lost) and let it go without waiting.
    The executor has no public way to stop a running task before Python 3.14's terminate_workers."""
    stop = getattr(pool, "terminate_workers", None)
    if stop is not None:
        stop()
        return
    processes = getattr(pool, "_processes", None) or {}     # CPython's own bookkeeping: pid -> Process
    for process in list(processes.values()):
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def results_table(pa: Any, params_list: list[dict[str, Any]], outcomes: list[dict[str, Any]]) -> Any:
    """Assemble the table: per run, as many rows as its observed arrays are long (1 for scalars
    or a failed run); parameters and scalars repeat over those rows; missing values are null."""
    lengths = [_rows_of(outcome) for outcome in outcomes]
    columns: dict[str, list[tuple[int, Any]]] = {"run": [(n, np.full(n, k, np.int64)) for k, n in enumerate(lengths)]}
    param_names = _ordered_keys(params_list)
    observed_names = _ordered_keys([outcome["observed"] for outcome in outcomes])
    for name in param_names:
        columns[name] = [(n, _repeat(params.get(name), n, per_row=False))
                         for params, n in zip(params_list, lengths, strict=True)]
    for name in observed_names:
        columns[name] = [(n, _repeat(outcome["observed"].get(name), n, per_row=True))
                         for outcome, n in zip(outcomes, lengths, strict=True)]
    arrays = {name: _column(pa, segments) for name, segments in columns.items()}
    errors = [outcome["error"] for outcome, n in zip(outcomes, lengths, strict=True) for _ in range(n)]
    arrays["error"] = pa.array(errors, pa.string())
    return pa.table(arrays)


# ---------------------------------------------------------------- helpers
def _checked_params(index: int, params: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(params, Mapping):
        raise ArgumentTypeError(f"ensemble(runs=...): run {index} is {params!r}, expected a dict of build() parameters")
    for name in params:
        if not isinstance(name, str) or name in RESERVED_COLUMNS:
            raise InvalidArgumentError(f"ensemble(runs=...): run {index} has parameter {name!r}; names are str and not "
                             f"{sorted(RESERVED_COLUMNS)}")
    return dict(params)


def _give_seeds(build: Callable[..., Any], params_list: list[dict[str, Any]], seed: int) -> None:
    """A distinct seed for each run without one, when build takes `seed`."""
    try:
        parameters = inspect.signature(build).parameters
    except (TypeError, ValueError):
        return
    takes_seed = "seed" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    if not takes_seed or all("seed" in params for params in params_list):
        return
    children = np.random.SeedSequence(seed).spawn(len(params_list))
    for params, child in zip(params_list, children, strict=True):
        params.setdefault("seed", int(child.generate_state(1, np.uint32)[0]))


def _check_picklable(build: Callable[..., Any], observe: Callable[..., Any] | None) -> None:
    for name, fn in (("build", build), ("observe", observe)):
        if fn is None:
            continue
        try:
            pickle.dumps(fn)
        except Exception as exc:
            raise ArgumentTypeError(f"ensemble({name}={fn!r}): the local process pool imports it by name, so it "
                                    f"must be a module-level function of an importable module ({exc})") from None


def _checked_observed(observed: Any, params: Collection[str]) -> dict[str, Any]:
    if not isinstance(observed, Mapping):
        raise ArgumentTypeError(f"observe(world) returned {type(observed).__name__}, expected a dict of scalars or "
                                f"arrays")
    checked: dict[str, Any] = {}
    length = None
    for name, value in observed.items():
        if not isinstance(name, str) or name in RESERVED_COLUMNS or name in params:
            raise InvalidArgumentError(f"observe(world) returned key {name!r}; keys are str, not 'run'/'error' and not "
                             f"a parameter name ({sorted(params)})")
        array = np.asarray(value)
        if array.ndim > 1:
            raise InvalidArgumentError(f"observe(world)[{name!r}] has shape {array.shape}; values are scalars or "
                                       f"1-D arrays")
        if array.ndim == 1:
            if length is not None and array.shape[0] != length[1]:
                raise InvalidArgumentError(f"observe(world): arrays {length[0]!r} ({length[1]}) and {name!r} "
                                 f"({array.shape[0]}) differ in length")
            length = (name, array.shape[0])
        checked[name] = array
    return checked


def _rows_of(outcome: dict[str, Any]) -> int:
    """Rows of a run: its observed arrays' length, at least 1 (empty arrays: one row of nulls)."""
    for value in outcome["observed"].values():
        if value.ndim == 1:
            return max(int(value.shape[0]), 1)
    return 1


def _ordered_keys(dicts: list[Any]) -> list[str]:
    seen: dict[str, None] = {}
    for d in dicts:
        seen.update(dict.fromkeys(d))
    return list(seen)


def _repeat(value: Any, n: int, per_row: bool) -> Any:
    """`value` as n rows: itself when `per_row` (an observed array), else repeated; None: null."""
    if value is None:
        return None
    array = np.asarray(value)
    if per_row and array.ndim == 1:
        return array if array.shape[0] == n else None    # empty: the run's one row is null
    if array.ndim == 0:
        return np.full(n, array[()], dtype=array.dtype)
    column = np.empty(n, dtype=object)   # a non-scalar parameter: the same object on every row
    for row in range(n):
        column[row] = value
    return column


def _column(pa: Any, segments: list[tuple[int, Any]]) -> Any:
    """One column from per-run segments (an array of n rows, or None for n nulls)."""
    present = [values for _, values in segments if values is not None]
    if not present:
        return pa.nulls(sum(n for n, _ in segments))
    if all(values.dtype != object for values in present):
        try:
            dtype = np.result_type(*present)
        except TypeError:
            dtype = None
        if dtype is not None:
            values = np.concatenate([np.zeros(n, dtype) if v is None else v.astype(dtype) for n, v in segments])
            mask = np.concatenate([np.full(n, v is None) for n, v in segments])
            return pa.array(values, mask=mask if mask.any() else None)
    items: list[Any] = []
    for n, values in segments:
        items += [None] * n if values is None else [v.item() if isinstance(v, np.generic) else v for v in values]
    try:
        return pa.array(items)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in items], pa.string())


def _error_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()
