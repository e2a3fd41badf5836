"""Imported once by the worker forkserver before it forks workers: the library, its kernels, and
numba's one-time initialisation (~130 ms per process, measured) are paid there, once."""

import numpy as np

import ecs  # noqa: F401
from ecs.kernels import sync

sync.load(np.zeros(1, np.int64), 0)   # initialises numba and loads the first kernel from cache
