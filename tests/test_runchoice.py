"""RunChoice (ecs/runchoice.py): which way a run goes, from the times it is told."""

from __future__ import annotations

from ecs.runchoice import CHANGED, EXPLORE_EVERY, LOOK_RUNS, SHARE_MARGIN, RunChoice

ROWS = 100_000
US = 1e-6
HERE, THERE = LOOK_RUNS[False], LOOK_RUNS[True]     # runs of a look here, on the workers


def run(choice: RunChoice, here_s: float, there_s: float, frames: int = 1, scale: int = ROWS) -> bool:
    """Ask, then report the run as taking the time of the way chosen; returns the way."""
    shared = choice.share(frames, scale)
    choice.note(frames, shared, (there_s if shared else here_s) * frames)
    return shared


def settled(here_s: float, there_s: float) -> RunChoice:
    choice = RunChoice()
    for _ in range(HERE + THERE):   # a look at each way (its first run after a switch is no sample)
        run(choice, here_s, there_s)
    return choice


def test_each_way_is_looked_at_here_first_then_the_faster_is_taken() -> None:
    choice = RunChoice()
    looks = [False] * HERE + [True] * THERE
    assert [run(choice, 25 * US, 67 * US) for _ in range(HERE + THERE + 5)] == looks + [False] * 5
    choice = RunChoice()
    assert [run(choice, 250 * US, 200 * US) for _ in range(HERE + THERE + 5)] == looks + [True] * 5


def test_the_workers_are_judged_by_their_fastest_runs_here_by_the_median() -> None:
    choice = RunChoice()
    times = iter([17_000, 6_300, 2_500, 1_400, 1_300, 1_350])    # the workers warming up
    for _ in range(HERE + THERE):
        shared = choice.share(1, ROWS)
        choice.note(1, shared, next(times) * US if shared else 2_100 * US)
    assert run(choice, 2_100 * US, 1_300 * US)
    choice.note(1, True, 40_000 * US)
    assert run(choice, 2_100 * US, 1_300 * US)


def test_the_workers_keep_runs_until_this_process_is_the_margin_faster() -> None:
    just_inside = settled(here_s=100 * US, there_s=SHARE_MARGIN * 100 * US * 0.99)
    assert run(just_inside, 100 * US, SHARE_MARGIN * 100 * US * 0.99)
    outside = settled(here_s=100 * US, there_s=SHARE_MARGIN * 100 * US * 1.01)
    assert not run(outside, 100 * US, SHARE_MARGIN * 100 * US * 1.01)


def test_a_look_runs_the_other_way_and_the_interval_doubles_while_the_choice_holds() -> None:
    choice = settled(here_s=25 * US, there_s=67 * US)
    ways = [run(choice, 25 * US, 67 * US) for _ in range(3 * EXPLORE_EVERY + 2 * THERE)]
    looks = [k for k in range(1, len(ways)) if ways[k] and not ways[k - 1]]
    assert all(ways[k:k + THERE] == [True] * THERE and not ways[k + THERE] for k in looks)
    assert looks[1] - looks[0] == THERE - 1 + 2 * EXPLORE_EVERY


def test_one_slow_run_does_not_turn_the_choice() -> None:
    choice = settled(here_s=25 * US, there_s=67 * US)
    choice.note(1, False, 5_000 * US)     # preempted once
    assert not run(choice, 25 * US, 67 * US)


def test_a_way_that_became_slower_brings_the_next_look_forward() -> None:
    choice = settled(here_s=25 * US, there_s=67 * US)
    for _ in range(3):
        assert not run(choice, 25 * US, 67 * US)
    slower = 25 * US * CHANGED * 1.1
    ways = [run(choice, slower, 30 * US) for _ in range(5 + THERE)]
    assert True in ways[:5]                # long before EXPLORE_EVERY choices
    assert ways[-1]                        # and the look's samples alone turned the choice


def test_step_and_long_runs_are_chosen_apart() -> None:
    choice = settled(here_s=25 * US, there_s=67 * US)
    ways = [run(choice, 250 * US, 20 * US, frames=10) for _ in range(HERE + THERE + 1)]
    assert ways == [False] * HERE + [True] * (THERE + 1)
    assert not run(choice, 25 * US, 67 * US)


def test_a_change_of_the_work_s_size_starts_afresh() -> None:
    choice = settled(here_s=25 * US, there_s=67 * US)
    assert not run(choice, 25 * US, 67 * US, scale=int(ROWS * 1.2))         # within RESCALE: kept
    ways = [run(choice, 250 * US, 200 * US, scale=10 * ROWS) for _ in range(HERE + THERE + 1)]
    assert ways == [False] * HERE + [True] * (THERE + 1)       # both ways looked at again
