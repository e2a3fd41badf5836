"""Physics kernels of the demo (examples/physics_demo.py): discs of one radius and one mass in a box.

Each kernel is a loop over the columns of the rows it is given; the ecs systems in
examples/physics_systems.py are thin wrappers that pass component columns and resource arrays.
Every kernel here has a numpy twin in tests/test_physics_kernels.py.

The grid: a uniform grid of cells at least a diameter wide, numbered row-major, built each
frame as the parallel counting sort of kernels/spatial.py (`cell_ids`,
spatial.count_shared_blocks, spatial.starts_from_blocks, spatial.claim_slots, `snapshot`),
every step over any chunk of rows in any process. The snapshot holds each disc's state and entity id in grid order.

Determinism: no kernel's result depends on how the rows are split or who ran first. Which disc
of a cell gets which slot does depend on it, so `collide_slots` never depends on slot order: it
reads every disc from the snapshot and pairs discs by a rule both discs of a pair evaluate to
the same answer (the fastest approach, ties to the lower entity id), so each side gets exactly
the negated impulse of the other, whichever process computes it.
Cost per frame: the grid O(rows + cells); collide_slots, for each slot, the discs in the 3 x 3
cells around, read in grid order (cache-friendly whatever the table order: rows drift apart in
space as particles move); apply_collisions O(rows).
"""

from __future__ import annotations

import math

from ._jit import jit
from .bits import mark_changed
from .checks import check_length
from .sync import atomic_add_fetch


@jit
def apply_gravity(vy, gravity, dt):
    """vy += gravity * dt (gravity is signed: negative pulls towards y = 0)."""
    dv = gravity * dt
    for i in range(vy.shape[0]):
        vy[i] += dv


@jit
def integrate(x, y, vx, vy, dt):
    """Move every row by its velocity over dt (semi-implicit Euler after apply_gravity)."""
    for i in range(x.shape[0]):
        x[i] += vx[i] * dt
        y[i] += vy[i] * dt


@jit
def bounce_walls(x, y, vx, vy, width, height, radius, restitution):
    """Reflect discs that crossed a wall of the box [0, width] x [0, height]: the position is
    mirrored at the wall (a disc touches it at distance `radius`) and the normal velocity is
    reversed and scaled by `restitution`. Returns the number of rows that bounced."""
    lo_x, hi_x = radius, width - radius
    lo_y, hi_y = radius, height - radius
    bounced = 0
    # the two axes are written out: one inlined helper taking (array, index) per axis measured 10x
    # slower here (969 vs 91 us at 50k rows)
    for i in range(x.shape[0]):
        hit = False
        if x[i] < lo_x:
            x[i] = min(2.0 * lo_x - x[i], hi_x)
            vx[i] = abs(vx[i]) * restitution
            hit = True
        elif x[i] > hi_x:
            x[i] = max(2.0 * hi_x - x[i], lo_x)
            vx[i] = -abs(vx[i]) * restitution
            hit = True
        if y[i] < lo_y:
            y[i] = min(2.0 * lo_y - y[i], hi_y)
            vy[i] = abs(vy[i]) * restitution
            hit = True
        elif y[i] > hi_y:
            y[i] = max(2.0 * hi_y - y[i], lo_y)
            vy[i] = -abs(vy[i]) * restitution
            hit = True
        if hit:
            bounced += 1
    return bounced


@jit
def age(left, dt):
    """Count lifetimes down by dt (a row whose `left` is <= 0 has expired)."""
    for i in range(left.shape[0]):
        left[i] -= dt


@jit
def cell_xy(x, y, cell_size, ncx, ncy):
    """The grid column and row of the cell holding point (x, y), clamped to the grid."""
    return min(max(int(x / cell_size), 0), ncx - 1), min(max(int(y / cell_size), 0), ncy - 1)


@jit
def cell_ids(x, y, cell_size, ncx, ncy, cells):
    """cells[i] = the grid cell of row i (row-major: cy * ncx + cx, clamped to the grid)."""
    for i in range(x.shape[0]):
        cx, cy = cell_xy(x[i], y[i], cell_size, ncx, ncy)
        cells[i] = cy * ncx + cx


@jit
def check_slots(name, slots, nslots):
    """ValueError naming the kernel's `name` unless every entry of `slots` is in [0, nslots)
    (one branch-free pass: vectorized, ~10 us for 100k)."""
    outside = 0
    for i in range(slots.shape[0]):
        outside += (slots[i] < 0) | (slots[i] >= nslots)
    if outside:
        raise ValueError(name + ": a row's slot is outside the grid's slots")


