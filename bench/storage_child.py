"""trainui's side of bench/storage.py, in a process of its own: stage a bucket as the learner
does (``_stage SPEC``) or store a folder as it does (``_store SPEC``); prints one JSON line.

Its imports are the learner's for these steps, not the bench's (which would add a quarter of a
second of start-up that a learner does not pay).
"""

from __future__ import annotations

import json
import sys
import time


def _stage_child(spec: dict) -> None:
    from trainui.storage import open_store
    from trainui.storage.cache import Cache
    from trainui.storage.staging import stage

    s = spec["store"]
    store = open_store(s["type"], s["bucket"], s["connection"], "/nowhere")
    started = time.perf_counter()
    counters = stage(store, list(store.list_objects()), spec["dest"], cache=Cache(spec["cache"]))
    print(
        json.dumps(
            {
                "objects": counters.objects_done,
                "bytes": counters.bytes_done,
                "transferred": counters.bytes_transferred,
                "hits": counters.cache_hits,
                "in_process": time.perf_counter() - started,
            }
        )
    )


def _store_child(spec: dict) -> None:
    from trainui.storage import iter_files, open_store
    from trainui.storage.staging import run_parallel

    s = spec["store"]
    store = open_store(s["type"], s["bucket"], s["connection"], "/nowhere")
    jobs = [(spec["prefix"] + key, path, size) for key, path, size in iter_files(spec["src"])]

    def upload(job, _may_defer: bool) -> bool:
        store.upload(job[1], job[0])
        return True

    error = run_parallel(jobs, upload)
    store.close()
    if error is not None:
        raise error
    print(json.dumps({"files": len(jobs), "bytes": sum(j[2] for j in jobs)}))


if __name__ == "__main__":
    spec = json.loads(sys.argv[2])
    (_stage_child if sys.argv[1] == "_stage" else _store_child)(spec)
