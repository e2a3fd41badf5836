"""The heap's trim policy (ecs/heap.py): the first World asks glibc to keep freed heap, unless
the user chose a pad or an mmap threshold; each case in a fresh process, where no World was
made yet."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

CHILD = textwrap.dedent("""
    import resource
    import numpy as np
    import ecs
    from ecs import heap
    from tests import introspect
    before = introspect.heap_pad_asked()
    with ecs.World():
        pass
    for size in (1 << 17, 1 << 20, 4 << 20):     # temporaries: freed, then made again
        for _ in range(5):
            np.ones(size // 8)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            np.ones(size // 8)
        if resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults > 20:
            print("faulted", size)
    print(before, heap.keep_freed_heap())
""")


def _child(**env: str) -> str:
    chosen = ("MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")
    environment = {k: v for k, v in os.environ.items() if k not in chosen}
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**environment, **env})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="the pad is a glibc malloc setting")
def test_the_first_world_keeps_freed_heap_on_glibc_and_temporaries_fault_no_pages() -> None:
    """Setting the pad ends glibc's moving mmap threshold: without the threshold set too, every
    1 MiB array was mapped afresh (257 page faults each)."""
    assert _child() == "False True"


@pytest.mark.parametrize("env", [{"MALLOC_TOP_PAD_": "131072"}, {"MALLOC_MMAP_THRESHOLD_": "1048576"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.top_pad=0"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}],
                         ids=["pad", "threshold", "pad-tunable", "threshold-tunable"])
def test_a_setting_the_user_chose_is_left_as_it_is(env: dict[str, str]) -> None:
    assert _child(**env).endswith("False False")
