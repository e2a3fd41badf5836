"""Components and systems shared by the system, schedule and change tests.

Everything is defined at module level so that worker processes can import each system by
module and name (a system defined inside a test function cannot be shipped to workers).
Kernels that record what they saw write into resource arrays indexed by entity index
(`id & INDEX_MASK`), so a test can compare them with a plain Python model.
"""

from __future__ import annotations

import numba
import numpy as np

import ecs
from ecs import Entity, Mut, Rows, component, f32, i64, system
from tests.components import Frozen, Health, Position, Tint, Velocity

INDEX_MASK = 0xFFFFFFFF


@component
class Value:
    """The component whose changes the change tests follow."""
    v: i64 = 0


@component
class Counter:
    n: i64 = 0


@component
class Heading:
    """A vector field: one 2-D column of shape (rows, 2)."""
    dir: f32[2]


def index_of(entity: int) -> int:
    return int(entity) & INDEX_MASK


# ---------------------------------------------------------------- binding
@system
def integrate(pos: Mut[Position], vel: Velocity, dt: float):
    for i in range(pos.x.shape[0]):
        pos.x[i] += vel.x[i] * dt
        pos.y[i] += vel.y[i] * dt


@system
def fall(vel: Mut[Velocity], gravity: float, dt: float):
    for i in range(vel.y.shape[0]):
        vel.y[i] += gravity * dt


@system
def invert_into_x(vel: Mut[Velocity], divisor: float):
    for i in range(vel.x.shape[0]):
        vel.x[i] = 1.0 / divisor if divisor != 0.0 else np.copysign(np.inf, divisor)


@system
def copy_ids(ids: Entity, out: Mut[Counter]):
    for i in range(ids.shape[0]):
        out.n[i] = ids[i]


@system
def add_amount(c: Mut[Counter], amount: int):
    for i in range(c.n.shape[0]):
        c.n[i] += amount


@system
def add_amount_or_default(c: Mut[Counter], amount=7):
    for i in range(c.n.shape[0]):
        c.n[i] += amount


@system
def add_untyped(c: Mut[Counter], step_size):
    for i in range(c.n.shape[0]):
        c.n[i] += step_size


@system
def add_float32(pos: Mut[Position], nudge: np.float32):
    for i in range(pos.x.shape[0]):
        pos.x[i] += nudge


@system
def histogram_x(pos: Position, grid: np.ndarray):
    for i in range(pos.x.shape[0]):
        grid[int(pos.x[i])] += 1


@system
def note_first_axis(pos: Position, grid: np.ndarray):
    grid[0] = grid.shape[0]


@system
def tint_green(tint: Mut[Tint]):
    for i in range(tint.rgb.shape[0]):
        tint.rgb[i, 1] = 255


@system
def sum_tint(tint: Tint, out: Mut[Counter]):
    for i in range(tint.rgb.shape[0]):
        out.n[i] = np.int64(tint.rgb[i, 0]) + np.int64(tint.rgb[i, 1]) + np.int64(tint.rgb[i, 2])


@system
def record_view_shapes(tint: Tint, heading: Heading, c: Counter, shapes: np.ndarray):
    shapes[0] = tint.rgb.ndim
    shapes[1] = tint.rgb.shape[1]
    shapes[2] = heading.dir.ndim
    shapes[3] = heading.dir.shape[1]
    shapes[4] = c.n.ndim


@system
def rotate_heading(heading: Mut[Heading]):
    for i in range(heading.dir.shape[0]):
        x = heading.dir[i, 0]
        heading.dir[i, 0] = -heading.dir[i, 1]
        heading.dir[i, 1] = x


@system(without=[Frozen])
def bump_unfrozen(c: Mut[Counter]):
    for i in range(c.n.shape[0]):
        c.n[i] += 1


@system
def bump_frozen(tag: Frozen, c: Mut[Counter]):
    for i in range(c.n.shape[0]):
        c.n[i] += 100


@numba.njit
def _triple_kernel(c: Mut[Counter]):
    for i in range(c.n.shape[0]):
        c.n[i] *= 3


triple = system(_triple_kernel)


@numba.njit(cache=False)
def _plus_ten_kernel(c: Mut[Counter]):
    for i in range(c.n.shape[0]):
        c.n[i] += 10


plus_ten = system(_plus_ten_kernel, name="plus_ten")


@system
def fail_at(c: Mut[Counter], fail_value: int):
    for i in range(c.n.shape[0]):
        c.n[i] += 1
        if c.n[i] == fail_value:
            raise ValueError("counter hit the failure value")


# ---------------------------------------------------------------- marks
@system
def touch_auto(c: Mut[Counter]):
    """Writes nothing, but mark="auto" marks every row it is given."""
    pass


@system(mark="manual")
def mark_odd_manual(ids: Entity, c: Mut[Counter]):
    """Writes every row, marks only rows whose entity index is odd."""
    for i in range(c.n.shape[0]):
        c.n[i] += 1
        if ids[i] & 1:
            ecs.mark_changed(c.changed, i)


@system(changed=[Counter])
def seen_counter(rows: Rows, ids: Entity, c: Counter, seen_counter_log: np.ndarray):
    for k in range(rows.shape[0]):
        seen_counter_log[ids[rows[k]] & INDEX_MASK] += 1


# ---------------------------------------------------------------- schedule: order and every=N
@system
def double_n(c: Mut[Counter]):
    for i in range(c.n.shape[0]):
        c.n[i] *= 2


@system
def increment_n(c: Mut[Counter]):
    for i in range(c.n.shape[0]):
        c.n[i] += 1


@system
def tick_every1(c: Counter, ticks1: np.ndarray, frame: int):
    ticks1[frame] += 1


