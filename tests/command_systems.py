"""Components and systems for tests/test_commands.py and tests/test_removed.py: module level, so
worker processes import them by module and name. Keys are module-level constants, the same in
every process (ecs.component_key / ecs.field_key hash the component's qualified name)."""

from __future__ import annotations

import numpy as np

import ecs
from ecs import Commands, Entity, Mut, Removed, component, f32, i32, i64, system, u8, u64


@component
class Life:
    t: i32
    victim: i64 = 0        # an id this entity despawns when it dies; may be dead already, or 0


@component
class Spot:
    x: f32
    y: f32 = 0.0


@component
class Color:
    rgb: u8[3]


@component
class Heat:
    deg: i32 = 7


@component
class Armor:               # no default: cmd_add cannot make one
    level: u8


@component
class Template:            # the prefab's marker; systems skip it, children remove it
    pass


@component
class Burning:
    pass


@component
class Wet:
    pass


@component
class Tally:               # a uint64 field: cmd_set of a uint64 value past 2^63
    n: u64 = 0


COMPONENTS = (Life, Spot, Color, Heat, Armor, Template, Burning, Wet)

TEMPLATE = ecs.component_key(Template)
BURNING = ecs.component_key(Burning)
WET = ecs.component_key(Wet)
HEAT = ecs.component_key(Heat)
ARMOR = ecs.component_key(Armor)
LIFE_T = ecs.field_key(Life, "t")
LIFE_VICTIM = ecs.field_key(Life, "victim")
TALLY_N = ecs.field_key(Tally, "n")
SPOT_X = ecs.field_key(Spot, "x")
SPOT_Y = ecs.field_key(Spot, "y")
ARMOR_LEVEL = ecs.field_key(Armor, "level")


# ---------------------------------------------------------------- the multi-frame scenario
@system(without=[Template])
def lifecycle(life: Mut[Life], spot: Spot, ids: Entity, cmd: Commands, prefab: int):
    """Long-lived entities (t >= 50) only age. Short-lived ones, when t reaches 0: despawn
    themselves (twice) and their victim (maybe dead already), and spawn a child from the prefab
    whose fields are set and whose Template is swapped for Wet (several commands, one entity).
    Every value depends on the entity, never on the slice-local row."""
    for i in range(life.t.shape[0]):
        life.t[i] -= 1
        t = life.t[i]
        if t >= 50:
            continue
        if t <= 0:
            ecs.cmd_despawn(cmd, i, ids[i])
            ecs.cmd_despawn(cmd, i, ids[i])
            ecs.cmd_despawn(cmd, i, life.victim[i])
            child = ecs.cmd_spawn(cmd, i, prefab)
            ecs.cmd_set(cmd, i, child, LIFE_T, 3 + ids[i] % 9)
            ecs.cmd_set(cmd, i, child, LIFE_VICTIM, ids[i])
            ecs.cmd_set(cmd, i, child, SPOT_X, spot.x[i] + 0.5)
            ecs.cmd_remove(cmd, i, child, TEMPLATE)
            ecs.cmd_add(cmd, i, child, WET)
        elif t % 4 == 1:
            ecs.cmd_add(cmd, i, ids[i], BURNING)
            ecs.cmd_add(cmd, i, ids[i], HEAT)
            ecs.cmd_add(cmd, i, ids[i], WET)
            ecs.cmd_remove(cmd, i, ids[i], WET)     # the later command for the same component wins
        elif t % 4 == 3:
            ecs.cmd_remove(cmd, i, ids[i], BURNING)
            ecs.cmd_set(cmd, i, ids[i], SPOT_Y, spot.y[i] - 1.0)


@system
def cool(heat: Mut[Heat], life: Life, ids: Entity, cmd: Commands):
    """Heat (added by commands with its default) cools; at 0 it is swapped for Wet. An entity
    about to die is despawned here too: two systems despawn it in one frame."""
    for i in range(heat.deg.shape[0]):
        heat.deg[i] -= 2
        if heat.deg[i] <= 0:
            ecs.cmd_remove(cmd, i, ids[i], HEAT)
            ecs.cmd_add(cmd, i, ids[i], WET)
        if life.t[i] <= 0:
            ecs.cmd_despawn(cmd, i, ids[i])


SCENARIO_SYSTEMS = (lifecycle, cool)


# ---------------------------------------------------------------- single-purpose systems
@system
def despawn_odd(life: Life, ids: Entity, cmd: Commands):
    for i in range(life.t.shape[0]):
        if life.t[i] % 2 == 1:
            ecs.cmd_despawn(cmd, i, ids[i])


@system
def despawn_victims(life: Life, ids: Entity, cmd: Commands):
    """Despawns each entity's victim, whether or not it is still alive."""
    for i in range(life.t.shape[0]):
        ecs.cmd_despawn(cmd, i, life.victim[i])


