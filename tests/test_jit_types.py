"""kernels/_jit.argument_type: numba.typeof, remembered by a key of what the type depends on. A
key that missed a property would hand a compiled entry arrays of another type (it unboxes them
unchecked), so every case here compares with numba.typeof, twice (the second from the memo)."""

from __future__ import annotations

from collections import namedtuple

import numba
import numpy as np
import pytest

from ecs.kernels._jit import argument_type

Pair = namedtuple("Pair", "x n")
Other = namedtuple("Other", "x n")   # same items, another class: another numba type


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


CASES = {
    "f32": np.zeros(10, np.float32),
    "strided": np.zeros(10, np.float32)[::2],
    "2-D C": np.zeros((3, 4)),
    "2-D F": np.zeros((3, 4)).T,
    "2-D A": np.zeros((3, 4))[:, :2],
    "one column": np.zeros((4, 1)),
    "empty": np.zeros(0),
    "read-only": _read_only(np.zeros(4)),
    "buffer": np.frombuffer(b"abcd", np.uint8),
    "bool": np.zeros(2, np.bool_),
    "complex": np.zeros(2, np.complex64),
    "structured": np.zeros(3, [("a", "f4"), ("b", "i8")]),
    "namedtuple": Pair(np.zeros(3), 5),
    "namedtuple, other class": Other(np.zeros(3), 5),
    "namedtuple, uint64 int": Pair(np.zeros(3), 2**63),
    "tuple": (np.zeros(3, np.int8), 1.5),
    "empty tuple": (),
    "int": 7,
    "large int": 2**64 - 1,
    "float": 1.5,
    "numpy scalar": np.float32(1),
    "bool scalar": True,
}


@pytest.mark.parametrize("name", CASES)
def test_argument_type_is_numbas_type(name: str) -> None:
    value = CASES[name]
    for _ in range(2):
        assert argument_type(value) == numba.typeof(value)


def test_an_array_changed_in_place_gets_its_new_type() -> None:
    array = np.zeros(8)
    assert argument_type(array) == numba.typeof(array)
    array.flags.writeable = False
    assert argument_type(array) == numba.typeof(array) and not argument_type(array).mutable


def test_what_numba_cannot_type_raises_numbas_error_each_time() -> None:
    for _ in range(2):
        with pytest.raises(numba.core.errors.NumbaValueError, match=r"Unsupported array dtype: >f4"):
            argument_type(np.zeros(3, ">f4"))
