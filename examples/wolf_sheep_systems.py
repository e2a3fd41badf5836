"""Components and systems of the WolfSheep model (examples/wolf_sheep.py).

One model step is two frames, split with every=2 and offset=:

    frame 2s (offset 0)      sheep_step: every sheep, in a random order, moves, eats, dies or
                             breeds (births and deaths are commands, applied after the frame)
    frame 2s + 1 (offset 1)  clear_sheep_index, index_sheep: a cell list of the sheep alive now
                             (lambs born in frame 2s included, the dead gone);
                             wolf_step: every wolf, in a random order, moves, eats a sheep of
                             its cell, dies or breeds; grow_grass: every countdown ticks

So, as in Mesa, the sheep act before the wolves and the wolves see the lambs born this step.
Sheep and wolves are different archetypes: (Position, Energy, Sheep) and (Position, Energy,
Wolf); the kernels select them with with_=[Sheep] / with_=[Wolf], and the prefabs newborns are
copied from have neither tag, so no system sees them.

Randomness comes only from kernels/random.py, keyed by (seed, entity id, frame, stream): the
activation order (`permutation`), the move, the breeding draw and the choice of prey. Every
system that takes a resource array runs whole in one process, and each runs over one table, so
a kernel sees all its agents in one call, in an order that depends only on ids and the frame:
the run is bit-identical on any worker count.

Competition is resolved inside one kernel call, in activation order: the first sheep to reach
a fully grown patch eats it (the patch then counts down again); the first wolf to pick a sheep
marks it eaten in `sheep_eaten`, so a later wolf on that cell picks among the sheep left and no
sheep is eaten twice. (Commands apply in (system, table, row) order, and a second despawn of
one id would be ignored, but the wolf would have gained its energy: the mark prevents that.)
"""

from __future__ import annotations

import numpy as np

import ecs
from ecs import Entity, Mut, component, f64, i32, system
from ecs.kernels import random, spatial
from ecs.kernels._jit import jit

MOVE, BREED, PREY, ORDER = 0, 1, 2, 3          # random streams of one agent in one frame


@component
class Position:
    x: i32
    y: i32


@component
class Energy:
    e: f64


@component
class Sheep:
    pass


@component
class Wolf:
    pass


POS_X = ecs.field_key(Position, "x")
POS_Y = ecs.field_key(Position, "y")
ENERGY = ecs.field_key(Energy, "e")
SHEEP = ecs.component_key(Sheep)
WOLF = ecs.component_key(Wolf)


