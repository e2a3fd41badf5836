"""A component and a system for the leak tests' subprocesses; module level, so worker processes
can import them by module and name."""

from __future__ import annotations

from ecs import Mut, component, f32, system


@component
class Counter:
    value: f32


@system
def count_up(counter: Mut[Counter]):
    for i in range(counter.value.shape[0]):
        counter.value[i] += 1.0
