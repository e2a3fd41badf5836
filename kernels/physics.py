"""Physics kernels of the demo (examples/physics_demo.py): discs of one radius and one mass in a box.

Each kernel is a loop over the columns of the rows it is given; the ecs systems in
examples/physics_systems.py are thin wrappers that pass component columns and resource arrays.
Every kernel here has a numpy twin in tests/test_physics_kernels.py.

Determinism: no kernel's result depends on how the rows are split across workers.
`build_grid` sees every row (it runs whole, on one worker) and sorts them into cells in row
order. `collide` writes only the row it is computing: it reads its neighbours from the grid's
snapshot (positions and velocities as they were when the grid was built) and pairs discs by a
rule both discs of a pair evaluate to the same answer from the same snapshot, so each side gets
exactly the negated impulse of the other, whichever worker computes it.
Cost per frame: build_grid O(rows + cells), collide O(rows x discs in the 3 x 3 cells around).
"""

from __future__ import annotations

import math

from ._jit import jit
from .bits import mark_changed


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
def cell_of(x, y, cell_size, ncx, ncy):
    """The grid cell (row-major, ncx cells per grid row) holding point (x, y), clamped to the grid."""
    cx = min(max(int(x / cell_size), 0), ncx - 1)
    cy = min(max(int(y / cell_size), 0), ncy - 1)
    return cy * ncx + cx


@jit
def build_grid(x, y, vx, vy, ids, cell_size, ncx, ncy, cell_start, cell_state, cell_items):
    """Counting sort of the rows into the uniform grid, in row order.

    Afterwards the rows of cell c are grid slots cell_start[c] .. cell_start[c + 1] - 1, and
    slot k holds a snapshot of one row: cell_state[k] = (x, y, vx, vy) and its entity id
    cell_items[k]. `cell_start` has ncx * ncy + 1 entries; cell_state (shape (m, 4)) and
    cell_items at least m >= len(x) slots. Raises ValueError when they are too small.
    """
    n = x.shape[0]
    cells = ncx * ncy
    if cell_start.shape[0] != cells + 1:
        raise ValueError("build_grid: cell_start must have ncx * ncy + 1 entries")
    if cell_state.shape[0] < n or cell_state.shape[1] != 4 or cell_items.shape[0] < n:
        raise ValueError("build_grid: the grid holds fewer slots than there are rows")
    for c in range(cells + 1):
        cell_start[c] = 0
    for i in range(n):                       # count rows per cell, into cell_start[c + 1]
        cell_start[cell_of(x[i], y[i], cell_size, ncx, ncy) + 1] += 1
    for c in range(cells):                   # prefix sum: cell_start[c] = first slot of cell c
        cell_start[c + 1] += cell_start[c]
    for i in range(n):                       # scatter; cell_start[c] walks to the end of cell c
        c = cell_of(x[i], y[i], cell_size, ncx, ncy)
        k = cell_start[c]
        cell_start[c] = k + 1
        cell_state[k, 0] = x[i]
        cell_state[k, 1] = y[i]
        cell_state[k, 2] = vx[i]
        cell_state[k, 3] = vy[i]
        cell_items[k] = ids[i]
    for c in range(cells, 0, -1):            # cell_start[c] held the end of cell c: shift back
        cell_start[c] = cell_start[c - 1]
    cell_start[0] = 0


@jit
def fastest_approach(xa, ya, vxa, vya, diameter2, cell_size, ncx, ncy, cell_start, cell_state):
    """The grid slot of the disc that overlaps the disc at (xa, ya) and approaches it fastest
    (most negative relative normal velocity; the lower slot on a tie), -1 when none does.
    The disc's own slot is skipped by its zero distance (its snapshot equals its values)."""
    cell = cell_of(xa, ya, cell_size, ncx, ncy)   # the same arithmetic as build_grid's
    cx, cy = cell % ncx, cell // ncx
    cx0, cx1 = max(cx - 1, 0), min(cx + 1, ncx - 1)
    best = -1
    best_vn = 0.0
    for gy in range(max(cy - 1, 0), min(cy + 1, ncy - 1) + 1):
        # cells cx0..cx1 of one grid row are consecutive slots
        for k in range(cell_start[gy * ncx + cx0], cell_start[gy * ncx + cx1 + 1]):
            dx = cell_state[k, 0] - xa
            dy = cell_state[k, 1] - ya
            d2 = dx * dx + dy * dy
            if d2 >= diameter2 or d2 == 0.0:
                continue
            d = math.sqrt(d2)
            vn = (cell_state[k, 2] - vxa) * (dx / d) + (cell_state[k, 3] - vya) * (dy / d)
            if vn < best_vn:
                best = k
                best_vn = vn
    return best


@jit
def collide(x, y, vx, vy, ids, hits, impulse, vel_changed, contact_changed, radius, restitution,
            cell_size, ncx, ncy, cell_start, cell_state, cell_items):
    """Resolve disc-disc collisions of the given rows against the grid snapshot.

    Pairs are matched, not summed: row i collides with j when j is the disc approaching i fastest
    and i is the disc approaching j fastest (fastest_approach both ways). Each disc then takes
    part in at most one collision per frame, so an elastic frame conserves energy exactly
    (summed simultaneous impulses do not); a disc whose partner was taken waits a frame, still
    overlapping and approaching. Row i gets the equal-mass impulse (1 + restitution) / 2 * v_n * n
    and j, when its own row is computed, the negated one. Colliding rows get `hits[i]` += 1,
    `impulse[i]` = the velocity change, and their bits set in `vel_changed` and
    `contact_changed` (manual marks). Returns the number of rows that collided.
    `cell_size` must be >= 2 * radius so the 3 x 3 cells around a disc hold every disc touching it.
    """
    diameter2 = 4.0 * radius * radius
    share = 0.5 * (1.0 + restitution)
    collided = 0
    for i in range(x.shape[0]):
        xi, yi, vxi, vyi = x[i], y[i], vx[i], vy[i]
        j = fastest_approach(xi, yi, vxi, vyi, diameter2, cell_size, ncx, ncy, cell_start, cell_state)
        if j < 0:
            continue
        back = fastest_approach(cell_state[j, 0], cell_state[j, 1], cell_state[j, 2], cell_state[j, 3],
                                diameter2, cell_size, ncx, ncy, cell_start, cell_state)
        if back < 0 or cell_items[back] != ids[i]:
            continue
        dx = cell_state[j, 0] - xi
        dy = cell_state[j, 1] - yi
        d = math.sqrt(dx * dx + dy * dy)
        nx = dx / d
        ny = dy / d
        vn = (cell_state[j, 2] - vxi) * nx + (cell_state[j, 3] - vyi) * ny
        vx[i] = vxi + share * vn * nx
        vy[i] = vyi + share * vn * ny
        hits[i] += 1
        impulse[i] = -share * vn
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

