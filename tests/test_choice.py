"""The way a run goes (ecs/choice.py): here or on the workers, by what runs of its kind cost."""

from __future__ import annotations

from ecs.choice import MAX_KINDS, PROBE_EVERY, PROBE_EVERY_FAR, SHARED_FIRST, PathChoice

ROWS = 100_000


def decisions(choice: PathChoice, runs: int, frames: int = 1, rows: int = ROWS) -> list[bool]:
    return [choice.here_is_cheaper(frames, rows) for _ in range(runs)]


def learned(here_s: float, shared_s: float, frames: int = 1, rows: int = ROWS) -> PathChoice:
    choice = PathChoice()
    for _ in range(SHARED_FIRST):
        choice.note(frames, rows, True, shared_s * frames)
    choice.note(frames, rows, False, here_s * frames)
    return choice


def test_an_unknown_kind_of_run_goes_to_the_workers_until_their_cost_is_known_then_tries_this_process_once():
    choice = PathChoice()
    assert decisions(choice, 3) == [False] * 3
    for _ in range(SHARED_FIRST):
        assert not choice.here_is_cheaper(1, ROWS)
        choice.note(1, ROWS, True, 50e-6)
    assert choice.here_is_cheaper(1, ROWS)      # nothing known of this process yet: try it


def test_the_cheaper_way_is_taken_and_the_dearer_one_probed_once_every_probe_every_runs():
    here_first = decisions(learned(here_s=30e-6, shared_s=50e-6), 4 * PROBE_EVERY)
    assert here_first.count(False) == 4 and all(here_first[k] != ((k + 1) % PROBE_EVERY == 0)
                                                for k in range(len(here_first)))
    shared_first = decisions(learned(here_s=160e-6, shared_s=110e-6), 4 * PROBE_EVERY)
    assert shared_first.count(True) == 4


def test_a_way_that_costs_more_than_twice_the_other_is_probed_less_often():
    far = decisions(learned(here_s=20e-6, shared_s=50e-6), 2 * PROBE_EVERY_FAR)   # 2.5x
    assert far.count(False) == 2 and far[PROBE_EVERY - 1] and not far[PROBE_EVERY_FAR - 1]


def test_costs_are_per_frame_and_kept_apart_by_frame_count_and_row_class():
    choice = learned(here_s=20e-6, shared_s=50e-6)        # step() over 100k rows: here
    assert choice.here_is_cheaper(1, ROWS)
    assert choice.here_is_cheaper(1, int(ROWS * 1.1))     # the same half-octave of rows
    assert not choice.here_is_cheaper(10, ROWS)           # run(frames=10) is a kind not seen yet
    assert not choice.here_is_cheaper(1, 4 * ROWS)        # so are four times the rows
    for _ in range(SHARED_FIRST):
        choice.note(10, ROWS, True, 10 * 15e-6)           # run(frames=10): 15 us a frame shared
    choice.note(10, ROWS, False, 10 * 18e-6)
    assert not choice.here_is_cheaper(10, ROWS)


def test_one_slow_run_does_not_turn_the_choice_but_a_lasting_change_does_and_a_faster_run_counts_at_once():
    choice = learned(here_s=20e-6, shared_s=50e-6)
    choice.note(1, ROWS, False, 0.005)            # preempted for 5 ms: counted as twice the cost
    assert choice.here_is_cheaper(1, ROWS)
    for _ in range(4):                            # here got dearer for good (a busy machine)
        choice.note(1, ROWS, False, 200e-6)
    assert not choice.here_is_cheaper(1, ROWS)
    choice.note(1, ROWS, False, 10e-6)            # and cheap again: believed at once
    assert choice.here_is_cheaper(1, ROWS)


def test_runs_of_no_frame_teach_nothing_and_kinds_beyond_the_limit_start_over():
    choice = learned(here_s=20e-6, shared_s=50e-6)
    choice.note(0, ROWS, True, 1.0)
    assert choice.here_is_cheaper(1, ROWS)
    for k in range(MAX_KINDS):                    # a world whose size keeps changing
        choice.note(1, 2 ** (k + 1), True, 1e-3)
    assert not choice.here_is_cheaper(1, ROWS)     # forgotten: the workers first again