@system(without=[Template])
def spawn_children(life: Life, spot: Spot, ids: Entity, cmd: Commands, prefab: int):
    """One child per entity: a copy of the prefab with t, victim and x set, Template removed."""
    for i in range(life.t.shape[0]):
        child = ecs.cmd_spawn(cmd, i, prefab)
        ecs.cmd_set(cmd, i, child, LIFE_T, life.t[i] * 10)
        ecs.cmd_set(cmd, i, child, LIFE_VICTIM, ids[i])
        ecs.cmd_set(cmd, i, child, SPOT_X, spot.x[i] + 0.25)
        ecs.cmd_remove(cmd, i, child, TEMPLATE)


@system(without=[Template])
def keep_child_placeholder(life: Mut[Life], cmd: Commands, prefab: int):
    """Spawns a child per entity and keeps its placeholder as the entity's victim: a misuse (a
    placeholder is no id), which despawn_victims then hands to cmd_despawn from another system."""
    for i in range(life.t.shape[0]):
        life.victim[i] = ecs.cmd_spawn(cmd, i, prefab)


@system
def set_all(life: Life, ids: Entity, cmd: Commands, key: int, value):
    """Sets field `key` of every entity to `value` by cmd_set (`value` of any numeric type)."""
    for i in range(life.t.shape[0]):
        ecs.cmd_set(cmd, i, ids[i], key, value)


@system(with_=[Burning])
def wet_burning(life: Life, ids: Entity, cmd: Commands):
    """Wet to every burning entity (a no-op for those that have it)."""
    for i in range(life.t.shape[0]):
        ecs.cmd_add(cmd, i, ids[i], WET)


@system(with_=[Wet])
def burn_wet(life: Life, ids: Entity, cmd: Commands):
    """Burning to every wet entity (a no-op for those that have it)."""
    for i in range(life.t.shape[0]):
        ecs.cmd_add(cmd, i, ids[i], BURNING)


@system
def spawn_alternately(life: Life, cmd: Commands, first: int, second: int):
    """A copy of `first` from even rows and of `second` from odd rows."""
    for i in range(life.t.shape[0]):
        ecs.cmd_spawn(cmd, i, first if i % 2 == 0 else second)


HEAT_DEG = ecs.field_key(Heat, "deg")


@system(without=[Template])
def spawn_with_adds(life: Life, ids: Entity, cmd: Commands, prefab: int):
    """Per row t, one child of the prefab with victim = the row's entity, and: t == 1: Heat added
    (its default); t == 2: Heat and Burning added; t == 3: Heat added twice, Burning added and
    removed; t == 4: Template removed; t == 5: nothing more; t == 6: Heat added, then despawned."""
    for i in range(life.t.shape[0]):
        t = life.t[i]
        child = ecs.cmd_spawn(cmd, i, prefab)
        ecs.cmd_set(cmd, i, child, LIFE_VICTIM, ids[i])
        if t == 1 or t == 2 or t == 3 or t == 6:
            ecs.cmd_add(cmd, i, child, HEAT)
        if t == 2 or t == 3:
            ecs.cmd_add(cmd, i, child, BURNING)
        if t == 3:
            ecs.cmd_add(cmd, i, child, HEAT)
            ecs.cmd_remove(cmd, i, child, BURNING)
        if t == 4:
            ecs.cmd_remove(cmd, i, child, TEMPLATE)
        if t == 6:
            ecs.cmd_despawn(cmd, i, child)


@system(without=[Template])
def spawn_heated(life: Life, ids: Entity, cmd: Commands, prefab: int):
    """One child of the prefab per row, with victim = the row's entity and Heat added (its
    default): every copy of the prefab takes the same added component."""
    for i in range(life.t.shape[0]):
        child = ecs.cmd_spawn(cmd, i, prefab)
        ecs.cmd_set(cmd, i, child, LIFE_VICTIM, ids[i])
        ecs.cmd_add(cmd, i, child, HEAT)


@system
def heat_the_prefab_copy(life: Life, heat: Heat, ids: Entity, cmd: Commands):
    """One child of each entity (they hold Heat) with Heat.deg set to 3, then Heat added: the add
    after the set gives Heat its default again, as changes follow sets."""
    for i in range(life.t.shape[0]):
        child = ecs.cmd_spawn(cmd, i, ids[i])
        ecs.cmd_set(cmd, i, child, HEAT_DEG, 3)
        ecs.cmd_add(cmd, i, child, HEAT)


@system(without=[Template])
def toggle_tags(life: Life, ids: Entity, cmd: Commands):
    """t == 1: add Burning and Wet; t == 2: remove Burning; t == 3: add Burning, add Heat and
    remove Wet; t == 4: remove a tag the entity does not have (no error, no move)."""
    for i in range(life.t.shape[0]):
        t = life.t[i]
        if t == 1:
            ecs.cmd_add(cmd, i, ids[i], BURNING)
            ecs.cmd_add(cmd, i, ids[i], WET)
        elif t == 2:
            ecs.cmd_remove(cmd, i, ids[i], BURNING)
        elif t == 3:
            ecs.cmd_add(cmd, i, ids[i], BURNING)
            ecs.cmd_add(cmd, i, ids[i], HEAT)
            ecs.cmd_remove(cmd, i, ids[i], WET)
        elif t == 4:
            ecs.cmd_remove(cmd, i, ids[i], BURNING)


