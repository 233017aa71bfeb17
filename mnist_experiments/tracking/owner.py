"""Which process owns a run, and whether that process is still alive.

Every run this package starts records its owner as tags: the host, the process id and
the process's start time (with the host's boot id), so that a later command can tell
a run whose process still works from one whose process died without ending it
(SIGKILL, the kernel's OOM killer, a power cut): a process id alone can be reused.

Light (standard library only): the store helpers call it before MLflow is imported.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import List, Mapping, Optional

HOST_TAG = "mnist_exp.host"
PID_TAG = "mnist_exp.pid"
START_TAG = "mnist_exp.process_start"
NAMESPACE_TAG = "mnist_exp.pid_namespace"
HEARTBEAT_TAG = "mnist_exp.heartbeat"
END_REASON_TAG = "mnist_exp.end_reason"


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def pid_namespace() -> str:
    """This process's pid namespace (containers on one host each have their own)."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def stat_fields(pid: int) -> Optional[List[str]]:
    """The fields of ``/proc/<pid>/stat`` after the command name (the state first), or
    None if there is no such process (Linux; see :func:`process_start` elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces: the fields after it follow the last ')'
    return stat[stat.rindex(")") + 2:].split()


def process_start(pid: int) -> Optional[str]:
    """``<boot id>:<start time in clock ticks>`` of process ``pid``; None if it does not
    exist or has finished. Without ``/proc`` (macOS), ``"?"`` for a live process."""
    if not Path("/proc/self/stat").exists():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?"
    fields = stat_fields(pid)
    if fields is None or fields[0] == "Z":  # a zombie has finished: only its status is left
        return None
    return f"{_boot_id()}:{fields[19]}"


@dataclass(frozen=True)
class Owner:
    """The process that owns a run."""

    host: str
    pid: int
    start: str
    namespace: str = ""

    @classmethod
    def this_process(cls) -> "Owner":
        return cls(socket.gethostname(), os.getpid(), process_start(os.getpid()) or "?",
                   pid_namespace())

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Optional["Owner"]:
        try:
            return cls(tags[HOST_TAG], int(tags[PID_TAG]), tags[START_TAG],
                       tags.get(NAMESPACE_TAG, ""))
        except (KeyError, ValueError):
            return None

    def tags(self) -> dict:
        return {HOST_TAG: self.host, PID_TAG: str(self.pid), START_TAG: self.start,
                NAMESPACE_TAG: self.namespace}

    @property
    def local(self) -> bool:
        """True if the owner ran on this host, in this pid namespace (only then can its
        process be looked up; a container sharing the host name has its own pids)."""
        return self.host == socket.gethostname() and self.namespace == pid_namespace()

    def alive(self) -> bool:
        """Whether the owning process still runs (for a process on this host)."""
        now = process_start(self.pid)
        if now is None:
            return False
        return "?" in (now, self.start) or now == self.start


def stale_creation(path: Path) -> bool:
    """True for a temporary store ``.<db>.<pid>-<ticks>.creating`` whose job is gone."""
    parts = path.name.removesuffix("-journal").split(".")
    if len(parts) < 3 or parts[-1] != "creating":
        return False
    pid, _, start = parts[-2].partition("-")
    if not pid.isdigit():
        return False
    now = process_start(int(pid))
    return now is None or bool(start and now != "?" and now.rpartition(":")[2] != start)


def creation_name(db_name: str) -> str:
    """The temporary name under which this process builds a fresh store ``db_name``."""
    ticks = (process_start(os.getpid()) or "?").rpartition(":")[2]
    return f".{db_name}.{os.getpid()}-{ticks}.creating"
