"""Components and systems of the physics demo (examples/physics_demo.py).

The systems are thin: each passes its component columns and named values to a kernel of
kernels/physics.py. They live at module level in this importable module because worker
processes find systems by module and attribute name. Registration order (`SYSTEMS`) is the
order a sequential frame runs them; the scheduler groups them into stages by conflicts:

    apply_gravity, age_particles   Velocity / Lifetime rows, split across workers
    integrate                      Position from Velocity, split
    bounce_walls                   Position and Velocity, split
    build_grid                     one worker: counting sort of every row into the shared grid,
                                   with a snapshot of positions and velocities
    collide                        split (split=True): each worker walks the grid in space order,
                                   resolves the discs whose rows are in its slice (GridRow tells
                                   where the slice starts) and writes only its own rows' Velocity
                                   and Contact; manual marks, so only rows that collided are marked
    tally_contacts                 changed=[Contact]: visits only the rows collide marked

Every particle has the same components, so all of them live in one table: build_grid's grid and
GridRow's row numbers are those of that one table (a second particle archetype would need a grid
per table).

Named values come from `world.resources` (set by the demo): gravity, dt, width, height, radius,
restitution, wall_restitution, cell_size, ncx, ncy, the grid arrays cell_start, cell_state and
cell_items (kernels/physics.py build_grid), and the contact_tally array.
"""

from __future__ import annotations

import numpy as np

from ecs import Mut, Rows, component, f32, f64, i32, system, u32
from ecs.kernels import physics


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
class GridRow:
    row: i32           # the row's index in its table when build_grid last ran (rows move on despawn)


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


@system
def build_grid(pos: Position, vel: Velocity, grid_row: Mut[GridRow], cell_size: float, ncx: int, ncy: int,
               cell_start: np.ndarray, cell_state: np.ndarray, cell_items: np.ndarray):
    physics.build_grid(pos.x, pos.y, vel.x, vel.y, grid_row.row, cell_size, ncx, ncy, cell_start,
                       cell_state, cell_items)


@system(split=True, mark="manual")
def collide(grid_row: GridRow, vel: Mut[Velocity], contact: Mut[Contact], radius: float, restitution: float,
            cell_size: float, ncx: int, ncy: int, cell_start: np.ndarray, cell_state: np.ndarray,
            cell_items: np.ndarray):
    physics.collide(grid_row.row, vel.x, vel.y, contact.hits, contact.impulse, vel.changed, contact.changed,
                    radius, restitution, cell_size, ncx, ncy, cell_start, cell_state, cell_items)


@system(changed=[Contact])
def tally_contacts(rows: Rows, contact: Contact, contact_tally: np.ndarray):
    physics.tally_contacts(rows, contact.hits, contact.impulse, contact_tally)


SYSTEMS = (apply_gravity, age_particles, integrate, bounce_walls, build_grid, collide, tally_contacts)
