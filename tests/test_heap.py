"""The heap's trim policy (ecs/heap.py): the first World asks glibc to keep freed heap, unless
the user chose a pad; each case in a fresh process, where no World was made yet."""

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
    import ecs
    from ecs import heap
    from tests import introspect
    before = introspect.heap_pad_asked()
    with ecs.World():
        pass
    print(before, heap.keep_freed_heap())
""")


def _child(**env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k not in ("MALLOC_TOP_PAD_", "GLIBC_TUNABLES")}
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**environment, **env})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="the pad is a glibc malloc setting")
def test_the_first_world_keeps_freed_heap_on_glibc() -> None:
    assert _child() == "False True"


@pytest.mark.parametrize("env", [{"MALLOC_TOP_PAD_": "131072"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.top_pad=0"}], ids=["env", "tunables"])
def test_a_pad_the_user_chose_is_left_as_it_is(env: dict[str, str]) -> None:
    assert _child(**env) == "False False"