# ---------------------------------------------------------------- helpers (numba)
@jit
def move(pos, i, seed, entity, frame, width, height):
    """One step to a random one of the 8 neighbouring cells, on a torus."""
    d = random.integers(seed, entity, frame, MOVE, 0, 8)
    d += d >= 4                                  # 0..8 without 4, the cell itself
    pos.x[i] = (pos.x[i] + d % 3 - 1) % width
    pos.y[i] = (pos.y[i] + d // 3 - 1) % height


@jit
def activation_order(seed, frame, ids):
    """The rows of these agents in this frame's random order (a permutation keyed by their ids)."""
    order = np.empty(ids.shape[0], np.int64)
    random.permutation(seed, frame, ORDER, ids, order)
    return order


@jit
def walk(pos, energy, i, seed, entity, frame, width, height):
    """Agent i takes its random step and pays 1 energy for it: its new cell and energy."""
    move(pos, i, seed, entity, frame, width, height)
    return pos.x[i], pos.y[i], energy.e[i] - 1.0


@jit
def graze(grass, x, y, energy, gain, regrowth_time):
    """A sheep on (x, y) with `energy` eats the patch if it is fully grown (the patch then
    counts down again); returns its energy."""
    if grass[y, x] == 0:
        grass[y, x] = regrowth_time
        return energy + gain
    return energy


@jit
def hunt(seed, entity, frame, first, stop, sheep_eaten):
    """The slot (in [first, stop), the sheep of the wolf's cell) of a random sheep not eaten
    yet, marked eaten; -1 when none is left."""
    left = 0
    for slot in range(first, stop):
        left += sheep_eaten[slot] == 0
    if left == 0:
        return -1
    pick = random.integers(seed, entity, frame, PREY, 0, left)
    for slot in range(first, stop):
        if sheep_eaten[slot] == 0:
            if pick == 0:
                sheep_eaten[slot] = 1
                return slot
            pick -= 1
    return -1


@jit
def give_birth(cmd, i, prefab, tag, x, y, energy):
    child = ecs.cmd_spawn(cmd, i, prefab)
    ecs.cmd_set(cmd, i, child, POS_X, x)
    ecs.cmd_set(cmd, i, child, POS_Y, y)
    ecs.cmd_set(cmd, i, child, ENERGY, energy)
    ecs.cmd_add(cmd, i, child, tag)


# ---------------------------------------------------------------- frame 2s: the sheep
@system(with_=[Sheep], every=2, offset=0)
def sheep_step(pos: Mut[Position], energy: Mut[Energy], ids: Entity, cmd: ecs.Commands, frame: ecs.Frame,
               grass: np.ndarray, seed: int, sheep_gain_from_food: float, sheep_reproduce: float,
               grass_regrowth_time: int, sheep_prefab: int):
    height, width = grass.shape
    for i in activation_order(seed, frame, ids):
        x, y, e = walk(pos, energy, i, seed, ids[i], frame, width, height)
        e = graze(grass, x, y, e, sheep_gain_from_food, grass_regrowth_time)
        if e < 0.0:
            ecs.cmd_despawn(cmd, i, ids[i])
        elif random.uniform(seed, ids[i], frame, BREED) < sheep_reproduce:
            e /= 2.0
            give_birth(cmd, i, sheep_prefab, SHEEP, x, y, e)
        energy.e[i] = e


# ---------------------------------------------------------------- frame 2s + 1: wolves, grass
@system(every=2, offset=1)
def clear_sheep_index(sheep_cell_start: np.ndarray):
    """An empty cell list: what the wolves see when no sheep is left (index_sheep not called)."""
    for c in range(sheep_cell_start.shape[0]):
        sheep_cell_start[c] = 0


@system(with_=[Sheep], every=2, offset=1)
def index_sheep(pos: Position, ids: Entity, sheep_cells: np.ndarray, sheep_cell_start: np.ndarray,
                sheep_slots: np.ndarray, sheep_by_slot: np.ndarray, sheep_eaten: np.ndarray, width: int):
    """A counting sort of the sheep by cell: the sheep of cell c are sheep_by_slot[k] for
    sheep_cell_start[c] <= k < sheep_cell_start[c + 1]. Raises ValueError when the arrays hold
    fewer sheep than there are (the driver resizes them before each step)."""
    n = ids.shape[0]
    if n > sheep_slots.shape[0]:
        raise ValueError("index_sheep: more sheep than the index arrays hold; resize them")
    for i in range(n):
        sheep_cells[i] = pos.y[i] * width + pos.x[i]
    spatial.sort_by_cell(sheep_cells[:n], sheep_cell_start, sheep_slots[:n])
    for k in range(n):
        sheep_by_slot[k] = ids[sheep_slots[k]]
        sheep_eaten[k] = 0


@system(with_=[Wolf], every=2, offset=1)
def wolf_step(pos: Mut[Position], energy: Mut[Energy], ids: Entity, cmd: ecs.Commands, frame: ecs.Frame,
              seed: int, width: int, height: int, wolf_gain_from_food: float, wolf_reproduce: float,
              wolf_prefab: int, sheep_cell_start: np.ndarray, sheep_by_slot: np.ndarray,
              sheep_eaten: np.ndarray):
    for i in activation_order(seed, frame, ids):
        x, y, e = walk(pos, energy, i, seed, ids[i], frame, width, height)
        cell = y * width + x
        prey = hunt(seed, ids[i], frame, sheep_cell_start[cell], sheep_cell_start[cell + 1], sheep_eaten)
        if prey >= 0:
            ecs.cmd_despawn(cmd, i, sheep_by_slot[prey])
            e += wolf_gain_from_food
        if e < 0.0:
            ecs.cmd_despawn(cmd, i, ids[i])
        elif random.uniform(seed, ids[i], frame, BREED) < wolf_reproduce:
            e /= 2.0
            give_birth(cmd, i, wolf_prefab, WOLF, x, y, e)
        energy.e[i] = e


@system(every=2, offset=1)
def grow_grass(grass: np.ndarray):
    for y in range(grass.shape[0]):
        for x in range(grass.shape[1]):
            if grass[y, x] > 0:
                grass[y, x] -= 1


# registration order is frame order within each phase
SYSTEMS = (sheep_step, clear_sheep_index, index_sheep, wolf_step, grow_grass)
