"""How the package installs: the distribution's name, `ecs.kernels` instead of a top-level
`kernels`, and a source checkout that was never installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ecs

ROOT = Path(__file__).resolve().parent.parent


def test_the_kernels_are_a_subpackage_of_ecs() -> None:
    import ecs.kernels

    assert Path(ecs.kernels.__file__).resolve() == ROOT / "kernels" / "__init__.py"
    assert ecs.kernels.bits.mark_changed is ecs.mark_changed


def test_the_distribution_claims_no_generic_top_level_name() -> None:
    tomllib = pytest.importorskip("tomllib")   # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["project"]["name"] == "columnar-ecs"
    assert config["tool"]["setuptools"]["packages"] == ["ecs", "ecs.kernels"]
    assert config["tool"]["setuptools"]["package-dir"] == {"ecs.kernels": "kernels"}
    assert (ROOT / "ecs" / "py.typed").is_file()


def test_a_source_checkout_without_install_finds_its_kernels() -> None:
    script = textwrap.dedent(f"""
        import sys
        sys.meta_path = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
        sys.path.insert(0, {str(ROOT)!r})
        import ecs
        from ecs.kernels import bits
        print(ecs.kernels.__file__)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).resolve() == ROOT / "kernels" / "__init__.py"
    assert "ecs" in sys.modules and ecs.__name__ == "ecs"
