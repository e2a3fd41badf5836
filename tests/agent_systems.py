"""Components and systems for tests/test_agent_features.py: module level, so worker processes
import them by module and name."""

from __future__ import annotations

import numpy as np

import ecs
from ecs import Entity, Mut, component, i64, system


@component
class Stamp:
    last: i64 = -1          # the frame the stamping system last saw
    total: i64 = 0          # the sum of the frames it saw


@component
class Sheep:
    pass


@component
class Heat:
    t: i64 = 0


@system
def stamp_frame(stamp: Mut[Stamp], frame: ecs.Frame):
    for i in range(stamp.last.shape[0]):
        stamp.last[i] = frame
        stamp.total[i] += frame


@system
def log_frame(frame_log: np.ndarray, frame: ecs.Frame):
    """Table-less: runs once per frame; frame_log[frame] = how often frame `frame` was seen."""
    frame_log[frame] += 1


@system(every=2, offset=1, name="odd_frames")
def odd_frames(odd_log: np.ndarray, frame: ecs.Frame):
    odd_log[frame] += 1


@system(every=3, offset=2, name="every_third_from_two")
def every_third_from_two(stamp: Mut[Stamp], frame: ecs.Frame):
    for i in range(stamp.last.shape[0]):
        stamp.last[i] = frame
        stamp.total[i] += frame


@system(removed=[Heat], every=2, offset=1)
def removed_on_odd_frames(gone: ecs.Removed, gone_log: np.ndarray, frame: ecs.Frame):
    gone_log[0] += gone.shape[0]
    gone_log[1] = frame


@system(with_=[Sheep])
def count_sheep(ids: Entity, sheep_count: np.ndarray):
    sheep_count[0] += ids.shape[0]


@system
def fill_with_frame(buf: np.ndarray, frame: ecs.Frame):
    for i in range(buf.shape[0]):
        buf[i] = frame + 1
