"""Fault injection for the tests: real processes, real signals, real full file systems."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

from conftest import cli_env


def default_sigint() -> None:
    """``preexec_fn`` of a run a test will interrupt: a test run started in the background
    (`pytest &`, `nohup`) inherits SIGINT ignored, and so would the run."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Job:
    """``python -m mnist_experiments ARGS`` in ``cwd``, in a session (process group) of its
    own, its output read line by line, so a test can signal it at a chosen moment."""

    def __init__(self, args: List[str], cwd: Path, module: str = "mnist_experiments"):
        self.lines: List[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], cwd=cwd, env=cli_env(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True, preexec_fn=default_sigint,
        )

    def wait_for(self, text: str, timeout: float = 300) -> str:
        """Read output until a line contains ``text``; return that line."""
        deadline = time.monotonic() + timeout
        for line in self.proc.stdout:
            self.lines.append(line)
            if text in line:
                return line
            if time.monotonic() > deadline:
                break
        self.kill()
        pytest.fail(f"never saw {text!r}; output:\n{self.output}")

    def wait_until(self, condition: Callable[[], bool], timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.kill()
                pytest.fail(f"condition never held; output:\n{self.finish()}")
            time.sleep(0.02)

    def signal(self, signum: int, group: bool = False) -> None:
        """``signum`` to the process, or to its whole process group (a terminal's Ctrl-C)."""
        import os

        if group:
            os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)

    def finish(self, timeout: float = 180) -> str:
        """Wait for the exit; return the whole output."""
        try:
            rest, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rest, _ = self.proc.communicate()
        self.lines.append(rest or "")
        return self.output

    @property
    def output(self) -> str:
        return "".join(self.lines)

    @property
    def returncode(self) -> Optional[int]:
        return self.proc.returncode

    def session_processes(self, running: Optional[bytes] = None) -> List[int]:
        """Live processes of this job's session (its workers included); with
        ``running``, only those whose command line holds it (b"LokyProcess": joblib's
        workers, b"spawn_main": a reproduction's)."""
        found = []
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[3]) == self.proc.pid and fields[0] != "Z" and (
                    running is None or running in command):
                found.append(int(entry.name))
        return found

    def kill(self) -> None:
        import os

        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def reproduction_at_epoch_2(tmp_path: Path) -> tuple:
    """A trained run, then ``mnist-exp-reproduce`` of it at 200 epochs, past its second
    epoch: ``(the original's run id, the reproduction's Job)``."""
    from conftest import FAST, all_runs, run_cli, store_uri

    trained = run_cli([*FAST, "viz=off", "mlflow.log_model=false"], tmp_path)
    assert trained.returncode == 0, trained.stderr
    (original,) = [r.info.run_id for r in all_runs(store_uri(tmp_path))]
    job = Job([original, "--override", "train.epochs=200"], tmp_path,
              module="mnist_experiments.commands.reproduce")
    job.wait_for("epoch 2/200")
    return original, job


def jobs_past_epoch_2(sweep_dir: Path, jobs: int) -> Callable[[], bool]:
    """For :meth:`Job.wait_until`: ``jobs`` jobs of the sweep have logged their second
    epoch (all of a joblib sweep's workers are training)."""
    def condition() -> bool:
        logs = list(sweep_dir.glob("*/train.log"))
        return len(logs) == jobs and all("epoch 2/" in p.read_text() for p in logs)
    return condition


@contextlib.contextmanager
def small_filesystem(path: Path, kilobytes: int) -> Iterator[Path]:
    """A real tmpfs of ``kilobytes`` mounted at ``path`` (root only; skips otherwise)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kilobytes}k", "tmpfs",
                              str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def resize(path: Path, kilobytes: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={kilobytes}k", str(path)], check=True)


def run_statuses(uri: str) -> dict:
    """run name -> (status, end reason tag) for every run of the store."""
    from conftest import all_runs

    return {r.info.run_name: (r.info.status, r.data.tags.get("mnist_exp.end_reason"))
            for r in all_runs(uri)}
