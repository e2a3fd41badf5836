"""examples/physics_demo.py: the same seed gives bit-identical worlds on any worker count, and the
physics stays sane (count kept, nobody outside the box, elastic energy kept, change tracking
touches only the collided and spawned rows)."""

from __future__ import annotations

import numpy as np
import pytest

from examples import physics_demo
from examples.physics_demo import Config, simulate

SMALL = Config(entities=6_000, frames=60, seed=3)


@pytest.fixture(scope="module")
def on_main_process() -> physics_demo.Result:
    return simulate(Config(**{**SMALL.__dict__, "workers": 0}))


def test_same_seed_is_bit_identical_on_zero_and_two_workers(on_main_process) -> None:
    # 6,000 rows is below the plan's split threshold: also run a table big enough to be split
    two = simulate(Config(**{**SMALL.__dict__, "workers": 2}))
    np.testing.assert_array_equal(two.positions, on_main_process.positions)
    assert two.recycled == on_main_process.recycled > 0


def test_split_collisions_are_bit_identical_to_one_process() -> None:
    # above SPLIT_MIN_ROWS, so collide is split; the emitter between every two frames
    config = Config(entities=70_000, frames=8, seed=4, emit_every=1)
    zero = simulate(Config(**{**config.__dict__, "workers": 0}))
    two = simulate(Config(**{**config.__dict__, "workers": 2}))
    np.testing.assert_array_equal(two.positions, zero.positions)


def test_another_seed_gives_another_world(on_main_process) -> None:
    other = simulate(Config(**{**SMALL.__dict__, "workers": 0, "seed": 4}))
    assert not np.array_equal(other.positions, on_main_process.positions)


def test_physics_stays_sane(on_main_process) -> None:
    result = on_main_process
    assert result.entities == SMALL.entities
    assert result.outside == 0
    assert abs(result.energy_drift) < 1e-3          # elastic: only the time step's error is left
    assert np.isfinite(result.positions).all()


def test_change_driven_tally_visits_only_marked_rows(on_main_process) -> None:
    stats = on_main_process.stats
    tally = stats["tally_contacts"]
    assert 0 < on_main_process.contact_rows <= tally["rows"] < stats["collide"]["rows"] // 5


def test_inelastic_run_loses_energy() -> None:
    result = simulate(Config(**{**SMALL.__dict__, "workers": 0, "restitution": 0.5}))
    assert result.energy_drift < -1e-3
    assert result.outside == 0


def test_images_are_written(on_main_process, tmp_path) -> None:
    pytest.importorskip("PIL")
    scene = physics_demo.Scene(SMALL.entities)
    image = physics_demo.render(*on_main_process.positions, scene, width_px=320)
    assert image.shape == (200, 320, 3) and image.max() > 0
    paths = physics_demo.save_images(on_main_process, scene, tmp_path, gif=False)
    assert [p.name for p in paths] == ["physics_final.png"] and paths[0].stat().st_size > 1000
