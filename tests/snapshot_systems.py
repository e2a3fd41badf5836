"""Components and systems for tests/test_snapshot.py: module level, so a loaded world (and its
worker processes, and the subprocess that is killed mid-save) find them by module and name."""

from __future__ import annotations

import numpy as np

import ecs
from ecs import Commands, Entity, Mut, Rows, bool_, component, f32, f64, i8, i64, system, u8, u16
from tests.command_systems import Life, Template


@component
class Body:
    x: f32
    y: f32
    spin: f64 = 0.0


@component
class Paint:
    rgb: u8[3]
    alpha: u16 = 65535


@component
class Flags:
    visible: bool_
    layer: i8 = 0


@component
class Axes:
    basis: f64[2, 3]


@component
class Count:
    n: i64 = 0


@component
class Hidden:
    pass


COMPONENTS = (Body, Paint, Flags, Axes, Count, Hidden)


@system(without=[Hidden])
def drift(body: Mut[Body], flags: Flags, dt: float):
    for i in range(body.x.shape[0]):
        if flags.visible[i]:
            body.x[i] += dt
        body.spin[i] += 1.0


@system(changed=[Body])
def count_moves(rows: Rows, ids: Entity, count: Mut[Count], tally: np.ndarray):
    for i in rows:
        count.n[i] += 1
        tally[0] += 1


@system(without=[Template])
def copy_prefab(life: Life, cmd: Commands, prefab: int):
    """One copy of the prefab per row: kernel cmd_spawn alone (Store.spawn_copies, no move)."""
    for i in range(life.t.shape[0]):
        ecs.cmd_spawn(cmd, i, prefab)
