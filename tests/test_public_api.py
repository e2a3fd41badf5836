"""The public surface of `ecs`: a sorted, pinned `__all__` and the exception tree of API.md."""

from __future__ import annotations

import pytest

import ecs

PINNED_ALL = [
    "ArgumentTypeError",
    "Batch",
    "CapacityError",
    "CommandError",
    "Commands",
    "ComponentValueError",
    "ConcurrentUseError",
    "DeadEntityError",
    "Deferred",
    "EcsError",
    "Entity",
    "Frame",
    "InvalidArgumentError",
    "InvalidNameError",
    "KernelError",
    "MissingComponentError",
    "Mut",
    "Query",
    "ReadOnlyError",
    "Recorder",
    "Removed",
    "Rows",
    "SchemaError",
    "SnapshotError",
    "System",
    "SystemDefinitionError",
    "WorkerCrashedError",
    "World",
    "WorldClosedError",
    "bool_",
    "cmd_add",
    "cmd_despawn",
    "cmd_remove",
    "cmd_set",
    "cmd_spawn",
    "component",
    "component_key",
    "ensemble",
    "f32",
    "f64",
    "field_key",
    "i16",
    "i32",
    "i64",
    "i8",
    "mark_changed",
    "system",
    "u16",
    "u32",
    "u64",
    "u8",
]

# API.md, "Errors": error -> the builtin it also is
ERRORS = {
    "SchemaError": TypeError,
    "ComponentValueError": ValueError,
    "DeadEntityError": LookupError,
    "MissingComponentError": LookupError,
    "SystemDefinitionError": TypeError,
    "KernelError": RuntimeError,
    "WorkerCrashedError": RuntimeError,
    "WorldClosedError": RuntimeError,
    "SnapshotError": ValueError,
    "CapacityError": MemoryError,
    "CommandError": ValueError,
    "InvalidArgumentError": ValueError,
    "ArgumentTypeError": TypeError,
    "InvalidNameError": KeyError,
    "ReadOnlyError": AttributeError,
    "ConcurrentUseError": RuntimeError,
}

# Names API.md's Components, World, Queries, Resources, Systems and Results sections import from ecs
API_NAMES = ["component", "f32", "f64", "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "bool_",
             "World", "Query", "Batch", "system", "Mut", "Rows", "Entity", "mark_changed", "EcsError",
             "ensemble", *ERRORS]


def test_all_is_sorted_and_pinned() -> None:
    assert ecs.__all__ == sorted(ecs.__all__)
    assert ecs.__all__ == PINNED_ALL


def test_every_name_in_all_exists_and_star_import_gives_exactly_them() -> None:
    namespace: dict = {}
    exec("from ecs import *", namespace)  # noqa: S102
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(ecs.__all__)
    for name in ecs.__all__:
        assert getattr(ecs, name) is namespace[name]


@pytest.mark.parametrize("name", API_NAMES)
def test_every_name_the_api_uses_is_public(name: str) -> None:
    assert name in ecs.__all__


@pytest.mark.parametrize(("name", "builtin"), list(ERRORS.items()))
def test_every_error_is_an_ecs_error_and_the_builtin_a_caller_would_catch(name: str, builtin: type) -> None:
    error = getattr(ecs, name)
    assert issubclass(error, ecs.EcsError)
    assert issubclass(error, builtin)
    assert error.__module__ == "ecs.errors"


def test_ecs_error_is_an_exception() -> None:
    assert issubclass(ecs.EcsError, Exception)
    assert issubclass(ecs.SnapshotError, ecs.EcsError)
