"""Components and systems of the physics demo (examples/physics_demo.py).

The systems are thin: each passes its component columns and named values to a kernel of
kernels/physics.py or kernels/spatial.py. They live at module level in this importable module
because worker processes find systems by module and attribute name. Registration order
(`SYSTEMS`) is the order a sequential frame runs them; the scheduler groups them into stages
by conflicts, and every split system's rows are shared out in chunks among the processes:

    apply_gravity, age_particles   Velocity / Lifetime rows
    clear_grid                     (split) zeroes the grid's cell counts, every chunk claiming
                                   blocks of cells from a counter tagged with the frame number
                                   until none is left, and the block counts and the counters
                                   grid_starts and collide claim blocks from
    integrate                      Position from Velocity
    bounce_walls                   Position and Velocity
    count_cells                    (split) each row's cell into GridSlot, counted into the shared
                                   cell_start by atomic adds, and per block of 4,096 cells
    grid_starts                    (split) the running sum: cell_start becomes the first slot of
                                   each cell, and a cursor per cell; every chunk claims blocks of
                                   cells from a shared counter until none is left (O(cells) in all)
    fill_grid                      (split) each row takes a slot of its cell (atomic fetch-add on
                                   the cursor) and copies its state and id there: the snapshot
                                   collide reads
    collide                        (split) each disc of the snapshot finds its partner through the
                                   grid, in grid order: every chunk claims blocks of slots from a
                                   counter until none is left, and writes each slot's result
    apply_collisions               (split) each row takes its slot's result into its own Velocity
                                   and Contact; manual marks, so only rows that collided are marked
    tally_contacts                 changed=[Contact]: visits only the rows apply_collisions marked

The grid build is the parallel counting sort of kernels/spatial.py written as ordinary systems:
no chunk numbers, any number of processes. Which disc of a cell gets which slot depends on who
ran first; collide's answer does not (partners are chosen by velocity, ties by entity id), so
the result is bit-identical on any worker count.

Named values come from `world.resources` (set by the demo): gravity, dt, width, height, radius,
restitution, wall_restitution, the grid's cell_size, ncx and ncy, its arrays (`grid_arrays`:
cell_start, cell_cursor, block_counts, block_claim, clear_claim, slot_state, slot_keys, and
collide's slot_claim, slot_hit and slot_kick), and the contact_tally array.
"""

from __future__ import annotations

import numpy as np

from ecs import Entity, Frame, Mut, Rows, component, f32, f64, i32, system, u32
from ecs.kernels import physics, spatial


@component
class Position:
    x: f64
    y: f64


@component
class Velocity:
    x: f64
    y: f64


@component
class Lifetime:
    left: f32          # seconds until the emitter recycles the particle


@component
class GridSlot:
    cell: i32          # the grid cell of the row's disc this frame
    slot: i32          # its slot in the grid (slot_state, slot_keys) this frame


@component
class Contact:
    hits: u32          # collisions over its life
    impulse: f32       # velocity change of its last collision


@system
def apply_gravity(vel: Mut[Velocity], gravity: float, dt: float):
    physics.apply_gravity(vel.y, gravity, dt)


@system
def age_particles(life: Mut[Lifetime], dt: float):
    physics.age(life.left, dt)


@system
def integrate(pos: Mut[Position], vel: Velocity, dt: float):
    physics.integrate(pos.x, pos.y, vel.x, vel.y, dt)


@system
def bounce_walls(pos: Mut[Position], vel: Mut[Velocity], width: float, height: float, radius: float,
                 wall_restitution: float):
    physics.bounce_walls(pos.x, pos.y, vel.x, vel.y, width, height, radius, wall_restitution)


