"""Does a graded result reproduce on another machine? Threads, oneDNN, ISA, seeds.

Every measurement is a fresh ``mnist-exp`` subprocess in its own scratch directory with
its own SQLite MLflow store; its metrics are read back with ``MlflowClient`` (full
float precision, so "identical" below means the same ``repr`` of ``test_loss``).
Runs are strictly sequential (never two trainings at once). Parts:

* ``threads``: default, ``taskset -c 0``, TF_NUM_INTRAOP_THREADS x TF_NUM_INTEROP_THREADS,
  ``taskset -c 0`` with 2/2 threads, OMP_NUM_THREADS, ``train.deterministic=false``
  (``data=digits train.epochs=3``).
* ``onednn``: TF_ENABLE_ONEDNN_OPTS=0/1 x ONEDNN_MAX_CPU_ISA=SSE41/AVX/AVX2/unset, some
  with fixed thread counts, plus a micro-probe (which oneDNN primitives run, which ISA
  oneDNN reports, three checksums of a conv, its gradient and a matmul).
* ``speed``: ``fit_seconds`` of the promising settings against the default on a
  Fashion-MNIST subset, interleaved A, B, C, D, A, B, C, D, ...
* ``spread``: test metrics over ``seed=1..20`` (digits) and ``seed=1..8`` (Fashion
  subset), and a simulation of the verdict rule "the original lies within
  mean +- k*s*sqrt(1+1/n) of n=5 re-runs with other seeds".

The report is Markdown; the raw results are kept in an HTML comment at its end, so a
single part can be re-run and the others are kept::

    python bench/determinism.py --part all --out bench/results-determinism.md
    python bench/determinism.py --part threads --out bench/results-determinism.md

By default the package is run from a copy of the working tree taken at start
(``--src worktree``), so edits made to the tree while the benchmark runs cannot change
its results half-way; ``--src <commit>`` runs a committed version (``git archive``),
``--src live`` the installed package as it is.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
FASHION_PATH = "/usr/share/datasets/fashion-mnist"
# viz and the logged model come after the test metrics and do not change them (the
# threads part checks that once); leaving them out saves ~4 s a run.
DIGITS = ["data=digits", "train.epochs=3", "viz.enabled=false", "mlflow.log_model=false"]


# Variables that change TensorFlow's numerics or threading: removed from the inherited
# environment so that only what a measurement sets is in effect.
CLEARED_ENV = ("TF_ENABLE_ONEDNN_OPTS", "TF_DISABLE_MKL", "TF_NUM_INTRAOP_THREADS",
               "TF_NUM_INTEROP_THREADS", "TF_DETERMINISTIC_OPS", "OMP_NUM_THREADS",
               "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_CPU_ISA_HINTS",
               "ONEDNN_VERBOSE", "DNNL_VERBOSE", "MLFLOW_TRACKING_URI", "PYTHONPATH")


def threads(intra: int, inter: int) -> Dict[str, str]:
    return {"TF_NUM_INTRAOP_THREADS": str(intra), "TF_NUM_INTEROP_THREADS": str(inter)}


# (label, extra env, taskset cpu list or None, extra overrides)
Setting = Tuple[str, Dict[str, str], Optional[str], List[str]]

THREAD_SETTINGS: List[Setting] = [
    ("default", {}, None, []),
    ("default (repeat)", {}, None, []),
    ("default, viz + logged model on", {}, None, ["viz.enabled=true", "mlflow.log_model=true"]),
    ("train.deterministic=false", {}, None, ["train.deterministic=false"]),
    ("OMP_NUM_THREADS=1", {"OMP_NUM_THREADS": "1"}, None, []),
    ("taskset -c 0", {}, "0", []),
    ("intra=1 inter=1", threads(1, 1), None, []),
    ("intra=1 inter=2", threads(1, 2), None, []),
    ("intra=2 inter=1", threads(2, 1), None, []),
    ("intra=2 inter=2", threads(2, 2), None, []),
    ("intra=4 inter=1", threads(4, 1), None, []),
    ("intra=4 inter=2", threads(4, 2), None, []),
    ("taskset -c 0, intra=2 inter=2", threads(2, 2), "0", []),
]


def onednn(opts: Optional[str], isa: Optional[str] = None, t: Optional[int] = None) -> Dict[str, str]:
    env: Dict[str, str] = {}
    if opts is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = opts
    if isa is not None:
        env["ONEDNN_MAX_CPU_ISA"] = isa
    if t is not None:
        env.update(threads(t, t))
    return env


def onednn_label(env: Dict[str, str]) -> str:
    parts = []
    if "TF_ENABLE_ONEDNN_OPTS" in env:
        parts.append(f"oneDNN={env['TF_ENABLE_ONEDNN_OPTS']}")
    if "ONEDNN_MAX_CPU_ISA" in env:
        parts.append(f"ISA={env['ONEDNN_MAX_CPU_ISA']}")
    if "TF_NUM_INTRAOP_THREADS" in env:
        parts.append(f"threads={env['TF_NUM_INTRAOP_THREADS']}/{env['TF_NUM_INTEROP_THREADS']}")
    return ", ".join(parts) or "default"


ONEDNN_ENVS = [
    onednn(None),
    onednn("0"), onednn("0", "SSE41"), onednn("0", "AVX"), onednn("0", "AVX2"),
    onednn("1"), onednn("1", "SSE41"), onednn("1", "AVX"), onednn("1", "AVX2"),
    onednn("0", "SSE41", 2), onednn("0", "AVX", 2), onednn("0", "AVX2", 2),
    onednn("0", "SSE41", 1), onednn("0", "AVX", 1), onednn("0", "AVX2", 1),
    onednn("1", None, 1), onednn("1", None, 4), onednn("1", "SSE41", 1),
    onednn("1", "AVX", 1), onednn("1", "AVX", 4), onednn("0", "AVX", 4),
]
ONEDNN_SETTINGS: List[Setting] = [(onednn_label(e), e, None, []) for e in ONEDNN_ENVS]
PROBE_ENVS = [onednn(None), onednn("0"), onednn("0", "SSE41"), onednn("0", "AVX"),
              onednn("0", "AVX2"), onednn("1"), onednn("1", "SSE41"), onednn("1", "AVX"),
              onednn("1", "AVX2")]

# The speed part: A is the default; the others are the candidates for a portable setting.
SPEED_SETTINGS: List[Setting] = [
    ("A: default", {}, None, []),
    ("B: oneDNN=0, ISA=AVX, threads=2/2", onednn("0", "AVX", 2), None, []),
    ("C: oneDNN=0, threads=1/1", onednn("0", None, 1), None, []),
    ("D: oneDNN=1", onednn("1"), None, []),
    ("E: oneDNN=1, ISA=AVX", onednn("1", "AVX"), None, []),
]

PROBE = r"""
import tensorflow as tf
from tensorflow.python.util import _pywrap_util_port
tf.random.set_seed(0)
x = tf.random.normal([64, 28, 28, 1]); k = tf.Variable(tf.random.normal([3, 3, 1, 32]))
a = tf.random.normal([256, 512]); b = tf.random.normal([512, 256])
with tf.GradientTape() as tape:
    y = tf.nn.conv2d(x, k, 1, "VALID")
    s = tf.reduce_sum(y * y)