@jit
def snapshot(slots, x, y, vx, vy, keys, slot_state, slot_keys):
    """Copy this chunk's discs into the grid's slots (after spatial.claim_slots):
    slot_state[slots[i]] = (x, y, vx, vy), slot_keys[slots[i]] = keys[i] (the entity id).
    ValueError, having written nothing, when an input is shorter than slots or a slot is
    outside slot_state or slot_keys (a grid sized for fewer discs)."""
    n = slots.shape[0]
    check_length("snapshot", x, n)
    check_length("snapshot", y, n)
    check_length("snapshot", vx, n)
    check_length("snapshot", vy, n)
    check_length("snapshot", keys, n)
    if slot_state.shape[1] < 4:
        raise ValueError("snapshot: slot_state needs 4 columns")
    check_slots("snapshot", slots, min(slot_state.shape[0], slot_keys.shape[0]))
    for i in range(n):
        k = slots[i]
        slot_state[k, 0] = x[i]
        slot_state[k, 1] = y[i]
        slot_state[k, 2] = vx[i]
        slot_state[k, 3] = vy[i]
        slot_keys[k] = keys[i]


@jit
def fastest_approach(me, diameter2, cell_size, ncx, ncy, cell_start, slot_state, slot_keys):
    """The grid slot of the disc that overlaps the disc in slot `me` and approaches it fastest
    (most negative relative normal velocity; on a tie the lower key), -1 when none does. The
    answer does not depend on the order of the slots within a cell. Trusts its caller for
    `me` (a slot of slot_state) and cell_start's length (ncx * ncy + 1: collide_slots checks
    both); the slots it reads are kept inside slot_state and slot_keys whatever cell_start holds."""
    nslots = min(slot_state.shape[0], slot_keys.shape[0])
    xa, ya, vxa, vya = slot_state[me, 0], slot_state[me, 1], slot_state[me, 2], slot_state[me, 3]
    cx, cy = cell_xy(xa, ya, cell_size, ncx, ncy)   # the same arithmetic as cell_ids'
    cx0, cx1 = max(cx - 1, 0), min(cx + 1, ncx - 1)
    best = -1
    best_vn = 0.0
    for gy in range(max(cy - 1, 0), min(cy + 1, ncy - 1) + 1):
        # cells cx0..cx1 of one grid row are consecutive slots
        for k in range(max(cell_start[gy * ncx + cx0], 0), min(cell_start[gy * ncx + cx1 + 1], nslots)):
            dx = slot_state[k, 0] - xa
            dy = slot_state[k, 1] - ya
            d2 = dx * dx + dy * dy
            if d2 >= diameter2 or d2 == 0.0:     # apart, or `me` itself (or a disc on top of it)
                continue
            d = math.sqrt(d2)
            vn = (slot_state[k, 2] - vxa) * (dx / d) + (slot_state[k, 3] - vya) * (dy / d)
            if vn < best_vn or (vn == best_vn and best >= 0 and slot_keys[k] < slot_keys[best]):
                best = k
                best_vn = vn
    return best


COLLIDE_BLOCK = 1024   # slots a caller of collide_slots claims at a time


