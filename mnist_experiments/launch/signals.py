"""Ctrl-C and SIGTERM: one way to stop, whatever the moment.

:func:`handled` (used by every command's ``main``, and by the Hydra app in each job
process) turns SIGINT and SIGTERM into :class:`Interrupted`, a ``KeyboardInterrupt``
that remembers its signal, so that the code that is running unwinds: a run ends
KILLED (:func:`mnist_experiments.tracking.runs.tracked_run`), a sweep stops its
workers and ends its parent run. The command then prints one line and exits with the
conventional status, 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM).

:func:`deferred` holds a signal back while a run's final status is written; it is
raised right after. Once stopping, a second signal is ignored, so that it cannot break
the clean-up that ends the runs; a third one ends the process at once (its runs are
then ended by the next command, see :mod:`mnist_experiments.tracking.liveness`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Iterator, List

from mnist_experiments.tracking.owner import process_start, stat_fields

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """A SIGINT or SIGTERM received by this process."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


_state = threading.local()
received: List[int] = []  # every signal this process received, in order


def _depth() -> int:
    return getattr(_state, "depth", 0)


# Set by a sweep in its launching process: a signal is first passed on to the
# launcher's worker processes, which end their jobs' runs KILLED, and only then
# raised here (a launcher that sees the interruption first, like joblib's, SIGKILLs
# its workers).
forward_to_children = False


FORCE_AFTER = 3  # the third signal stops the process at once (its runs: see liveness)


@contextlib.contextmanager
def passed_to_children() -> Iterator[None]:
    """Inside the block, a signal first stops this process's worker processes (see
    :func:`stop_children`), so that their runs end KILLED before the block unwinds."""
    global forward_to_children
    before, forward_to_children = forward_to_children, True
    try:
        yield
    finally:
        forward_to_children = before


def _handler(signum, frame) -> None:
    received.append(signum)
    if len(received) >= FORCE_AFTER:
        os._exit(128 + signum)
    if len(received) > 1:
        # already stopping: a second Ctrl-C (or the sweep's SIGTERM after the terminal's
        # SIGINT) must not interrupt the clean-up that ends the runs
        return
    if _depth() > 0:
        _state.pending = signum
        return
    if forward_to_children:
        stop_children(signal.SIGTERM)  # loky workers ignore SIGINT
    raise Interrupted(signum)


def signal_of(exc: BaseException) -> int:
    """The signal behind an interruption (a plain KeyboardInterrupt is SIGINT)."""
    return getattr(exc, "signum", signal.SIGINT)


def exit_status(exc: BaseException) -> int:
    return 128 + signal_of(exc)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Raise :class:`Interrupted` on SIGINT and SIGTERM inside the block (main thread
    only; elsewhere a no-op); the previous handlers come back after it, so a
    launcher's worker process that ran a job is not left with them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        if previous[s] == signal.SIG_IGN and s == signal.SIGINT:
            continue  # started in the background (`cmd &`): Ctrl-C was never ours
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back inside the block; raise it when the block ends."""
    _state.depth = _depth() + 1
    try:
        yield
    finally:
        _state.depth -= 1
        pending = getattr(_state, "pending", None)
        if _state.depth == 0 and pending is not None:
            _state.pending = None
            raise Interrupted(pending)


# helpers that ignore SIGTERM and end by themselves when their parent exits
_NOT_WORKERS = ("resource_tracker",)


def stop_children(signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
    """Pass ``signum`` on to this process's child processes (a launcher's workers),
    wait for them to end their runs, then SIGKILL the rest; return how many there were.

    Children in a session of their own (the store helper) are left to their owner.
    """
    import time

    children = _children()
    for pid in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.1)
    for pid in children:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    for pid in children:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
    return len(children)


def _children() -> List[int]:
    """Live child processes of this one in its own session (Linux /proc)."""
    me, session = os.getpid(), os.getsid(0)
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        fields = stat_fields(int(entry.name))
        if fields is None or int(fields[1]) != me or fields[0] == "Z" or int(fields[3]) != session:
            continue
        try:
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if not any(name in command for name in _NOT_WORKERS):
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    return process_start(pid) is not None


def name_of(exc: BaseException) -> str:
    return signal.Signals(signal_of(exc)).name


def stoppable(prog: str):
    """Decorate a command's ``main``: SIGINT/SIGTERM inside it print one line and return
    the conventional exit status, instead of a traceback (or SIGTERM's silent death)."""
    import functools
    import sys

    def decorate(main):
        @functools.wraps(main)
        def wrapper(*args, **kwargs):
            with handled():
                try:
                    return main(*args, **kwargs)
                except KeyboardInterrupt as exc:
                    print(f"{prog}: stopped by {name_of(exc)}.", file=sys.stderr, flush=True)
                    return exit_status(exc)
        return wrapper
    return decorate