g = tape.gradient(s, k)
m = tf.matmul(a, b)
print("PROBE", _pywrap_util_port.IsMklEnabled(), repr(float(tf.reduce_sum(y))),
      repr(float(tf.reduce_sum(g * g))), repr(float(tf.reduce_sum(m * m))))
"""


# --------------------------------------------------------------------------- running


class Runner:
    def __init__(self, scratch: Path, src: str) -> None:
        self.scratch = scratch
        self.count = 0
        self.pythonpath: Optional[str] = None
        self.src_desc = "installed package (live working tree)"
        if src != "live":
            snap = scratch / "src"
            snap.mkdir(parents=True)
            if src == "worktree":
                shutil.copytree(REPO / "mnist_experiments", snap / "mnist_experiments",
                                ignore=shutil.ignore_patterns("__pycache__"))
                shutil.copytree(REPO / "conf", snap / "mnist_experiments" / "conf",
                                ignore=shutil.ignore_patterns("__pycache__"))
                self.src_desc = f"a copy of the working tree taken at start (HEAD {git_head()}{dirty()})"
            else:
                archive = subprocess.run(["git", "-C", str(REPO), "archive", src,
                                          "mnist_experiments", "conf"],
                                         check=True, capture_output=True).stdout
                subprocess.run(["tar", "-x", "-C", str(snap)], input=archive, check=True)
                (snap / "conf").rename(snap / "mnist_experiments" / "conf")
                full = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", src],
                                      check=True, capture_output=True, text=True).stdout.strip()
                self.src_desc = f"commit {full} (`git archive`)"
            self.pythonpath = str(snap)
        cli = Path(sys.executable).parent / "mnist-exp"
        self.cli = [str(cli)] if cli.exists() else [sys.executable, "-m", "mnist_experiments"]

    def env(self, extra: Dict[str, str]) -> Dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in CLEARED_ENV}
        env.update({"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
                    "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"})
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        env.update(extra)
        return env

    def _spawn(self, cmd: List[str], cwd: Path, env: Dict[str, str], timeout: float):
        cwd.mkdir(parents=True, exist_ok=True)
        load = os.getloadavg()[0]
        with open(cwd / "stdout.txt", "wb") as out, open(cwd / "stderr.txt", "wb") as err:
            start = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + timeout
            try:
                while True:
                    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                    if pid:
                        break
                    if time.monotonic() > deadline:
                        proc.kill()
                    time.sleep(0.1)
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        return proc.returncode, wall, usage.ru_utime + usage.ru_stime, load

    def train(self, setting: Setting, base: Sequence[str], part: str,
              extra_args: Sequence[str] = ()) -> Dict[str, Any]:
        label, extra_env, cpus, overrides = setting
        self.count += 1
        slug = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")[:40]
        cwd = self.scratch / f"{self.count:03d}-{part}-{slug}"
        cwd.mkdir(parents=True)
        uri = f"sqlite:///{cwd / 'mlflow.db'}"
        args = [*base, *overrides, *extra_args, f"mlflow.tracking_uri={uri}"]
        cmd = [*(["taskset", "-c", cpus] if cpus else []), *self.cli, *args]
        code, wall, cpu, load = self._spawn(cmd, cwd, self.env(extra_env), timeout=1800)
        if code != 0:
            tail = (cwd / "stderr.txt").read_text(errors="replace")[-3000:]
            raise SystemExit(f"run failed ({code}): {' '.join(cmd)}\n{tail}")
        rec: Dict[str, Any] = {
            "label": label, "env": extra_env, "taskset": cpus, "args": args[:-1],
            "wall_s": wall, "cpu_s": cpu, "load1": load,
        }
        rec.update(read_metrics(uri, cwd))
        print(f"[{part}] {label} {' '.join(extra_args)}: test_loss={rec['test_loss']!r} "
              f"test_accuracy={rec['test_accuracy']!r} fit={rec.get('fit_seconds', 0):.2f}s "
              f"wall={wall:.1f}s load={load:.2f}", file=sys.stderr, flush=True)
        return rec

    def probe(self, extra_env: Dict[str, str]) -> Dict[str, Any]:
        self.count += 1
        cwd = self.scratch / f"{self.count:03d}-probe"
        env = self.env({**extra_env, "ONEDNN_VERBOSE": "1"})
        code, _, _, _ = self._spawn([sys.executable, "-c", PROBE], cwd, env, timeout=600)
        text = (cwd / "stdout.txt").read_text(errors="replace") + \
            (cwd / "stderr.txt").read_text(errors="replace")
        if code != 0:
            raise SystemExit(f"probe failed ({code}):\n{text[-3000:]}")
        rec: Dict[str, Any] = {"label": onednn_label(extra_env), "env": extra_env}
        prims: Dict[str, int] = {}
        for line in text.splitlines():
            if line.startswith("PROBE "):
                _, mkl, conv, grad, mm = line.split()
                rec.update(onednn_on=mkl == "True", conv=conv, grad=grad, matmul=mm)
            elif line.startswith("onednn_verbose,v1,info,cpu,isa:"):
                rec["isa"] = line.split("isa:", 1)[1].strip()
            elif line.startswith("onednn_verbose,v1,info,cpu,runtime:"):
                rec["runtime"] = line.split("runtime:", 1)[1].strip()
            elif line.startswith("onednn_verbose,v1,primitive,exec,cpu,"):
                f = line.split(",")
                kind = f"{f[5]}:{f[6]}" if f[6] else f[5]
                prims[kind] = prims.get(kind, 0) + 1
        rec["primitives"] = prims
        print(f"[probe] {rec['label']}: {rec.get('onednn_on')} {rec.get('isa')} "
              f"{rec.get('conv')} {rec.get('grad')} {prims}", file=sys.stderr, flush=True)
        return rec


def read_metrics(uri: str, cwd: Path) -> Dict[str, Any]:
    """The run's metrics from its MLflow store (the log line if that fails)."""
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        runs = [r for r in runs if "test_loss" in r.data.metrics]
        if len(runs) == 1:
            m = runs[0].data.metrics
            return {k: float(m[k]) for k in ("test_loss", "test_accuracy", "fit_seconds",
                                             "total_seconds", "seconds_per_epoch") if k in m}
    except Exception as exc:  # noqa: BLE001 - fall back to the log line
        print(f"MLflow read failed ({exc}); parsing the log", file=sys.stderr)
    text = (cwd / "stdout.txt").read_text(errors="replace") + \
        (cwd / "stderr.txt").read_text(errors="replace")
    found = re.findall(r"test test_loss=(\S+) test_accuracy=(\S+)", text)
    if not found:
        raise SystemExit(f"no test metrics in {cwd}")
    return {"test_loss": float(found[-1][0]), "test_accuracy": float(found[-1][1]),
            "from_log": True}


