"""The WolfSheep model of examples/wolf_sheep.py written the other way, as a user would without
kernel commands: the phase kernels write deaths and births into resource buffers, and Python
applies them between frames with one `despawn_batch` and one `spawn_batch`. The baseline of
the "models" scenario's commands-against-hand-batched row (issue: <= 1.3x).

The rules, the random streams, the grass, the sheep index and the recorder are the example's;
only how births and deaths reach the world differs. Newborns get their ids in activation order
here (by commands: in row order), and the random draws are keyed by id, so the two runs of one
seed follow different (equally valid) trajectories: compare them over several seeds.
"""

from __future__ import annotations

import time

import numpy as np

import ecs
from ecs import Entity, Mut, system
from ecs.kernels import random
from ecs.kernels._jit import jit
from examples import wolf_sheep
from examples.wolf_sheep_systems import (
    BREED,
    Energy,
    Position,
    Sheep,
    Wolf,
    activation_order,
    clear_sheep_index,
    graze,
    grow_grass,
    hunt,
    index_sheep,
    walk,
)

DEATHS, BIRTHS = 0, 1     # entries of `tally`: how many of each the buffers hold


@jit
def buffer_death(deaths, tally, entity):
    deaths[tally[DEATHS]] = entity
    tally[DEATHS] += 1


@jit
def buffer_birth(births, tally, x, y, energy):
    k = tally[BIRTHS]
    births[k, 0] = x
    births[k, 1] = y
    births[k, 2] = energy
    tally[BIRTHS] += 1


@system(with_=[Sheep], every=2, offset=0)
def sheep_step_buffered(pos: Mut[Position], energy: Mut[Energy], ids: Entity, frame: ecs.Frame,
                        grass: np.ndarray, seed: int, sheep_gain_from_food: float, sheep_reproduce: float,
                        grass_regrowth_time: int, deaths: np.ndarray, births: np.ndarray, tally: np.ndarray):
    height, width = grass.shape
    for i in activation_order(seed, frame, ids):
        x, y, e = walk(pos, energy, i, seed, ids[i], frame, width, height)
        e = graze(grass, x, y, e, sheep_gain_from_food, grass_regrowth_time)
        if e < 0.0:
            buffer_death(deaths, tally, ids[i])
        elif random.uniform(seed, ids[i], frame, BREED) < sheep_reproduce:
            e /= 2.0
            buffer_birth(births, tally, x, y, e)
        energy.e[i] = e


@system(with_=[Wolf], every=2, offset=1)
def wolf_step_buffered(pos: Mut[Position], energy: Mut[Energy], ids: Entity, frame: ecs.Frame,
                       seed: int, width: int, height: int, wolf_gain_from_food: float, wolf_reproduce: float,
                       sheep_cell_start: np.ndarray, sheep_by_slot: np.ndarray, sheep_eaten: np.ndarray,
                       deaths: np.ndarray, births: np.ndarray, tally: np.ndarray):
    for i in activation_order(seed, frame, ids):
        x, y, e = walk(pos, energy, i, seed, ids[i], frame, width, height)
        cell = y * width + x
        prey = hunt(seed, ids[i], frame, sheep_cell_start[cell], sheep_cell_start[cell + 1], sheep_eaten)
        if prey >= 0:
            buffer_death(deaths, tally, sheep_by_slot[prey])
            e += wolf_gain_from_food
        if e < 0.0:
            buffer_death(deaths, tally, ids[i])
        elif random.uniform(seed, ids[i], frame, BREED) < wolf_reproduce:
            e /= 2.0
            buffer_birth(births, tally, x, y, e)
        energy.e[i] = e


SYSTEMS = (sheep_step_buffered, clear_sheep_index, index_sheep, wolf_step_buffered, grow_grass)


def build_world(config: wolf_sheep.Config) -> ecs.World:
    """The example's world (agents, grass, sheep index) with these systems and the buffers."""
    world = wolf_sheep.build_world(config)
    for s in wolf_sheep.SYSTEMS:
        world.remove_system(s)
    world.resources["deaths"] = np.zeros(1, np.int64)
    world.resources["births"] = np.zeros((1, 3), np.float64)
    world.resources["tally"] = np.zeros(2, np.int64)
    for s in SYSTEMS:
        world.add_system(s)
    return world


def apply_buffers(world: ecs.World, tag: type) -> None:
    """Despawn the buffered deaths, spawn the buffered births (of `tag`), empty the buffers."""
    resources = world.resources
    tally = resources["tally"]
    if tally[DEATHS]:
        world.despawn_batch(resources["deaths"][: tally[DEATHS]])
    if tally[BIRTHS]:
        born = resources["births"][: tally[BIRTHS]]
        world.spawn_batch(born.shape[0], Position(x=born[:, 0].astype(np.int32), y=born[:, 1].astype(np.int32)),
                          Energy(e=born[:, 2]), tag())
    tally[:] = 0


def ensure_buffers(world: ecs.World, agents: int) -> None:
    """Room for a frame's deaths and births: each agent dies, breeds or eats at most once."""
    if world.resources["deaths"].shape[0] < 2 * agents:
        size = max(2 * agents, 2 * world.resources["deaths"].shape[0])
        world.resources.resize("deaths", (size,))
        world.resources.resize("births", (size, 3))


def simulate(config: wolf_sheep.Config) -> wolf_sheep.Result:
    with build_world(config) as world:
        sheep, wolves = world.query(Sheep), world.query(Wolf)
        recorder = world.record(every=2, reductions=wolf_sheep.POPULATIONS)
        started = time.perf_counter()
        for _ in range(config.steps):
            count = sheep.count()
            wolf_sheep.ensure_sheep_capacity(world, count)
            ensure_buffers(world, count + wolves.count())
            world.step()                          # the sheep phase
            apply_buffers(world, Sheep)
            world.step()                          # the wolf phase
            apply_buffers(world, Wolf)
        seconds = time.perf_counter() - started
        samples = recorder.reductions_to_arrow()
        populations = np.column_stack([samples[name].to_numpy()
                                       for name in wolf_sheep.POPULATIONS]).astype(np.int64)
        return wolf_sheep.Result(populations, wolf_sheep.agents(world, Sheep), wolf_sheep.agents(world, Wolf),
                                 seconds)
