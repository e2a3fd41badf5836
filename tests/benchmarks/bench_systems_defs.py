"""Systems and bare kernels of the system, worker and scaling benchmarks.

Module level, so worker processes import the systems by module and name. Every system here
has a bare twin with the same loop body, compiled with the library's options
(kernels/_jit.py), so "ours vs bare" measures what the library adds around the loop.

- move: pos += vel * dt over two f32 fields each (the anchors' `move_rows`, ../../../shared/
  anchors/kernels.py): dt is cast to f32 first, as there, so the loop stays in f32 SIMD.
- heavy: the anchors' compute-bound kernel, 8 symplectic-Euler substeps with sqrt and 2 sin
  each (~90 ns/entity on one core), also copied exactly.
- sum_changed: a changed= filtered system summing Position.x over its rows into a resource.
- five systems for the frame-overhead workload: tiny kernels over five components of one table.
"""

from __future__ import annotations

import math

import numpy as np

import ecs
from ecs import Mut, Rows, system
from ecs.kernels._jit import jit

from .common import Position, Velocity

F32 = np.float32
ONE = np.float32(1.0)
K = np.float32(0.1)          # heavy: strength of the cos-ripple in the potential (anchors' kernels.K)
SUBSTEPS = 8                 # heavy: substeps per step (anchors' kernels.SUBSTEPS)


# ---------------------------------------------------------------- move
@system
def move(pos: Mut[Position], vel: Velocity, dt: float):
    d = F32(dt)
    px = pos.x
    py = pos.y
    vx = vel.x
    vy = vel.y
    for i in range(px.shape[0]):
        px[i] += vx[i] * d
        py[i] += vy[i] * d


@jit
def move_bare(px, py, vx, vy, dt):
    d = F32(dt)
    for i in range(px.shape[0]):
        px[i] += vx[i] * d
        py[i] += vy[i] * d


# ---------------------------------------------------------------- heavy
@jit(inline="always")
def heavy_one(x, y, u, v, d):
    for _ in range(SUBSTEPS):
        r = math.sqrt(x * x + y * y + ONE)
        u += (K * math.sin(x) - x / r) * d
        v += (K * math.sin(y) - y / r) * d
        x += u * d
        y += v * d
    return x, y, u, v


@system
def heavy(pos: Mut[Position], vel: Mut[Velocity], dt: float):
    d = F32(dt)
    px = pos.x
    py = pos.y
    vx = vel.x
    vy = vel.y
    for i in range(px.shape[0]):
        px[i], py[i], vx[i], vy[i] = heavy_one(px[i], py[i], vx[i], vy[i], d)


@jit
def heavy_bare(px, py, vx, vy, dt):
    d = F32(dt)
    for i in range(px.shape[0]):
        px[i], py[i], vx[i], vy[i] = heavy_one(px[i], py[i], vx[i], vy[i], d)


# ---------------------------------------------------------------- changed= filter
@system(changed=[Position])
def sum_changed(rows: Rows, pos: Position, total: np.ndarray):
    s = 0.0
    px = pos.x
    for k in range(rows.shape[0]):
        s += px[rows[k]]
    total[0] += s


# ---------------------------------------------------------------- five small systems
@ecs.component
class Spin:
    angle: ecs.f32
    rate: ecs.f32


@ecs.component
class Heat:
    t: ecs.f32


@ecs.component
class Life:
    left: ecs.i32


@system
def accelerate(vel: Mut[Velocity], gravity: float, dt: float):
    d = F32(gravity * dt)
    vy = vel.y
    for i in range(vy.shape[0]):
        vy[i] += d


@system
def turn(spin: Mut[Spin], dt: float):
    d = F32(dt)
    a = spin.angle
    r = spin.rate
    for i in range(a.shape[0]):
        a[i] += r[i] * d


@system
def cool(heat: Mut[Heat]):
    t = heat.t
    for i in range(t.shape[0]):
        t[i] *= F32(0.99)


@system
def age(life: Mut[Life]):
    left = life.left
    for i in range(left.shape[0]):
        if left[i] > 0:
            left[i] -= 1


FIVE = (accelerate, move, turn, cool, age)
