"""Components shared by the world, query, state-machine and memory tests."""

from __future__ import annotations

from ecs import component, f32, f64, i32, u8


@component
class Position:
    x: f32
    y: f32


@component
class Velocity:
    x: f32
    y: f32


@component
class Health:
    hp: i32 = 100


@component
class Tint:
    rgb: u8[3]


@component
class Mass:
    kg: f64 = 1.0


@component
class Frozen:
    pass


ALL = (Position, Velocity, Health, Tint, Mass, Frozen)


def plain(value: object) -> dict:
    """A component value as {field: python value or list}, for equality checks."""
    return {field: getattr(value, field).tolist() for field in type(value).fields}
