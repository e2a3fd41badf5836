"""Checked component values: what the store's callers hand it.

`values_of` reads a component value (schema.py built and checked its arrays when it was made);
`parts_of` does so for the values of one call, refusing a component given twice. A `Part` is one
such value: its info, one converted array per field, and its batch length (None for scalars).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .errors import ArgumentTypeError, ComponentValueError
from .schema import ComponentInfo, is_component

Values = dict[str, np.ndarray]


class Part(NamedTuple):
    """One checked component value: its info, a converted array per field, and its batch length
    (None for scalars)."""

    info: ComponentInfo
    values: Values
    length: int | None


def values_of(value: object) -> tuple[ComponentInfo, Values, int | None]:
    """(info, converted field arrays, batch length or None) of a component value."""
    info = getattr(type(value), "__ecs_component__", None)
    if not isinstance(info, ComponentInfo) or info.cls is not type(value):
        if is_component(value):
            name = getattr(value, "__name__", repr(value))
            raise ArgumentTypeError(f"{name} is a component class; pass a value such as {name}(...)")
        raise ArgumentTypeError(f"{value!r} is not a component value; declare its class with @ecs.component")
    return info, value._values, value._batch_len  # type: ignore[attr-defined]


def parts_of(call: str, components: tuple[object, ...]) -> list[Part]:
    """The Parts of one call's component values; ComponentValueError for a component given twice
    (`call`, such as "spawn" or "defer().add", names the call in the message)."""
    parts = []
    seen: set[int] = set()
    for value in components:
        info, values, length = values_of(value)
        if info.id in seen:
            raise ComponentValueError(info.name, None, value, f"{call}() got {info.name} twice")
        seen.add(info.id)
        parts.append(Part(info, values, length))
    return parts
