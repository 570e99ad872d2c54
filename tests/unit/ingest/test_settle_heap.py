"""`settle_heap_for_consuming`: what `finverse-reco consume` does to the collector once started."""

from __future__ import annotations

import subprocess
import sys

# In a process of its own: freezing the heap of the test process would outlive the test.
PROBE = """
import gc
from finverse_reco.ingest import settle_heap_for_consuming
from finverse_reco.ingest.consumer import GC_YOUNG_THRESHOLD

assert gc.get_freeze_count() == 0
before = gc.get_threshold()
settle_heap_for_consuming()
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()
assert gc.isenabled()
assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:]), gc.get_threshold()
gc.set_threshold(50_000)
settle_heap_for_consuming()  # never lowers a threshold set higher already
assert gc.get_threshold()[0] == 50_000
print("ok")
"""


def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "ok"
