from __future__ import annotations

from collections.abc import Iterator

import pytest

import ecs


@pytest.fixture
def world() -> Iterator[ecs.World]:
    with ecs.World() as w:
        yield w