@system
def set_x_twice(spot: Spot, ids: Entity, cmd: Commands):
    for i in range(spot.x.shape[0]):
        ecs.cmd_set(cmd, i, ids[i], SPOT_X, 1.0)
        ecs.cmd_set(cmd, i, ids[i], SPOT_X, 2.0)


@system
def set_x_later(spot: Spot, ids: Entity, cmd: Commands):
    for i in range(spot.x.shape[0]):
        ecs.cmd_set(cmd, i, ids[i], SPOT_X, 3.0)


@system
def add_armor(life: Life, ids: Entity, cmd: Commands):
    for i in range(life.t.shape[0]):
        ecs.cmd_despawn(cmd, i, ids[i])
        if i == 0:
            ecs.cmd_add(cmd, i, ids[i], ARMOR)


@system
def bad_set(life: Life, ids: Entity, cmd: Commands, value: float, key: int):
    """Despawns every entity, spawns... and writes `value` into field `key` of the first one."""
    for i in range(life.t.shape[0]):
        ecs.cmd_despawn(cmd, i, ids[i])
        ecs.cmd_add(cmd, i, ids[i], BURNING)
        if i == 0:
            ecs.cmd_set(cmd, i, ids[i], key, value)


@system
def touch_life(life: Mut[Life]):
    for i in range(life.t.shape[0]):
        life.t[i] += 100


# ---------------------------------------------------------------- removed= readers
# Each reader appends the ids it is given to its own resource log: log[0] is the count.
@system(removed=[Heat])
def removed_every_1(gone: Removed, log1: np.ndarray):
    for k in range(gone.shape[0]):
        log1[0] += 1
        log1[log1[0]] = gone[k]


@system(removed=[Heat], every=2)
def removed_every_2(gone: Removed, log2: np.ndarray):
    for k in range(gone.shape[0]):
        log2[0] += 1
        log2[log2[0]] = gone[k]


@system(removed=[Heat], every=3)
def removed_every_3(gone: Removed, log3: np.ndarray):
    for k in range(gone.shape[0]):
        log3[0] += 1
        log3[log3[0]] = gone[k]


REMOVED_READERS = (removed_every_1, removed_every_2, removed_every_3)


@system
def fail_before_readers(fail: np.ndarray, log1: np.ndarray):
    """Raises while fail[0] is set; writes log1, so it runs before removed_every_1 on any worker."""
    if fail[0]:
        raise ValueError("asked to fail")
    log1[0] += 0


@system(removed=[Heat])
def removed_then_fail(gone: Removed, log2: np.ndarray, fail: np.ndarray):
    for k in range(gone.shape[0]):
        log2[0] += 1
        log2[log2[0]] = gone[k]
    if fail[0]:
        raise ValueError("asked to fail")


@system
def drop_heat(heat: Heat, life: Life, ids: Entity, cmd: Commands):
    """Removes Heat from entities with t % 5 == 0 and despawns those with t % 5 == 1 (commands)."""
    for i in range(heat.deg.shape[0]):
        if life.t[i] % 5 == 0:
            ecs.cmd_remove(cmd, i, ids[i], HEAT)
        elif life.t[i] % 5 == 1:
            ecs.cmd_despawn(cmd, i, ids[i])


@system(removed=[Heat])
def respawn_removed(gone: Removed, cmd: Commands, prefab: int):
    """A removed= system issuing commands: one prefab copy per id that lost Heat."""
    for k in range(gone.shape[0]):
        child = ecs.cmd_spawn(cmd, k, prefab)
        ecs.cmd_set(cmd, k, child, LIFE_VICTIM, gone[k])


@system
def spawn_then_fail(life: Life, ids: Entity, cmd: Commands, prefab: int, fail: bool):
    """Queues one prefab copy per row, then raises when `fail`: the frame's commands must not
    leak into the next frame."""
    for i in range(life.t.shape[0]):
        ecs.cmd_spawn(cmd, i, prefab)
    if fail:
        raise ValueError("failing after queueing commands")


@system
def drop_heat_and_burn_even(heat: Heat, life: Life, ids: Entity, cmd: Commands):
    """Removes Heat from every entity; those with an even t also gain Burning (two changes of
    one entity: applied in a move of their own, after the batch of single changes)."""
    for i in range(heat.deg.shape[0]):
        ecs.cmd_remove(cmd, i, ids[i], HEAT)
        if life.t[i] % 2 == 0:
            ecs.cmd_add(cmd, i, ids[i], BURNING)


@system
def burn_first_then_drop_heat(life: Life, ids: Entity, cmd: Commands):
    """Records in row order: row 0 adds Burning to the first entity, row 1 removes the second's
    Heat, row 2 removes the first's Heat (the first entity's changes are two records apart)."""
    if ids.shape[0] == 3:
        ecs.cmd_add(cmd, 0, ids[0], BURNING)
        ecs.cmd_remove(cmd, 1, ids[1], HEAT)
        ecs.cmd_remove(cmd, 2, ids[0], HEAT)
