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


def _transfer_manager(spec: dict):
    """boto3's transfer manager (s3transfer, behind ``aws s3``) on a botocore client pooled for
    its threads: botocore's own data path, the anchor the issue names."""
    import boto3
    from boto3.s3.transfer import TransferConfig

    c = spec["store"]["connection"]
    threads = spec.get("threads", 8)
    client = boto3.client(
        "s3",
        endpoint_url=c["endpoint_url"],
        aws_access_key_id=c["aws_access_key_id"],
        aws_secret_access_key=c["aws_secret_access_key"],
        region_name="us-east-1",
        config=boto3.session.Config(max_pool_connections=2 * threads),
    )
    config = TransferConfig(max_concurrency=threads, use_threads=True)
    return client, boto3.s3.transfer.create_transfer_manager(client, config)


def _boto3_stage_child(spec: dict) -> None:
    import os

    client, manager = _transfer_manager(spec)
    bucket = spec["store"]["bucket"]
    futures, size = [], 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", ()):
            dest = os.path.join(spec["dest"], item["Key"])
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            futures.append(manager.download(bucket, item["Key"], dest))
            size += item["Size"]
    for future in futures:
        future.result()
    manager.shutdown()
    print(json.dumps({"objects": len(futures), "bytes": size}))


def _boto3_store_child(spec: dict) -> None:
    from trainui.storage import iter_files

    _client, manager = _transfer_manager(spec)
    bucket = spec["store"]["bucket"]
    jobs = [(spec["prefix"] + key, path, size) for key, path, size in iter_files(spec["src"])]
    futures = [manager.upload(path, bucket, key) for key, path, _size in jobs]
    for future in futures:
        future.result()
    manager.shutdown()
    print(json.dumps({"files": len(jobs), "bytes": sum(j[2] for j in jobs)}))


if __name__ == "__main__":
    spec = json.loads(sys.argv[2])
    children = {
        "_stage": _stage_child,
        "_store": _store_child,
        "_boto3_stage": _boto3_stage_child,
        "_boto3_store": _boto3_store_child,
    }
    children[sys.argv[1]](spec)
