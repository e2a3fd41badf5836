"""Components and systems of the "structural" scenario, at module level (importable by name)."""

from __future__ import annotations

import numpy as np

import ecs
from ecs import Entity, Mut, component, f32, system


@component
class Data:
    value: f32


@component
class Tagged:
    pass


@component
class Matrix:
    m: f32[4, 4]


@component
class Speed:
    x: f32
    y: f32


@component
class Place:
    x: f32
    y: f32


@component
class Spin:
    a: f32


FRAGMENT_TAGS = [component(type(name, (), {"__module__": __name__, "__qualname__": name}))
                 for name in (f"Frag{chr(65 + k)}" for k in range(26))]
for _tag in FRAGMENT_TAGS:
    globals()[_tag.__name__] = _tag

TAGGED = ecs.component_key(Tagged)


@system
def double_data(data: Mut[Data]):
    for i in range(data.value.shape[0]):
        data.value[i] *= np.float32(2.0)


@system
def tag_all(data: Data, ids: Entity, cmd: ecs.Commands):
    for i in range(ids.shape[0]):
        ecs.cmd_add(cmd, i, ids[i], TAGGED)


@system
def untag_all(tag: Tagged, ids: Entity, cmd: ecs.Commands):
    for i in range(ids.shape[0]):
        ecs.cmd_remove(cmd, i, ids[i], TAGGED)