@system(every=2)
def tick_every2(c: Counter, ticks2: np.ndarray, frame: int):
    ticks2[frame] += 1


@system(every=3)
def tick_every3(c: Counter, ticks3: np.ndarray, frame: int):
    ticks3[frame] += 1


@system(every=3)
def increment_n_every3(c: Mut[Counter]):
    for i in range(c.n.shape[0]):
        c.n[i] += 1


@system(every=2)
def fail_every2(c: Counter, fail: bool):
    if fail:
        raise RuntimeError("asked to fail")


# ---------------------------------------------------------------- change semantics
@system(mark="manual")
def write_masked_before(ids: Entity, val: Mut[Value], mask_before: np.ndarray):
    for i in range(ids.shape[0]):
        if mask_before[ids[i] & INDEX_MASK]:
            val.v[i] += 1
            ecs.mark_changed(val.changed, i)


@system(mark="manual")
def write_masked_middle(ids: Entity, val: Mut[Value], mask_middle: np.ndarray):
    for i in range(ids.shape[0]):
        if mask_middle[ids[i] & INDEX_MASK]:
            val.v[i] += 10
            ecs.mark_changed(val.changed, i)


@system(mark="manual")
def write_masked_after(ids: Entity, val: Mut[Value], mask_after: np.ndarray):
    for i in range(ids.shape[0]):
        if mask_after[ids[i] & INDEX_MASK]:
            val.v[i] += 100
            ecs.mark_changed(val.changed, i)


@system(changed=[Position])
def echo_position(rows: Rows, pos: Position, val: Mut[Value]):
    """A filtered writer: mark="auto" marks Value on exactly the rows whose Position changed."""
    for k in range(rows.shape[0]):
        val.v[rows[k]] += 1000


@system(changed=[Position])
def echo_then_scribble(rows: Rows, pos: Position, val: Mut[Value], scribble: int):
    """echo_position, then overwrites its Rows array with `scribble` (a row it did not write, or
    one past the table): the marks are of the rows it was given, whatever the array holds after."""
    for k in range(rows.shape[0]):
        val.v[rows[k]] += 1000
        rows[k] = scribble


@system(every=4, without=[Frozen])
def touch_unfrozen_every4(val: Mut[Value]):
    pass


@system(changed=[Value])
def read_value_every1(rows: Rows, ids: Entity, val: Value, seen_every1: np.ndarray):
    for k in range(rows.shape[0]):
        seen_every1[ids[rows[k]] & INDEX_MASK] += 1


@system(changed=[Value], every=2)
def read_value_every2(rows: Rows, ids: Entity, val: Value, seen_every2: np.ndarray):
    for k in range(rows.shape[0]):
        seen_every2[ids[rows[k]] & INDEX_MASK] += 1


@system(changed=[Value], every=3)
def read_value_every3(rows: Rows, ids: Entity, val: Value, seen_every3: np.ndarray):
    for k in range(rows.shape[0]):
        seen_every3[ids[rows[k]] & INDEX_MASK] += 1


@system(changed=[Value], every=5)
def read_value_every5(rows: Rows, ids: Entity, val: Value, seen_every5: np.ndarray):
    for k in range(rows.shape[0]):
        seen_every5[ids[rows[k]] & INDEX_MASK] += 1


@system(changed=[Value], without=[Frozen])
def read_value_unfrozen(rows: Rows, ids: Entity, val: Value, seen_unfrozen: np.ndarray):
    for k in range(rows.shape[0]):
        seen_unfrozen[ids[rows[k]] & INDEX_MASK] += 1


@system(added=[Health])
def read_health_added(rows: Rows, ids: Entity, hp: Health, seen_added: np.ndarray):
    for k in range(rows.shape[0]):
        seen_added[ids[rows[k]] & INDEX_MASK] += 1


@system(changed=[Health])
def read_health_changed(rows: Rows, ids: Entity, hp: Health, seen_changed: np.ndarray):
    for k in range(rows.shape[0]):
        seen_changed[ids[rows[k]] & INDEX_MASK] += 1


@system(changed=[Value], added=[Health])
def read_value_changed_or_health_added(rows: Rows, ids: Entity, seen_union: np.ndarray):
    for k in range(rows.shape[0]):
        seen_union[ids[rows[k]] & INDEX_MASK] += 1


@system(changed=[Value])
def record_rows_given(rows: Rows, ids: Entity, val: Value, rows_log: np.ndarray, ids_log: np.ndarray,
                      log_len: np.ndarray):
    """Logs (row, id) pairs as given, to check rows are table-local and match their ids."""
    for k in range(rows.shape[0]):
        n = log_len[0]
        rows_log[n] = rows[k]
        ids_log[n] = ids[rows[k]]
        log_len[0] = n + 1


SEEN_ARRAYS = ("seen_every1", "seen_every2", "seen_every3", "seen_every5", "seen_unfrozen",
               "seen_added", "seen_changed", "seen_union", "seen_counter_log")


def fresh_logs(world: ecs.World, size: int, names: tuple[str, ...] = SEEN_ARRAYS) -> None:
    """Give the world a zeroed int64 log array (by entity index) for each name."""
    for name in names:
        world.resources[name] = np.zeros(size, np.int64)


def seen_ids(world: ecs.World, name: str) -> dict[int, int]:
    """{entity index: times seen} from a log array, then zero it for the next frame."""
    log = world.resources[name]
    out = {int(i): int(log[i]) for i in np.flatnonzero(log)}
    log[:] = 0
    return out



@system
def count_frames(frame_count: np.ndarray):
    """Takes values only: runs once per frame, whatever the number of tables."""
    frame_count[0] += 1
