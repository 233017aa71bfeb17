"""The process settings that decide a run's numbers besides its config: oneDNN and the ISA.

Measured here (bench/results-determinism.md): TensorFlow's results change with its
intra-op thread count (``train.threads``), with whether oneDNN's kernels are on
(TensorFlow 2.21 turns them on by default only on CPUs with AVX512_VNNI, AVX512_BF16,
AVX_VNNI or AMX, so an AMD EPYC with AVX2 and an Intel Xeon with AMX differ by default)
and with the instruction set oneDNN's kernels use (``ONEDNN_MAX_CPU_ISA``; its GEMM is
used for the matrix products even with oneDNN's ops off). Both are read by TensorFlow
when it loads, so they are environment variables set before TensorFlow is imported.

``train.onednn`` and ``train.cpu_isa`` make them part of the config: null resolves to
what TensorFlow would choose on this CPU, and the resolved values are recorded with the
run, so that ``mnist-exp-reproduce`` re-applies them on the grader's machine.

Light: reads ``/proc/cpuinfo``, imports nothing heavy.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, FrozenSet

from mnist_experiments.errors import ConfigError

# CPU features for which TensorFlow turns oneDNN's ops on by default (x86-64 Linux).
ONEDNN_DEFAULT_FEATURES = frozenset({"avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
                                     "amx_int8", "amx_bf16"})


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under ``taskset``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def cpu_flags() -> FrozenSet[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def best_isa(flags: FrozenSet[str]) -> str:
    """The largest instruction set oneDNN can use on a CPU with these flags."""
    avx512 = {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags
    if avx512 and "amx_tile" in flags:
        return "AVX512_CORE_AMX"
    if avx512 and "avx512_bf16" in flags:
        return "AVX512_CORE_BF16"
    if avx512 and "avx512_vnni" in flags:
        return "AVX512_CORE_VNNI"
    if avx512:
        return "AVX512_CORE"
    if {"avx2", "avx_vnni"} <= flags:
        return "AVX2_VNNI"
    if {"avx2", "fma"} <= flags:
        return "AVX2"
    if "avx" in flags:
        return "AVX"
    return "SSE41"


def default_onednn(flags: FrozenSet[str]) -> bool:
    """Whether TensorFlow turns oneDNN's ops on by itself on this CPU."""
    setting = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if setting is not None:
        return setting.strip().lower() not in ("0", "false")
    return bool(flags & ONEDNN_DEFAULT_FEATURES)


def environment(train: Any) -> Dict[str, str]:
    """The environment variables that apply resolved ``train.onednn`` / ``train.cpu_isa``."""
    return {"TF_ENABLE_ONEDNN_OPTS": "1" if train.onednn else "0",
            "ONEDNN_MAX_CPU_ISA": str(train.cpu_isa)}


def resolve(cfg: Any) -> Any:
    """Fill a null ``train.onednn`` / ``train.cpu_isa`` with this CPU's defaults; ``cfg``."""
    flags = cpu_flags()
    if cfg.train.onednn is None:
        cfg.train.onednn = default_onednn(flags)
    if cfg.train.cpu_isa is None:
        cfg.train.cpu_isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() or best_isa(flags)
    return cfg


def prepare(cfg: Any) -> Dict[str, str]:
    """Resolve ``train.onednn`` and ``train.cpu_isa`` (in place) and set their environment.

    Call before TensorFlow is imported. In a process where it already is (a test, a
    sequential sweep), the settings it was loaded with must be the config's.

    Raises
    ------
    ConfigError
        When TensorFlow already runs with other settings in this process.
    """
    flags = cpu_flags()
    train = resolve(cfg).train
    wanted = environment(train)
    if "tensorflow" in sys.modules:
        current = {"TF_ENABLE_ONEDNN_OPTS": "1" if default_onednn(flags) else "0",
                   "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
                   or best_isa(flags)}
        if current != wanted:
            raise ConfigError(
                f"train.onednn={str(train.onednn).lower()} train.cpu_isa={train.cpu_isa} cannot "
                "be applied: TensorFlow is already loaded in this process with oneDNN "
                f"{'on' if current['TF_ENABLE_ONEDNN_OPTS'] == '1' else 'off'} and ISA "
                f"{current['ONEDNN_MAX_CPU_ISA']}, and it reads them only when it loads. Run "
                "this config in a new process (a new mnist-exp command)."
            )
        return wanted
    os.environ.update(wanted)
    return wanted


def apply_environment(env: Dict[str, str]) -> None:
    """Set ``env`` in this process (a worker's initializer, before TensorFlow loads)."""
    os.environ.update(env)