# --------------------------------------------------------------------------- parts


def part_threads(r: Runner) -> Dict[str, Any]:
    return {"runs": [r.train(s, DIGITS, "threads") for s in THREAD_SETTINGS]}


def part_onednn(r: Runner) -> Dict[str, Any]:
    probes = [r.probe(e) for e in PROBE_ENVS]
    return {"probes": probes, "runs": [r.train(s, DIGITS, "onednn") for s in ONEDNN_SETTINGS]}


def part_speed(r: Runner, rounds: int, fashion: str) -> Dict[str, Any]:
    # One unmeasured run first: page cache, MNIST parse, bytecode.
    r.train(SPEED_SETTINGS[0], fashion_args(fashion), "speed-warmup")
    runs = []
    for i in range(1, rounds + 1):
        for s in SPEED_SETTINGS:
            rec = r.train(s, fashion_args(fashion), f"speed{i}")
            rec["round"] = i
            runs.append(rec)
    return {"runs": runs, "rounds": rounds}


def part_spread(r: Runner, digits_seeds: int, fashion_seeds: int, fashion: str) -> Dict[str, Any]:
    default = THREAD_SETTINGS[0]
    digits = [dict(r.train(default, DIGITS, "spread-digits", [f"seed={s}"]), seed=s)
              for s in range(1, digits_seeds + 1)]
    fash = [dict(r.train(default, fashion_args(fashion), "spread-fashion", [f"seed={s}"]), seed=s)
            for s in range(1, fashion_seeds + 1)]
    return {"digits": digits, "fashion": fash}


