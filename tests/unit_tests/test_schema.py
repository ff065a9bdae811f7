"""The JSON Schema comes from the same source as the validator, and they agree."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from trainui.core.manifest import json_schema, parse_manifest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BASE = (EXAMPLES / "seed-s3.yml").read_text()


def schema_accepts(text: str) -> bool:
    document = yaml.safe_load(text)
    # YAML reads 1.2 as a float; editors do the same, which is why versions may be numbers
    return jsonschema.Draft7Validator(json_schema()).is_valid(document)


def test_the_schema_is_a_valid_draft7_schema():
    jsonschema.Draft7Validator.check_schema(json_schema())


@pytest.mark.parametrize(
    "path", sorted(EXAMPLES.glob("*.yml")) + sorted(EXAMPLES.glob("*/manifest.yml")), ids=str
)
def test_schema_and_validator_accept_every_example(path):
    text = path.read_text()
    assert parse_manifest(text).ok
    assert schema_accepts(text)


VARIANTS = {
    "version as a number": ("version: 1.2-py3", "version: 1.2", True),
    "single-mapping data reference": (
        "training_data:\n- connection:",
        "training_data:\n  connection:",
        None,
    ),
    "a bad resource": ("resource: small", "resource: xlarge", False),
    "an unknown key": ("resource: small", "resource: small\n    gpus: 3", False),
    "a bad store type": ("type: s3\ntraining_results", "type: gcs\ntraining_results", False),
    "a swift key in an s3 connection": (
        "endpoint_url: <auth-url>\n    aws",
        "auth_url: <auth-url>\n    aws",
        False,
    ),
    "a missing secret": ("    aws_secret_access_key: <password>\n  source", "  source", False),
    "two data references": ("training_data:", "training_data_reference: []\ntraining_data:", False),
    "a bucket with a slash": ("bucket: mnist-training-data", "bucket: a/b", False),
    "an empty name": ("name: tf-mnist-showtest1", "name: ''", False),
    "a missing command": ("    command: python3", "    cmd: python3", False),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_schema_and_validator_agree_on_variants(name):
    old, new, _ = VARIANTS[name]
    assert old in BASE
    text = BASE.replace(old, new, 1)
    assert schema_accepts(text) == parse_manifest(text).ok, parse_manifest(text).formatted()
    expected = VARIANTS[name][2]
    if expected is not None:
        assert parse_manifest(text).ok is expected
