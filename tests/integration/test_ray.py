"""Sweeps on Ray through hydra-ray-launcher (``hydra/launcher=ray``): one where the
launcher starts Ray itself, one on a Ray cluster started here with ``ray start --head``.

Each ends as a joblib sweep does: one parent run, a FINISHED child per job, the
leaderboard; and each job runs TensorFlow on its share of the cores (Ray gives each task
one of the node's two CPUs, so two jobs at once get one thread each).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from needs import need_module, skip_or_fail
from conftest import cli_env, parent_and_children, read_summary, run_cli, store_uri, sweep_dir
from ui_helpers import free_port

QUICK = ["data=digits", "data.limit=300", "train.epochs=1", "viz=off", "mlflow.log_model=false"]
INSTALL = "pip install -e '.[ray]' (hydra-ray-launcher, ray[default])"


def ray_program() -> str:
    need_module("hydra_plugins.hydra_ray_launcher.ray_launcher", INSTALL)
    program = Path(sys.executable).with_name("ray")
    if not program.exists():
        skip_or_fail(f"no `ray` program beside {sys.executable}: {INSTALL}")
    return str(program)


def ray_env() -> dict:
    """The environment of ``ray start`` and of a sweep on its cluster.

    - ``RAY_AUTH_MODE=token``: since Ray 2.59 a local cluster (``ray start --head``)
      wants the token it keeps in ``~/.ray/auth_token``, but a driver connecting by
      address sends it only in token mode ("InvalidAuthToken: Authentication token is
      missing or incorrect" otherwise).
    - This node's address exempt from the tests' proxy (a closed port): Ray turns
      ``127.0.0.1:<port>`` into the node's IP address and connects there.
    """
    from ray.util import get_node_ip_address

    exempt = f"127.0.0.1,localhost,{get_node_ip_address()}"
    return cli_env(RAY_AUTH_MODE="token", NO_PROXY=exempt, no_proxy=exempt)


def check_sweep(workdir: Path, jobs: int) -> None:
    """One parent run, a FINISHED child per job on one thread each, the leaderboard."""
    parent, children, runs = parent_and_children(store_uri(workdir))
    assert len(runs) == 1 + jobs  # nothing in another experiment, nothing lost
    assert parent.info.status == "FINISHED"
    assert sorted(c.data.tags["sweep.job_num"] for c in children) == [str(j) for j in range(jobs)]
    assert all(c.info.status == "FINISHED" for c in children)
    # two Ray tasks of one CPU at once on Ray's two CPUs: one TensorFlow thread each
    assert [c.data.params["train.threads"] for c in children] == ["1"] * jobs
    # each job ran in a Ray worker, not in the sweep's process
    workers = {c.data.tags["mnist_exp.pid"] for c in children}
    assert parent.data.tags["mnist_exp.pid"] not in workers
    sweep = sweep_dir(workdir)
    assert all(c.data.tags["hydra.output_dir"].startswith(str(sweep)) for c in children)
    rows = read_summary(sweep)
    assert sorted(r["status"] for r in rows) == ["FINISHED"] * jobs
    assert parent.data.tags["best_run_id"] in {c.info.run_id for c in children}


# (first: with a `ray start` cluster up, Ray's init without an address would join it)
def test_the_launcher_starts_ray_itself(tmp_path):
    ray_program()
    started = time.time()
    result = run_cli(["-m", *QUICK, "hydra/launcher=ray", "optimizer=adam,sgd",
                      "+hydra.launcher.ray.init.num_cpus=2"], tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    check_sweep(tmp_path, 2)
    print(f"Ray sweep, Ray started by the launcher: {time.time() - started:.1f} s")


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A Ray cluster on this machine (``ray start --head``), stopped at the end."""
    ray = ray_program()
    port = free_port()
    workdir = tmp_path_factory.mktemp("ray-head")
    start = subprocess.run(
        [ray, "start", "--head", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats"],
        cwd=workdir, env=ray_env(), capture_output=True, text=True, timeout=180)
    try:
        if start.returncode != 0:
            skip_or_fail(f"ray start --head failed:\n{start.stdout}{start.stderr}")
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop"], env=cli_env(), capture_output=True, timeout=120)


def test_a_sweep_on_a_running_ray_cluster(ray_head, tmp_path):
    started = time.time()
    result = run_cli(["-m", *QUICK, "hydra/launcher=ray", "optimizer=adam,sgd",
                      f"hydra.launcher.ray.init.address={ray_head}",
                      "+hydra.launcher.ray.init.object_store_memory=null"],
                     tmp_path, timeout=300, env=ray_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    check_sweep(tmp_path, 2)
    print(f"Ray sweep on a running cluster: {time.time() - started:.1f} s")
