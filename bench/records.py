"""Which record type for a run (issue 15, item 4): msgspec, a dataclass or pydantic, in one run.

For 10,000 runs shaped as the service keeps them (the API's fields and the internal ones), each
kind is timed on what the service does with its records: build them (loading the run store),
encode them to JSON (a list of every run), decode JSON into them (a learner's status record,
a client's list), and apply a state change (a new record with two fields replaced). Also the
cost of importing the library (what the learner and the CLI pay at start-up), in a fresh
interpreter each time. A kind whose library is not installed is left out, said in one line.

    python bench/records.py [--runs 10000] [--repeat 7]

Prints one table: the median and p95 of each figure over the repeats, in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from _common import row

FIELDS = {  # name -> a value of a typical run (the API's fields, then the internal ones)
    "model_id": "training-DOl4q2LkR",
    "url": "/v3/models/training-DOl4q2LkR",
    "name": "mnist",
    "description": "a bench run",
    "framework": {"name": "sh", "version": "1"},
    "resource": "small",
    "gpus": 1,
    "gpu_ids": [0],
    "status": "completed",
    "status_message": "completed: the training command exited with code 0",
    "error_code": None,
    "exit_code": 0,
    "submitted_at": "2026-12-04T17:24:56.861Z",
    "started_at": "2026-12-04T17:24:56.901Z",
    "finished_at": "2026-12-04T17:25:06.001Z",
    "owner": "alice",
    "data": {"type": "local", "bucket": "data", "endpoint": ""},
    "results": {"type": "local", "bucket": "results", "endpoint": "", "prefix": "x/"},
    "progress": {
        "phase": None, "bytes_done": 0, "bytes_total": 0, "objects_done": 0, "objects_total": 0,
    },
    "seq": 1,
    "queued_epoch": 1796405096.5,
    "learner_pid": 4242,
    "learner_start": "123456",
    "finished_epoch": 1796405106.0,
    "deleted": 0,
}  # fmt: skip
TYPES = {
    "framework": "dict | None", "gpus": "int", "gpu_ids": "list | None",
    "exit_code": "int | None", "data": "dict | None", "results": "dict | None",
    "progress": "dict | None", "seq": "int", "queued_epoch": "float | None",
    "learner_pid": "int | None", "finished_epoch": "float | None", "deleted": "int",
}  # fmt: skip


def _annotations() -> str:
    return "\n".join(f"    {n}: {TYPES.get(n, 'str | None')}" for n in FIELDS)


def msgspec_kind():
    import msgspec

    namespace: dict = {"msgspec": msgspec}
    exec(f"class Run(msgspec.Struct, frozen=True):\n{_annotations()}\n", namespace)
    Run = namespace["Run"]
    encoder, decoder = msgspec.json.Encoder(), msgspec.json.Decoder(list[Run])
    return {
        "build": lambda rows: [Run(**r) for r in rows],
        "encode": encoder.encode,
        "decode": decoder.decode,
        "change": lambda runs: [
            msgspec.structs.replace(r, status="failed", status_message="x") for r in runs
        ],
    }


def dataclass_kind():
    import dataclasses

    namespace: dict = {"dataclasses": dataclasses}
    exec(
        f"@dataclasses.dataclass(frozen=True, slots=True)\nclass Run:\n{_annotations()}\n",
        namespace,
    )
    Run = namespace["Run"]
    names = list(FIELDS)

    def encode(runs):  # what a dataclass needs: a dict per record, then the json module
        return json.dumps([{n: getattr(r, n) for n in names} for r in runs]).encode()

    return {
        "build": lambda rows: [Run(**r) for r in rows],
        "encode": encode,
        "decode": lambda data: [Run(**r) for r in json.loads(data)],  # no validation at all
        "change": lambda runs: [
            dataclasses.replace(r, status="failed", status_message="x") for r in runs
        ],
    }


def pydantic_kind():
    import pydantic

    namespace: dict = {"pydantic": pydantic}
    exec(
        "class Run(pydantic.BaseModel):\n"
        "    model_config = pydantic.ConfigDict(frozen=True, protected_namespaces=())\n"
        f"{_annotations()}\n",
        namespace,
    )
    Run = namespace["Run"]
    runs_adapter = pydantic.TypeAdapter(list[Run])
    return {
        "build": lambda rows: [Run(**r) for r in rows],
        "encode": runs_adapter.dump_json,
        "decode": runs_adapter.validate_json,
        "change": lambda runs: [
            r.model_copy(update={"status": "failed", "status_message": "x"}) for r in runs
        ],
    }


KINDS = {"msgspec": ("msgspec", msgspec_kind), "dataclass": ("dataclasses", dataclass_kind),
         "pydantic": ("pydantic", pydantic_kind)}  # fmt: skip


def import_ms(module: str, repeat: int) -> list[float]:
    """Seconds to import ``module`` in a fresh interpreter (``-X importtime``'s total)."""
    samples = []
    for _ in range(repeat):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
        )
        total = 0
        for line in done.stderr.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[2].strip() == module:
                total = int(parts[1])  # cumulative microseconds of the top-level import
        samples.append(total / 1e6)
    return samples


def timed(fn, arg, repeat: int) -> tuple[list[float], object]:
    samples, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn(arg)
        samples.append(time.perf_counter() - started)
    return samples, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rows = [
        {**FIELDS, "model_id": f"training-{i:09d}", "seq": i, "url": f"/v3/models/{i}"}
        for i in range(args.runs)
    ]
    text = json.dumps(rows).encode()
    print(f"{args.runs:,} runs, {args.repeat} repeats, {sys.version.split()[0]}")
    print(f"{'':44} {'p50':>9} {'p95':>9}")
    for kind, (module, make) in KINDS.items():
        try:
            ops = make()
        except ImportError as error:
            print(f"{kind}: left out ({error})")
            continue
        built_samples, built = timed(ops["build"], rows, args.repeat)
        print(row(f"{kind}: build {args.runs:,}", built_samples))
        encoded_samples, _ = timed(ops["encode"], built, args.repeat)
        print(row(f"{kind}: encode {args.runs:,} to JSON", encoded_samples))
        decoded_samples, decoded = timed(ops["decode"], text, args.repeat)
        assert len(decoded) == args.runs
        print(row(f"{kind}: decode {args.runs:,} from JSON", decoded_samples))
        changed_samples, _ = timed(ops["change"], built, args.repeat)
        print(row(f"{kind}: change the state of {args.runs:,}", changed_samples))
        print(row(f"{kind}: import {module}", import_ms(module, args.repeat)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
