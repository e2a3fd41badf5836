"""The agent-model examples: short runs that are bit-identical on 0 and 2 workers and behave like
their models (examples/wolf_sheep.py, examples/flocking.py)."""

from __future__ import annotations

import numpy as np
import pytest

from examples import flocking, physics_demo, wolf_sheep


# ---------------------------------------------------------------- WolfSheep
@pytest.fixture(scope="module")
def sheep_on_main_process() -> wolf_sheep.Result:
    return wolf_sheep.simulate(wolf_sheep.Config(steps=30, seed=3, workers=0))


def test_wolf_sheep_is_bit_identical_on_zero_and_two_workers(sheep_on_main_process) -> None:
    # the step_timeout sends every run to the workers (the model's tables are too small to be shared else)
    two = wolf_sheep.simulate(wolf_sheep.Config(steps=30, seed=3, workers=2, step_timeout=60.0))
    assert wolf_sheep.same_result(two, sheep_on_main_process)


def test_wolf_sheep_records_every_step_from_its_systems(sheep_on_main_process) -> None:
    populations = sheep_on_main_process.populations
    assert populations.shape == (31, 3)
    assert populations[0].tolist()[:2] == [1000, 500]
    assert (populations[1:, :2] > 0).all()             # nobody died out in 30 steps
    assert populations[-1, 0] == sheep_on_main_process.sheep.shape[0]
    assert populations[-1, 1] == sheep_on_main_process.wolves.shape[0]
    # the wolves' overshoot of the first steps: they eat, breed and pass 500
    assert populations[:, 1].max() > 530


def test_wolf_sheep_agents_stay_on_the_torus_with_energy_left(sheep_on_main_process) -> None:
    for table in (sheep_on_main_process.sheep, sheep_on_main_process.wolves):
        assert ((table[:, 1] >= 0) & (table[:, 1] < 100) & (table[:, 2] >= 0) & (table[:, 2] < 100)).all()
        assert (table[:, 3] >= 0).all()                  # below 0 they died
        assert len(np.unique(table[:, 0])) == table.shape[0]


def test_wolf_sheep_bands_flag_a_model_whose_wolves_never_breed() -> None:
    broken = wolf_sheep.simulate(wolf_sheep.Config(steps=100, wolf_reproduce=0.0))
    failed = [name for name, _, _, inside in wolf_sheep.check_bands(broken.populations) if not inside]
    assert failed == ["wolf peak (steps 1-100)"]


def test_the_hand_batched_wolf_sheep_of_the_benchmark_is_the_same_model() -> None:
    """The baseline the models benchmark times the commands version against: buffers applied by
    despawn_batch/spawn_batch from Python. Its trajectories differ (newborns' ids, so their
    random draws), but on the default model it stays in the example's bands."""
    from tests.benchmarks import wolf_sheep_batched

    for seed in (0, 1):
        result = wolf_sheep_batched.simulate(wolf_sheep.Config(seed=seed))
        assert [name for name, _, _, inside in wolf_sheep.check_bands(result.populations) if not inside] == []
        assert result.populations[0].tolist()[:2] == [1000, 500]


# ---------------------------------------------------------------- Flocking
def test_flocking_split_across_two_workers_is_bit_identical() -> None:
    config = flocking.Config(birds=70_000, steps=3, seed=1)      # above the split threshold: flock is split
    zero = flocking.simulate(config)
    two = flocking.simulate(flocking.Config(**{**config.__dict__, "workers": 2, "step_timeout": 60.0}))
    np.testing.assert_array_equal(two.birds, zero.birds)


def test_flocking_refuses_a_square_narrower_than_twice_the_visual_distance(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        flocking.parse_args(["--birds", "15"])
    assert "--birds must be >= 16" in capsys.readouterr().err
    assert flocking.parse_args(["--birds", "16"]).birds == 16


def test_flocking_keeps_unit_headings_in_the_square_and_aligns_the_birds() -> None:
    result = flocking.simulate(flocking.Config(steps=60, seed=2))
    birds = result.birds
    np.testing.assert_allclose(np.hypot(birds[:, 3], birds[:, 4]), 1.0, atol=1e-12)
    assert ((birds[:, 1:3] >= 0) & (birds[:, 1:3] < 150.0)).all()
    assert result.alignment_after > result.alignment_before + 0.05     # measured: 0.24 -> 0.33 (0.55 at 200 steps)


@pytest.mark.parametrize(("argv", "message"), [
    (["--workers", "abc"], "argument --workers: 'abc': expected an int >= 0 or 'auto'"),
    (["--workers", "-1"], "argument --workers: '-1': expected an int from 0 to 1024 or 'auto'"),
    (["--workers", "100000"], "expected an int from 0 to 1024 or 'auto'"),
    (["--seed", "99999999999999999999"], "argument --seed: '99999999999999999999': expected an int from 0 to 2**63"),
    (["--seed", "x"], "argument --seed: 'x': expected an int"),
])
@pytest.mark.parametrize("example", [flocking, wolf_sheep, physics_demo], ids=lambda m: m.__name__.split(".")[-1])
def test_the_examples_refuse_bad_flags_with_a_usage_error(example, argv: list[str], message: str,
                                                          capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        example.parse_args(argv)
    assert message in capsys.readouterr().err
    assert example.parse_args(["--workers", "auto", "--seed", str(2**63 - 1)]).workers == "auto"


def test_flocking_refuses_more_birds_than_a_table_holds(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        flocking.parse_args(["--birds", "100000000000"])
    assert "--birds 100000000000: at most 33,554,432" in capsys.readouterr().err
