"""A non-editable ``pip install .`` ships the conf/ tree and the same app."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

import pytest
import yaml

from conftest import REPO, cli_env

pytestmark = pytest.mark.slow  # builds and installs a wheel, runs it


def test_the_wheel_ships_every_config_and_runs_from_site_packages(tmp_path):
    wheels = tmp_path / "wheels"
    # built from a copy: setuptools reuses the checkout's build/ dir, whose stale copies
    # of modules would hide one that the wheel leaves out
    source = tmp_path / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "outputs", "multirun", "mlruns", "__pycache__",
        "*.egg-info"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(source)],
        capture_output=True, text=True, timeout=300, env=cli_env(),
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("mnist_experiments-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"mnist_experiments/conf/{p.relative_to(REPO / 'conf').as_posix()}"
                for p in (REPO / "conf").rglob("*.yaml")}
    assert expected and expected <= names, sorted(expected - names)
    # every module of the source tree (a sub-package missing from pyproject.toml's
    # packages works in an editable install and is silently left out of the wheel)
    modules = {p.relative_to(REPO).as_posix()
               for root in ("mnist_experiments", "hydra_plugins")
               for p in (REPO / root).rglob("*.py") if "__pycache__" not in p.parts}
    assert modules and modules <= names, sorted(modules - names)
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "mnist-exp = mnist_experiments.commands.mnist_exp:main" in entry_points

    # installed (not editable) into a fresh target dir, run from elsewhere
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target",
         str(target), str(wheel)],
        capture_output=True, text=True, timeout=300, env=cli_env(),
    )
    assert install.returncode == 0, install.stderr[-3000:]
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    run = subprocess.run(
        [sys.executable, "-c",
         "import sys; sys.path.insert(0, sys.argv.pop(1)); import mnist_experiments, runpy;"
         "print(mnist_experiments.__file__, file=sys.stderr);"
         "sys.argv = ['mnist-exp', '--cfg', 'job', 'experiment=seed_notebook'];"
         "runpy.run_module('mnist_experiments', run_name='__main__')",
         str(target)],
        cwd=workdir, capture_output=True, text=True, timeout=120, env=cli_env(),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert str(target) in run.stderr  # the installed copy, not the source tree
    cfg = yaml.safe_load(run.stdout)
    assert cfg["train"]["batch_size"] == 64 and cfg["model"]["name"] == "seed_cnn"
