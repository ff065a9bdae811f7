"""Manifests to start from in the editor: one per kind of object store, a sweep (an
experiment, SPEC §9) and the demo run."""

from __future__ import annotations

import os

from trainui.core.record import Record


class Template(Record):
    """``text``: the manifest; ``definition``: a model definition to suggest ("" for none)."""

    __slots__ = ("key", "title", "text", "definition")
    _defaults = {"definition": ""}


_LOCAL = """\
model_definition:
  name: my-run
  description: what this run trains
  framework:
    name: pytorch
    version: "2.3"
  execution:
    command: python3 train.py --data ${DATA_DIR} --out ${RESULT_DIR}
    resource: small              # small = 1 GPU, medium = 2, large = 4
training_data_reference:
  connection: {}                 # local buckets: folders under <home>/buckets
  source:
    bucket: my-data
    type: local
training_results_reference:
  connection: {}
  target:
    bucket: my-results
    type: local
"""

_S3 = """\
model_definition:
  name: my-run
  framework:
    name: tensorflow
    version: "2.15"
  execution:
    command: python3 train.py --data ${DATA_DIR}
    resource: small
training_data_reference:
  connection:
    endpoint_url: https://s3.example.com
    aws_access_key_id: ${S3_KEY_ID}          # taken from your environment when you submit
    aws_secret_access_key: ${S3_SECRET}
  source:
    bucket: my-data
    type: s3
training_results_reference:
  connection:
    endpoint_url: https://s3.example.com
    aws_access_key_id: ${S3_KEY_ID}
    aws_secret_access_key: ${S3_SECRET}
  target:
    bucket: my-results
    type: s3
"""

_SWIFT = """\
model_definition:
  name: my-run
  framework:
    name: pytorch
    version: "2.3"
  execution:
    command: python3 train.py --data ${DATA_DIR}
    resource: small
training_data_reference:
  connection:
    auth_url: https://swift.example.com/auth/v1.0
    user_name: ${SWIFT_USER}                 # taken from your environment when you submit
    password: ${SWIFT_PASSWORD}
  source:
    bucket: my-data
    type: bluemix_objectstore
training_results_reference:
  connection:
    auth_url: https://swift.example.com/auth/v1.0
    user_name: ${SWIFT_USER}
    password: ${SWIFT_PASSWORD}
  target:
    bucket: my-results
    type: bluemix_objectstore
"""


_SWEEP = """\
model_definition:
  name: my-sweep
  framework:
    name: pytorch
    version: "2.3"
  execution:
    # each run gets its parameters' values as environment variables, under their names
    command: >-
      python3 train.py --data ${DATA_DIR} --out ${RESULT_DIR}
      --lr ${learning_rate} --dropout ${dropout} --layers ${layers}
    resource: small
training_data_reference:
  connection: {}
  source:
    bucket: my-data
    type: local
training_results_reference:
  connection: {}
  target:
    bucket: my-results
    type: local
experiment:                      # a sweep: one run per set of values
  name: my-sweep
  method: grid                   # grid: every combination; random: `count` draws
  max_parallel: 2                # at most this many of its runs at once
  parameters:
    learning_rate: {values: [0.1, 0.01, 0.001]}
    dropout: {values: [0.1, 0.3]}
    layers: {values: [2, 3]}
  objective: {metric: val_loss, goal: minimize}   # a metric the runs write (metrics.jsonl)
  # early_stopping: {rule: median, after_steps: 100}
"""


def demo_folder() -> str:
    import trainui

    return os.path.join(os.path.dirname(os.path.abspath(trainui.__file__)), "demo")


def templates() -> dict[str, Template]:
    demo = demo_folder()
    try:
        with open(os.path.join(demo, "manifest.yml"), encoding="utf-8") as f:
            demo_text = f.read()
    except OSError:
        demo_text = _LOCAL
    return {
        t.key: t
        for t in (
            Template("local", "Local buckets (folders under the trainui home)", _LOCAL),
            Template("s3", "S3 buckets (credentials from your environment)", _S3),
            Template("swift", "OpenStack Swift (bluemix_objectstore)", _SWIFT),
            Template("sweep", "An experiment: a sweep over parameters (many runs)", _SWEEP),
            Template(
                "demo",
                "The demo run (numpy, on the CPU; `trainui demo` puts its data in place)",
                demo_text,
                os.path.join(demo, "model"),
            ),
        )
    }
