"""The collector is paused during a heavy import and what it created is frozen
(mnist_experiments.launch.heap); a block that imports nothing new freezes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap


def _in_fresh_interpreter(code: str) -> dict:
    """Run ``code`` in a new interpreter (nothing imported yet); it prints one JSON line."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_heavy_import_runs_without_collections_and_its_objects_are_frozen():
    result = _in_fresh_interpreter("""
        import gc, json
        from mnist_experiments.launch.heap import heavy_imports

        collections = []
        gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info))
        with heavy_imports():
            paused = not gc.isenabled()
            import mlflow  # noqa: F401 - thousands of modules' objects
        print(json.dumps({"paused": paused, "collections": len(collections),
                          "frozen": gc.get_freeze_count(), "enabled": gc.isenabled()}))
    """)
    assert result["paused"] and result["enabled"]
    assert result["collections"] == 0
    assert result["frozen"] > 100_000


def test_a_block_that_imports_nothing_new_freezes_nothing():
    """A sweep's later jobs import nothing: their predecessors' garbage is not frozen."""
    result = _in_fresh_interpreter("""
        import gc, json, weakref
        from mnist_experiments.launch.heap import heavy_imports

        class Node:
            pass

        with heavy_imports():
            import json as again  # noqa: F401 - already imported
        node = Node()
        node.cycle = node  # garbage only the cyclic collector frees
        alive = weakref.ref(node)
        del node
        with heavy_imports():
            pass
        gc.collect()
        print(json.dumps({"frozen": gc.get_freeze_count(), "enabled": gc.isenabled(),
                          "collected": alive() is None}))
    """)
    assert result["frozen"] == 0
    assert result["enabled"]
    assert result["collected"]  # the cycle was left to the collector, which freed it


def test_the_collector_stays_off_if_the_caller_had_turned_it_off():
    result = _in_fresh_interpreter("""
        import gc, json
        from mnist_experiments.launch.heap import heavy_imports

        gc.disable()
        with heavy_imports():
            import mlflow  # noqa: F401
        print(json.dumps({"enabled": gc.isenabled()}))
    """)
    assert result["enabled"] is False
