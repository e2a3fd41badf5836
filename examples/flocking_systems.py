"""Components and systems of the Flocking model (examples/flocking.py).

Each frame is one step of the model, in two systems:

    index_birds   one process: the uniform grid of kernels/spatial.py over every bird (a counting
                  sort by cell), and a copy of positions, headings and ids in slot order: the
                  state every bird steers from
    flock         split into chunks of rows (split=True): each bird finds its neighbours within the
                  visual distance through the grid, steers (cohesion, separation, alignment),
                  renormalises its heading to a unit vector and moves `speed`, wrapping around
                  the periodic world; it writes only its own row

Birds update synchronously: every bird steers from the positions and headings of the start of
the step (the grid's copy), where Agents.jl and Mesa update birds one by one in a random order,
each seeing the moves of those before it. That is what makes the step bit-identical on any
worker count and any split of the rows. A neighbour is any other bird at distance
<= visual_distance (minimum image), as in the benchmark's Agents.jl code.

Named values come from `world.resources`: geometry (spatial.make_grid), the grid arrays cells,
cell_start, order, the slot-order copies slot_x, slot_y, slot_vx, slot_vy, slot_ids, and the
model's parameters speed, visual_distance, separation, cohere_factor, separate_factor,
match_factor.
"""

from __future__ import annotations

import math

import numpy as np

from ecs import Entity, Mut, component, f64, system
from ecs.kernels import spatial
from ecs.kernels._jit import jit


@component
class Position:
    x: f64
    y: f64


@component
class Heading:
    x: f64            # a unit vector
    y: f64


@system
def index_birds(pos: Position, heading: Heading, ids: Entity, geometry: np.ndarray, cells: np.ndarray,
                cell_start: np.ndarray, order: np.ndarray, slot_x: np.ndarray, slot_y: np.ndarray,
                slot_vx: np.ndarray, slot_vy: np.ndarray, slot_ids: np.ndarray):
    spatial.build_2d(pos.x, pos.y, geometry, cells, cell_start, order)
    spatial.gather(order, pos.x, slot_x)
    spatial.gather(order, pos.y, slot_y)
    spatial.gather(order, heading.x, slot_vx)
    spatial.gather(order, heading.y, slot_vy)
    spatial.gather(order, ids, slot_ids)


@jit
def steer(qx, qy, vx, vy, me, geometry, cell_start, slot_x, slot_y, slot_vx, slot_vy, slot_ids, ranges,
          visual_distance, separation, cohere_factor, separate_factor, match_factor):
    """The new heading (unit vector) of the bird `me` at (qx, qy) heading (vx, vy)."""
    length_x, length_y = geometry[0, spatial.LENGTH], geometry[1, spatial.LENGTH]
    r2 = visual_distance * visual_distance
    s2 = separation * separation
    n = 0
    cohere_x = cohere_y = separate_x = separate_y = match_x = match_y = 0.0
    m = spatial.neighbour_ranges_2d(qx, qy, geometry, cell_start, ranges)
    for j in range(m):
        for k in range(ranges[j, 0], ranges[j, 1]):
            if slot_ids[k] == me:
                continue
            dx = spatial.axis_delta(qx, slot_x[k], length_x, True)
            dy = spatial.axis_delta(qy, slot_y[k], length_y, True)
            d2 = dx * dx + dy * dy
            if d2 <= r2:
                n += 1
                cohere_x += dx
                cohere_y += dy
                if d2 < s2:
                    separate_x -= dx
                    separate_y -= dy
                match_x += slot_vx[k]
                match_y += slot_vy[k]
    n = max(n, 1)
    hx = (vx + cohere_x / n * cohere_factor + separate_x / n * separate_factor + match_x / n * match_factor) / 2.0
    hy = (vy + cohere_y / n * cohere_factor + separate_y / n * separate_factor + match_y / n * match_factor) / 2.0
    norm = math.sqrt(hx * hx + hy * hy)
    if norm == 0.0:                   # opposite pulls cancelled exactly: keep the old heading
        return vx, vy
    return hx / norm, hy / norm


@system(split=True)
def flock(pos: Mut[Position], heading: Mut[Heading], ids: Entity, geometry: np.ndarray, cell_start: np.ndarray,
          slot_x: np.ndarray, slot_y: np.ndarray, slot_vx: np.ndarray, slot_vy: np.ndarray, slot_ids: np.ndarray,
          speed: float, visual_distance: float, separation: float, cohere_factor: float, separate_factor: float,
          match_factor: float):
    spatial.check_grid(geometry, cell_start)    # once a call: the per-bird range queries trust it
    ranges = np.empty((spatial.MAX_RANGES_2D, 2), np.int64)
    length_x, length_y = geometry[0, spatial.LENGTH], geometry[1, spatial.LENGTH]
    lo_x, lo_y = geometry[0, spatial.LO], geometry[1, spatial.LO]
    for i in range(ids.shape[0]):
        hx, hy = steer(pos.x[i], pos.y[i], heading.x[i], heading.y[i], ids[i], geometry, cell_start, slot_x,
                       slot_y, slot_vx, slot_vy, slot_ids, ranges, visual_distance, separation, cohere_factor,
                       separate_factor, match_factor)
        heading.x[i] = hx
        heading.y[i] = hy
        x = pos.x[i] + hx * speed - lo_x
        y = pos.y[i] + hy * speed - lo_y
        x -= length_x * math.floor(x / length_x)
        y -= length_y * math.floor(y / length_y)
        pos.x[i] = lo_x + (x if x < length_x else 0.0)      # -1e-17 wraps to length_x by rounding
        pos.y[i] = lo_y + (y if y < length_y else 0.0)


SYSTEMS = (index_birds, flock)
