"""Components declared under postponed annotations: every annotation below is a string."""

from __future__ import annotations

import ecs
from ecs import component, f32, i64, u8


@component
class FuturePosition:
    x: f32
    y: f32 = 1.5


@component
class FutureTinted:
    rgb: u8[3]
    count: ecs.i32 = 7
    big: i64 = -(2**40)
