"""Components and systems of the "structural" scenario, at module level (importable by name)."""

from __future__ import annotations

import numpy as np

import ecs
from ecs import Entity, Mut, component, f32, system
from ecs.kernels._jit import compiled_entry, jit


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


@jit(nogil=False)
def flip_byte(arena, entity, component):
    """The floor kernel: what one compiled call per op does at the least (one byte touched)."""
    arena[(entity + component) & 0xFFFF] ^= 1
    return True


class CallFloor:
    """The least a World.add/remove that makes one compiled call per op can cost: a method that
    takes `*components` like World.add, one dict lookup by type, one call of a kernel's compiled
    entry (an array and two ints; World's paths pass two arrays and four), nothing else: no id
    check, no table lookup, no row counts."""

    def __init__(self, component: type) -> None:
        self._arena = np.zeros(1 << 16, np.uint8)
        self._paths = {component: compiled_entry(flip_byte, self._arena, 1, 1)}

    def add(self, entity: int, *components: object) -> None:
        if len(components) == 1:
            path = self._paths.get(type(components[0]))
            if path is not None and path(self._arena, entity, 1):
                return
        raise KeyError(components)

    def remove(self, entity: int, *components: type) -> None:
        if len(components) == 1:
            path = self._paths.get(components[0])
            if path is not None and path(self._arena, entity, 1):
                return
        raise KeyError(components)