sys.path.insert(0, str(Path(__file__).resolve().parent))

from determinism_report import (  # noqa: E402
    dirty, fashion_args, git_head, load_conclusions, load_stored, machine, render,
)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["threads", "onednn", "speed", "spread", "all"], default="all")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results-determinism.md")
    ap.add_argument("--src", default="worktree",
                    help="worktree (a copy taken at start), live, or a git commit-ish")
    ap.add_argument("--fashion-path", default=FASHION_PATH)
    ap.add_argument("--rounds", type=int, default=3, help="speed: interleaved rounds")
    ap.add_argument("--digits-seeds", type=int, default=20)
    ap.add_argument("--fashion-seeds", type=int, default=8)
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = ap.parse_args(argv)

    parts = load_stored(args.out)
    todo = ["threads", "onednn", "speed", "spread"] if args.part == "all" else [args.part]
    scratch = Path(tempfile.mkdtemp(prefix="mnist-determinism-"))
    print(f"scratch: {scratch}", file=sys.stderr)
    info = machine()
    try:
        runner = Runner(scratch, args.src)
        for part in todo:
            t0 = time.perf_counter()
            if part == "threads":
                res = part_threads(runner)
            elif part == "onednn":
                res = part_onednn(runner)
            elif part == "speed":
                res = part_speed(runner, args.rounds, args.fashion_path)
            else:
                res = part_spread(runner, args.digits_seeds, args.fashion_seeds, args.fashion_path)
            res["when"] = (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
                           f"{time.perf_counter() - t0:.0f} s wall, package from {runner.src_desc}")
            parts[part] = res
            # write after every part: an interrupted run keeps what it measured
            parts["conclusions"] = load_conclusions(args.out)
            command = f"python bench/determinism.py --part all --out {args.out.as_posix()}"
            if args.src != "worktree":
                command += f" --src {args.src}"
            try:
                text = render(parts, info, command, runner.src_desc)
            except Exception:
                keep = Path(tempfile.gettempdir()) / f"determinism-{part}-{os.getpid()}.json"
                keep.write_text(json.dumps(parts))
                print(f"render failed; the raw results are in {keep}", file=sys.stderr)
                raise
            args.out.write_text(text)
            print(f"wrote {args.out} ({part})", file=sys.stderr, flush=True)
    finally:
        if args.keep:
            print(f"kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