def grid_arrays(ncx: int, ncy: int, entities: int) -> dict[str, np.ndarray]:
    """The grid's resource arrays for `entities` discs in ncx x ncy cells, by name."""
    ncells = ncx * ncy
    return {"cell_start": np.zeros(ncells + 1, np.int32), "cell_cursor": np.zeros(ncells, np.int32),
            "block_counts": np.zeros(spatial.blocks_of(ncells), np.int64), "block_claim": np.zeros(1, np.int64),
            "clear_claim": np.zeros(1, np.int64),
            "slot_state": np.zeros((entities, 4), np.float64), "slot_keys": np.zeros(entities, np.int64),
            "slot_claim": np.zeros(1, np.int64), "slot_hit": np.zeros(entities, np.int8),
            "slot_kick": np.zeros((entities, 3), np.float64)}


@system(split=True)
def clear_grid(grid: GridSlot, frame: Frame, cell_start: np.ndarray, clear_claim: np.ndarray,
               block_counts: np.ndarray, block_claim: np.ndarray, slot_claim: np.ndarray):
    # like grid_starts, every chunk of the discs' rows joins in, claiming blocks of cells; the
    # few block counts and the running sum's counter each chunk zeroes whole (the same zeros)
    spatial.clear_shared(cell_start, clear_claim, frame)
    spatial.clear_counts(block_counts)
    spatial.clear_counts(block_claim)
    spatial.clear_counts(slot_claim)


@system(split=True, mark="manual")
def count_cells(pos: Position, grid: Mut[GridSlot], cell_size: float, ncx: int, ncy: int, cell_start: np.ndarray,
                block_counts: np.ndarray):
    physics.cell_ids(pos.x, pos.y, cell_size, ncx, ncy, grid.cell)
    spatial.count_shared_blocks(grid.cell, cell_start, block_counts)


@system(split=True)
def grid_starts(grid: GridSlot, cell_start: np.ndarray, cell_cursor: np.ndarray, block_counts: np.ndarray,
                block_claim: np.ndarray):
    # every chunk of the discs' rows joins in: each claims blocks of cells until none is left
    # (the rows only make it a split system; the work is the cells')
    spatial.starts_from_blocks(cell_start, cell_cursor, block_counts, block_claim)


@system(split=True, mark="manual")
def fill_grid(pos: Position, vel: Velocity, ids: Entity, grid: Mut[GridSlot], cell_cursor: np.ndarray,
              slot_state: np.ndarray, slot_keys: np.ndarray):
    spatial.claim_slots(grid.cell, cell_cursor, grid.slot)
    physics.snapshot(grid.slot, pos.x, pos.y, vel.x, vel.y, ids, slot_state, slot_keys)


@system(split=True)
def collide(grid: GridSlot, slot_claim: np.ndarray, slot_hit: np.ndarray, slot_kick: np.ndarray, radius: float,
            restitution: float, cell_size: float, ncx: int, ncy: int, cell_start: np.ndarray,
            slot_state: np.ndarray, slot_keys: np.ndarray):
    # like grid_starts, every chunk of the discs' rows joins in, claiming blocks of the grid's
    # slots: the work is the slots' (in grid order), its results slot_hit and slot_kick
    physics.collide_slots(slot_claim, slot_hit, slot_kick, radius, restitution, cell_size, ncx, ncy, cell_start,
                          slot_state, slot_keys)


@system(split=True, mark="manual")
def apply_collisions(grid: GridSlot, vel: Mut[Velocity], contact: Mut[Contact], slot_hit: np.ndarray,
                     slot_kick: np.ndarray):
    physics.apply_collisions(grid.slot, slot_hit, slot_kick, vel.x, vel.y, contact.hits, contact.impulse,
                             vel.changed, contact.changed)


@system(changed=[Contact])
def tally_contacts(rows: Rows, contact: Contact, contact_tally: np.ndarray):
    physics.tally_contacts(rows, contact.hits, contact.impulse, contact_tally)


SYSTEMS = (apply_gravity, age_particles, clear_grid, integrate, bounce_walls, count_cells, grid_starts, fill_grid,
           collide, apply_collisions, tally_contacts)