@jit
def collide_slots(claim, slot_hit, slot_kick, radius, restitution, cell_size, ncx, ncy, cell_start, slot_state,
                  slot_keys):
    """Resolve the disc-disc collisions of the grid snapshot, slot by slot, in blocks of
    COLLIDE_BLOCK slots claimed from the counter claim[0] (int64, zeroed before the first caller)
    until none is left: any number of callers at once, in any processes, and one alone does it
    all. Slot k gets slot_hit[k] = 1 when its disc collides, and slot_kick[k] = (its new vx, vy,
    and its velocity change), else slot_hit[k] = 0 (slot_kick[k] is left). apply_collisions
    then copies the results to the rows. Returns the number of slots this caller found colliding.

    Pairs are matched, not summed: slot k collides with j when j is the disc approaching k
    fastest and k the disc approaching j fastest (fastest_approach both ways), so each disc
    takes part in at most one collision per frame and an elastic frame conserves energy exactly
    (summed simultaneous impulses do not); a disc whose partner was taken waits a frame, still
    overlapping and approaching. Slot k gets the equal-mass impulse (1 + restitution) / 2 * v_n * n,
    and its partner the negated one when its own slot is resolved, by this caller or another.
    Slots are walked in grid order, so neighbours in space are neighbours in memory, and a
    block's neighbours are mostly its own: splitting the rows instead made every chunk walk
    every slot to find its rows' (6 chunks of 100k discs: 4.1 ms against 2.9 ms whole).
    Cost O(slots) in all, plus per slot the discs in the 3 x 3 cells around it, twice."""
    if cell_start.shape[0] != ncx * ncy + 1 or slot_kick.shape[1] < 3 or slot_state.shape[1] < 4:
        raise ValueError("collide_slots: cell_start needs ncx * ncy + 1 entries, slot_kick 3 columns, "
                         "slot_state 4")
    check_length("collide_slots", claim, 1)
    nslots = cell_start[cell_start.shape[0] - 1]
    check_length("collide_slots", slot_hit, nslots)
    check_length("collide_slots", slot_kick, nslots)
    check_length("collide_slots", slot_state, nslots)
    check_length("collide_slots", slot_keys, nslots)
    diameter2 = 4.0 * radius * radius
    share = 0.5 * (1.0 + restitution)
    collided = 0
    while True:
        lo = (atomic_add_fetch(claim, 0, 1) - 1) * COLLIDE_BLOCK
        if lo >= nslots:
            return collided
        if lo < 0:
            raise ValueError("collide_slots: claim[0] is negative (zero it before the frame's first caller)")
        for k in range(lo, min(lo + COLLIDE_BLOCK, nslots)):
            slot_hit[k] = 0
            j = fastest_approach(k, diameter2, cell_size, ncx, ncy, cell_start, slot_state, slot_keys)
            if j < 0 or fastest_approach(j, diameter2, cell_size, ncx, ncy, cell_start, slot_state, slot_keys) != k:
                continue
            dx = slot_state[j, 0] - slot_state[k, 0]
            dy = slot_state[j, 1] - slot_state[k, 1]
            d = math.sqrt(dx * dx + dy * dy)
            nx = dx / d
            ny = dy / d
            vn = (slot_state[j, 2] - slot_state[k, 2]) * nx + (slot_state[j, 3] - slot_state[k, 3]) * ny
            slot_kick[k, 0] = slot_state[k, 2] + share * vn * nx
            slot_kick[k, 1] = slot_state[k, 3] + share * vn * ny
            slot_kick[k, 2] = -share * vn
            slot_hit[k] = 1
            collided += 1


@jit
def apply_collisions(slots, slot_hit, slot_kick, vx, vy, hits, impulse, vel_changed, contact_changed):
    """Give the given rows their collide_slots results: row i, whose disc is in slot slots[i],
    when slot_hit[slots[i]] is set, gets (vx, vy) and its velocity change `impulse[i]` from
    slot_kick, hits[i] += 1, and its bits set in `vel_changed` and `contact_changed` (manual
    marks). Returns the number of rows that collided; ValueError, having written nothing, when an
    array is too short or a slot is outside slot_hit or slot_kick. Cost O(rows)."""
    n = slots.shape[0]
    check_length("apply_collisions", vx, n)
    check_length("apply_collisions", vy, n)
    check_length("apply_collisions", impulse, n)
    check_length("apply_collisions", hits, n)
    check_length("apply_collisions", vel_changed, (n + 63) >> 6)
    check_length("apply_collisions", contact_changed, (n + 63) >> 6)
    if slot_kick.shape[1] < 3:
        raise ValueError("apply_collisions: slot_kick needs 3 columns")
    check_slots("apply_collisions", slots, min(slot_hit.shape[0], slot_kick.shape[0]))
    collided = 0
    for i in range(n):
        k = slots[i]
        if slot_hit[k]:
            vx[i] = slot_kick[k, 0]
            vy[i] = slot_kick[k, 1]
            impulse[i] = slot_kick[k, 2]
            hits[i] += 1
            mark_changed(vel_changed, i)
            mark_changed(contact_changed, i)
            collided += 1
    return collided


@jit
def tally_contacts(rows, hits, impulse, tally):
    """Add the given rows' last collisions to `tally`: tally[0] += rows that ever collided,
    tally[1] += their last velocity change. Cost O(len(rows))."""
    for r in range(rows.shape[0]):
        row = rows[r]
        if hits[row] > 0:
            tally[0] += 1.0
            tally[1] += impulse[row]


@jit
def expired_rows(left, out):
    """Write the rows whose lifetime ran out (left <= 0) into `out`, in row order; returns how many."""
    count = 0
    for i in range(left.shape[0]):
        if left[i] <= 0.0:
            out[count] = i
            count += 1
    return count


@jit
def energy(y, vx, vy, gravity):
    """Total kinetic + potential energy of unit-mass discs: sum(v^2 / 2 - gravity * y)."""
    total = 0.0
    for i in range(y.shape[0]):
        total += 0.5 * (vx[i] * vx[i] + vy[i] * vy[i]) - gravity * y[i]
    return total


@jit
def count_outside(x, y, width, height):
    """Rows whose centre lies outside the box [0, width] x [0, height] (or is NaN)."""
    count = 0
    for i in range(x.shape[0]):
        if not (0.0 <= x[i] <= width and 0.0 <= y[i] <= height):
            count += 1
    return count

