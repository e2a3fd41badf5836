"""Worlds for the recorder and ensemble tests: a counting world and a small physics-like one,
built by module-level functions so that worker processes and the ensemble's processes (a local
pool, Dask workers) import them by name."""

from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np

import ecs
from ecs import Mut, component, f32, i32, i64, system


@component
class Tally:
    n: i64 = 0


@system
def count_up(tally: Mut[Tally]):
    for i in range(tally.n.shape[0]):
        tally.n[i] += 1


@component
class Body:
    x: f32
    y: f32
    vx: f32
    vy: f32


@component
class Bounces:
    n: i32 = 0


@system
def fall(body: Mut[Body], bounces: Mut[Bounces], gravity: float, dt: float):
    for i in range(body.x.shape[0]):
        body.vy[i] += gravity * dt
        body.x[i] += body.vx[i] * dt
        body.y[i] += body.vy[i] * dt
        if body.y[i] < 0.0:
            body.y[i] = -body.y[i]
            body.vy[i] = -0.9 * body.vy[i]
            bounces.n[i] += 1


def build(seed: int, gravity: float = -9.81, n: int = 200, workers: int = 0) -> ecs.World:
    rng = np.random.default_rng(seed)
    world = ecs.World(workers=workers)
    world.spawn_batch(n, Body(x=rng.random(n, dtype=np.float32), y=rng.random(n, dtype=np.float32) + 1.0,
                              vx=rng.standard_normal(n, dtype=np.float32), vy=0.0), Bounces())
    world.resources["gravity"] = gravity
    world.resources["dt"] = 1 / 60
    world.add_system(fall)
    return world


def build_failing(seed: int, fail: bool = False, n: int = 50) -> ecs.World:
    if fail:
        raise ValueError(f"run with seed {seed} refuses to build")
    return build(seed=seed, n=n)


def build_exiting(seed: int, code: int = 0) -> ecs.World:
    """A build that calls sys.exit(code) when code is not 0."""
    if code:
        sys.exit(code)
    return build(seed=seed, n=20)


def build_dying(seed: int, how: str = "") -> ecs.World:
    """A build whose process dies ("segfault": SIGSEGV, "exit": os._exit) or that raises
    KeyboardInterrupt ("interrupt"); a plain build otherwise."""
    if how == "segfault":
        os.kill(os.getpid(), signal.SIGSEGV)
    if how == "exit":
        os._exit(3)
    if how == "interrupt":
        raise KeyboardInterrupt
    return build(seed=seed, n=20)


def build_ignoring(seed: int, **extra: object) -> ecs.World:
    """A build that takes any other parameter and ignores it."""
    return build(seed=seed, n=20)


def build_slowly(seed: int, seconds: float = 0.0) -> ecs.World:
    time.sleep(seconds)
    return build(seed=seed, n=20)


def observe(world: ecs.World) -> dict:
    table = world.query(Body, Bounces).to_arrow()
    y = table["Body.y"].to_numpy()
    return {"mean_y": float(y.mean()), "bounces": int(table["Bounces.n"].to_numpy().sum()),
            "first_x": float(table["Body.x"].to_numpy()[0])}


def observe_arrays(world: ecs.World) -> dict:
    table = world.query(Body).to_arrow()
    return {"entity": table["entity"].to_numpy(), "y": table["Body.y"].to_numpy(), "count": len(world)}


def alone(build_fn, params: dict, frames: int, observe_fn) -> dict:
    """The same run done alone, in this process: what each ensemble row must equal."""
    world = build_fn(**params)
    try:
        world.run(frames=frames)
        return observe_fn(world)
    finally:
        world.close()
