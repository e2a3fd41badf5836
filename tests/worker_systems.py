"""Components and systems for the worker tests: module level, so worker processes import them
by module and name (tests/test_workers.py, tests/test_worker_faults.py and the scripts those
tests run in subprocesses)."""

from __future__ import annotations

import multiprocessing
import os
import time

import numba
import numpy as np

import ecs
from ecs import Entity, Mut, Rows, component, f32, f64, i32, i64, system


@component
class Pos:
    x: f32
    y: f32


@component
class Vel:
    x: f32
    y: f32


@component
class Hp:
    hp: i32 = 1000


@component
class Hits:
    n: i64 = 0
    last: i64 = -1


@component
class Charge:
    kg: f64 = 1.0


@component
class Sleeping:
    pass


COMPONENTS = (Pos, Vel, Hp, Hits, Charge, Sleeping)


# ---------------------------------------------------------------- the multi-system frame
@system(without=[Sleeping])
def integrate(pos: Mut[Pos], vel: Vel, dt: float):
    for i in range(pos.x.shape[0]):
        pos.x[i] += vel.x[i] * dt
        pos.y[i] += vel.y[i] * dt


@system(mark="manual")
def damage(hp: Mut[Hp], pos: Pos, ids: Entity):
    """Marks only the rows it writes: entities whose position bucket hits 0 mod 7."""
    for i in range(hp.hp.shape[0]):
        if (np.int64(abs(pos.x[i])) + ids[i]) % 7 == 0:
            hp.hp[i] -= 1
            ecs.mark_changed(hp.changed, i)


@system(changed=[Hp], without=[Sleeping])
def count_hits(rows: Rows, ids: Entity, hp: Hp, hits: Mut[Hits]):
    for i in rows:
        hits.n[i] += 1
        hits.last[i] = hp.hp[i] * 3 + ids[i] % 5


@system(every=3)
def decay(charge: Mut[Charge]):
    for i in range(charge.kg.shape[0]):
        charge.kg[i] = charge.kg[i] * 0.97 + 0.01


@system
def histogram(pos: Pos, grid: np.ndarray):
    """Writes a resource array: runs whole on one worker (not split)."""
    for i in range(pos.x.shape[0]):
        grid[np.int64(abs(pos.x[i])) % grid.shape[0]] += 1


@system(changed=[Vel])
def count_pushes(rows: Rows, vel: Vel, hits: Mut[Hits]):
    for i in rows:
        hits.n[i] += 1000


FRAME_SYSTEMS = (integrate, damage, count_hits, decay, histogram, count_pushes)


# ---------------------------------------------------------------- faults
@system(removed=[Hp])
def count_removed(gone: ecs.Removed, removed_log: np.ndarray):
    """Counts the ids it is given (a removed= system: its ids travel to the workers in its values)."""
    removed_log[0] += gone.shape[0]


class GameRuleError(Exception):
    """A user exception raised inside a kernel."""


@numba.njit(cache=True)
def _kill_me(signum):
    with numba.objmode():
        os.kill(os.getpid(), signum)


@numba.njit(cache=True)
def _in_worker():
    """Whether this kernel runs in a worker process (the main process has no parent pool)."""
    with numba.objmode(answer="boolean"):
        answer = multiprocessing.parent_process() is not None
    return answer


@numba.njit(cache=True)
def _sleep(seconds):
    with numba.objmode():
        time.sleep(seconds)


@system
def saboteur(hp: Mut[Hp], ids: Entity, mode: int, target: int):
    """mode 0: nothing; 1: raise at `target`; 2: SIGKILL its own process at `target`;
    3: segfault at `target`; 4: never return at `target`; 5: raise a user exception. Modes 2-4
    act only in a worker: in the main process (which takes units beside the workers unless the
    world has a step_timeout) they would take the test run down."""
    for i in range(hp.hp.shape[0]):
        if ids[i] != target or mode == 0:
            continue
        if 2 <= mode <= 4 and not _in_worker():
            continue
        if mode == 1:
            raise ValueError("negative hp at entity", ids[i], hp.hp[i])
        if mode == 2:
            _kill_me(9)
        if mode == 3:
            hp.hp[i + (np.int64(1) << np.int64(45))] = 7   # far outside every mapping
        if mode == 4:
            k = 0
            while k >= 0:
                k = (k + 1) % 1000
                hp.hp[i] = k
        if mode == 5:
            raise GameRuleError("entity broke a rule")


@system
def crash_and_hang(hp: Mut[Hp], ids: Entity, kill: int, hang: int):
    """SIGKILLs its own process at entity `kill`; never returns at entity `hang` (in a worker only)."""
    if not _in_worker():
        return
    for i in range(hp.hp.shape[0]):
        if ids[i] == kill:
            _sleep(0.3)                  # the other worker is surely stuck by then
            _kill_me(9)
        if ids[i] == hang:
            k = 0
            while k >= 0:
                k = (k + 1) % 1000
                hp.hp[i] = k


@system
def kill_workers(hp: Mut[Hp], ids: Entity):
    """A worker that runs it SIGKILLs itself; the main process sleeps 50 ms instead, so that a
    worker surely claims some of it."""
    if _in_worker():
        _kill_me(9)
    _sleep(0.05)


@system
def slow_frame(pos: Mut[Pos], spins: int):
    """A frame that takes a while: `spins` passes over the rows."""
    for _ in range(spins):
        for i in range(pos.x.shape[0]):
            pos.x[i] = pos.x[i] * np.float32(0.5) + np.float32(1.0)

