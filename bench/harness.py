"""Running the benchmark's subprocesses and describing the machine they ran on.

Shared by every script in bench/: :func:`measure` runs one command in a fresh process
(wall time, peak RSS, time to the first epoch from its log), :func:`bench_env` is the
environment of every measured run, :func:`run_a` / :func:`run_b` run the notebook and
``mnist-exp``, :func:`machine_info` says what the numbers were measured on.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
REFERENCE = BENCH_DIR / "notebook_reference.py"
DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
DEFAULT_SEED = 42  # the notebook's, and mnist-exp's default


def missing_data(path: str, option: str) -> Optional[str]:
    """What to do when the benchmark's data is not at ``path``; None if it is there."""
    if os.path.exists(os.path.expanduser(path)):
        return None
    hint = ("install Debian's copy (apt-get install dataset-fashion-mnist)"
            if os.path.expanduser(path) == DEFAULT_DATA else "check the path")
    return (f"no data at {path}: {hint}, or give a directory of MNIST IDX files or a "
            f"Keras-layout .npz with {option}")


# ------------------------------------------------------------------------ running
class RunFailed(RuntimeError):
    pass


def bench_env() -> Dict[str, str]:
    """The environment of every measured subprocess (the same for A and B)."""
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)  # B gets its fresh store on the command line
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "TF_CPP_MIN_LOG_LEVEL": "2",  # what mnist-exp sets by default anyway
            "MLFLOW_DISABLE_TELEMETRY": "true",  # no network here: no telemetry attempts
            "DO_NOT_TRACK": "true",
        }
    )
    return env


def measure(cmd: Sequence[str], cwd: Path, env: Dict[str, str], timeout: float) -> Dict[str, Any]:
    """Run ``cmd`` to completion: launch time, wall time, exit code, peak RSS (MB).

    Output goes to ``cwd/stdout.txt`` and ``cwd/stderr.txt`` (files, so no pipe can
    fill up and stall the child); the child is reaped with ``os.wait4`` for its
    resource usage.
    """
    cwd.mkdir(parents=True, exist_ok=True)
    with open(cwd / "stdout.txt", "wb") as out, open(cwd / "stderr.txt", "wb") as err:
        load_before = _load1()
        launch_unix = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL)
        timed_out = threading.Event()

        def _kill() -> None:
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, _kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:  # interrupted: leave no orphan behind
            proc.kill()
            os.waitpid(proc.pid, 0)
            proc.returncode = -9
            raise
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    maxrss = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)  # -> MB
    return {
        "cmd": list(cmd),
        "cwd": str(cwd),
        "launch_unix": launch_unix,
        "wall_s": wall,
        "returncode": proc.returncode,
        "timed_out": timed_out.is_set(),
        "peak_rss_mb": maxrss,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "load1_before": load_before,
        "load1_after": _load1(),
    }


def _load1() -> Optional[float]:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def _check(run: Dict[str, Any], what: str) -> None:
    if run["returncode"] != 0:
        cwd = Path(run["cwd"])
        reason = "timed out" if run["timed_out"] else f"exited with {run['returncode']}"
        raise RunFailed(
            f"{what} {reason}: {shlex.join(run['cmd'])}\n--- stderr (tail) ---\n"
            f"{_tail(cwd / 'stderr.txt')}\n--- stdout (tail) ---\n{_tail(cwd / 'stdout.txt')}"
        )


def run_a(data_path: str, epochs: int, seed: int, workdir: Path, env: Dict[str, str],
          timeout: float) -> Dict[str, Any]:
    cmd = [sys.executable, str(REFERENCE), "--data-path", data_path, "--epochs", str(epochs),
           "--seed", str(seed)]
    run = measure(cmd, workdir, env, timeout)
    _check(run, "A (notebook_reference.py)")
    result = None
    for line in (workdir / "stdout.txt").read_text(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("{") and '"wall_s"' in line:
            result = json.loads(line)
    if result is None:
        raise RunFailed(f"A printed no JSON result line; see {workdir / 'stdout.txt'}")
    epoch_s = [float(s) for s in result["epoch_s"]]
    run.update(
        variant="A",
        epoch_s=epoch_s,
        first_epoch_from_launch_s=result["first_epoch_end_unix"] - run["launch_unix"],
        epoch_end_from_launch_s=[t - run["launch_unix"] for t in result.get("epoch_end_unix", [])],
        seed=seed,
        test_accuracy=float(result["test_accuracy"]),
        test_loss=float(result["test_loss"]),
        self_reported_wall_s=float(result["wall_s"]),
        n_train=result.get("n_train"),
        n_test=result.get("n_test"),
        jit_compile=result.get("jit_compile"),
    )
    return run


def run_b(data_group: str, data_path: str, epochs: int, seed: int, workdir: Path,
          env: Dict[str, str], timeout: float) -> Dict[str, Any]:
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    cmd = [sys.executable, "-m", "mnist_experiments", "experiment=seed_notebook",
           f"data={data_group}", f"data.path={data_path}", f"train.epochs={epochs}",
           f"mlflow.tracking_uri={uri}"]
    if seed != DEFAULT_SEED:
        cmd.append(f"seed={seed}")
    run = measure(cmd, workdir, env, timeout)
    _check(run, "B (mnist-exp)")
    run.update(variant="B", seed=seed, **read_b_run(uri, run["launch_unix"]))
    return run


def read_b_run(uri: str, launch_unix: float) -> Dict[str, Any]:
    """What B's MLflow run recorded: per-epoch seconds (and when epoch 1 ended), timings."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiment_ids)
    if len(runs) != 1:
        raise RunFailed(f"B's store {uri} holds {len(runs)} runs, expected exactly 1")
    run = runs[0]
    if run.info.status != "FINISHED":
        raise RunFailed(f"B's run {run.info.run_id} ended {run.info.status}")
    metrics = run.data.metrics
    history = sorted(client.get_metric_history(run.info.run_id, "epoch_seconds"),
                     key=lambda m: m.step)
    if not history:
        raise RunFailed(f"B's run {run.info.run_id} has no epoch_seconds history")
    artifact_breakdown: Dict[str, float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = client.download_artifacts(run.info.run_id, "artifact_seconds.json", tmp)
            artifact_breakdown = {k: float(v) for k, v in json.loads(Path(local).read_text()).items()}
    except Exception:  # the breakdown is a diagnosis aid, not a measurement
        pass
    keys = ("total_seconds", "fit_seconds", "artifact_seconds", "first_epoch_seconds",
            "seconds_per_epoch", "test_loss")
    return {
        "epoch_s": [float(m.value) for m in history],
        # the epoch logger stamps each epoch's metrics when the epoch (validation included) ends
        "first_epoch_from_launch_s": history[0].timestamp / 1000.0 - launch_unix,
        "epoch_end_from_launch_s": [m.timestamp / 1000.0 - launch_unix for m in history],
        "test_accuracy": float(metrics["test_accuracy"]),
        "mlflow": {k: float(metrics[k]) for k in keys if k in metrics},
        "mlflow_run_id": run.info.run_id,
        "mlflow_run_start_from_launch_s": run.info.start_time / 1000.0 - launch_unix,
        "mlflow_run_end_from_launch_s": (run.info.end_time / 1000.0 - launch_unix
                                         if run.info.end_time else None),
        "artifact_breakdown_s": artifact_breakdown,
    }


def mnist_exp_command() -> List[str]:
    """The ``mnist-exp`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("mnist-exp")
    if script.exists():
        return [str(script)]
    found = shutil.which("mnist-exp")
    return [found] if found else [sys.executable, "-m", "mnist_experiments"]


def time_cli(args: Sequence[str], runs: int, workdir: Path, env: Dict[str, str]) -> Dict[str, Any]:
    cmd = [*mnist_exp_command(), *args]
    times = []
    for i in range(runs):
        run = measure(cmd, workdir / f"{i}", env, timeout=120)
        _check(run, shlex.join(["mnist-exp", *args]))
        times.append(run["wall_s"])
    return {"cmd": shlex.join(["mnist-exp", *args]), "times_s": times,
            "median_s": statistics.median(times)}


def warm_up(env: Dict[str, str], workdir: Path) -> float:
    """Import the heavy libraries once so that no measured run pays for a cold page
    cache, and build the MLflow store template that B's new stores are copied from
    (once per machine and MLflow version: only a machine's very first run pays ~3 s for
    it, see mnist_experiments/tracking/store_template.py)."""
    code = ("import tensorflow, keras, mlflow, matplotlib.pyplot, sklearn.metrics, hydra\n"
            "from mnist_experiments.tracking.store_template import build_template\n"
            "build_template()")
    run = measure([sys.executable, "-c", code], workdir, env, timeout=600)
    _check(run, "warm-up import")
    return run["wall_s"]


def machine_info() -> Dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()

    def version(*dists: str) -> str:
        for dist in dists:
            try:
                return metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
        return "not installed"

    commit = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                                capture_output=True, timeout=5).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, text=True, capture_output=True, timeout=5).stdout.strip()
        if commit and dirty:
            commit += " (with uncommitted changes)"
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": version("tensorflow-cpu", "tensorflow"),
        "keras": version("keras"),
        "mlflow": version("mlflow"),
        "hydra": version("hydra-core"),
        "numpy": version("numpy"),
        "commit": commit,
    }


def _load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"
