"""`trainui validate` and `trainui schema` as a user runs them: a real process, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def trainui(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trainui", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def verdict(result: subprocess.CompletedProcess) -> str:
    """The line saying valid or not: the last one before the notes (an experiment's size, what
    the framework was checked against), which come after it."""
    lines = result.stdout.splitlines()
    while lines and lines[-1].startswith(("framework: ", "an experiment of ")):
        lines.pop()
    return lines[-1]


def test_the_seed_manifest_is_valid_with_warnings():
    result = trainui("validate", str(EXAMPLES / "seed-s3.yml"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith(
        "seed-s3.yml:18:19: training_data[0].connection.endpoint_url: warning: "
        "'<auth-url>' looks like a placeholder; put the real value here"
    )
    assert lines[-2].endswith("seed-s3.yml: valid (6 warnings)")
    assert lines[-1].startswith("framework: ")  # a note, after the verdict
    assert result.stderr == ""


def test_problems_are_printed_located_and_the_exit_code_is_1(tmp_path):
    bad = tmp_path / "job.yaml"
    text = (EXAMPLES / "seed-s3.yml").read_text().replace("resource: small", "resource: xlarge")
    bad.write_text(text)
    result = trainui("validate", str(bad))
    assert result.returncode == 1
    assert (
        f"{bad}:15:15: model_definition.execution.resource: 'xlarge' is not one of small, "
        "medium, large; did you mean 'large'?"
    ) in result.stdout
    assert verdict(result) == f"{bad}: not valid (1 error, 6 warnings)"


def test_no_secret_is_ever_printed(tmp_path):
    manifest = tmp_path / "m.yml"
    text = (EXAMPLES / "seed-swift.yml").read_text()
    text = text.replace("password: <password>", "password: [Sup3rS3cret]", 1)
    text = text.replace("password: <password>", "password: <Sup3rS3cret2>", 1)
    manifest.write_text(text)
    result = trainui("validate", str(manifest), "--json")
    assert result.returncode == 1
    assert "Sup3rS3cret" not in result.stdout + result.stderr
    assert "Sup3rS3cret2" not in trainui("validate", str(manifest)).stdout


def test_unset_environment_references_are_errors_and_set_ones_pass(tmp_path):
    manifest = tmp_path / "m.yml"
    text = (EXAMPLES / "seed-s3.yml").read_text()
    manifest.write_text(
        text.replace("aws_secret_access_key: <password>", "aws_secret_access_key: ${MY_S3_KEY}")
    )
    env = {k: v for k, v in os.environ.items() if k != "MY_S3_KEY"}
    missing = subprocess.run(
        [sys.executable, "-m", "trainui", "validate", str(manifest)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert missing.returncode == 1
    assert "environment variable ${MY_S3_KEY} is not set" in missing.stdout
    assert trainui("validate", str(manifest), env={"MY_S3_KEY": "x"}).returncode == 0


def test_json_output_lists_every_problem(tmp_path):
    bad = tmp_path / "m.yml"
    bad.write_text("model_definition:\n  name: x\n  nmae: y\n")
    result = trainui("validate", str(bad), "--json")
    assert result.returncode == 1
    out = json.loads(result.stdout)
    assert out["valid"] is False
    first = out["problems"][0]
    assert first == {
        "path": "model_definition.nmae",
        "line": 3,
        "column": 3,
        "message": "unknown key 'nmae'; did you mean 'name'?",
        "severity": "error",
    }


def test_a_model_definition_directory_and_zip_are_checked(tmp_path):
    model = EXAMPLES / "demo" / "model"
    assert trainui("validate", str(EXAMPLES / "demo" / "manifest.yml"), str(model)).returncode == 0
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(model / "train.py", "train.py")
    result = trainui("validate", str(EXAMPLES / "demo" / "manifest.yml"), str(archive))
    assert result.returncode == 0
    assert verdict(result).endswith("model.zip (1 file): valid")


def test_a_command_whose_script_is_missing_gets_a_warning(tmp_path):
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("other.py", "print(1)\n")
    result = trainui("validate", str(EXAMPLES / "demo" / "manifest.yml"), str(archive))
    assert result.returncode == 0
    assert (
        "model_definition.execution.command: warning: runs 'train.py', which is not in the "
        "model definition"
    ) in result.stdout


@pytest.mark.parametrize(
    ("command", "warned"),
    [
        ("python -c 'import sys; print(sys.prefix)'", None),  # code, not a file
        ("python3 -u -m trainer.main --epochs 3", None),  # a module
        ("python3 -X importtime train.py", None),  # -X takes its argument; train.py is there
        ("bash -c 'echo hi'", None),
        ("python3 -W ignore missing.py", "missing.py"),
    ],
)
def test_the_script_warning_knows_code_modules_and_options_with_arguments(
    tmp_path, command, warned
):
    manifest = tmp_path / "m.yml"
    text = (EXAMPLES / "demo" / "manifest.yml").read_text()
    original = "python3 train.py --data ${DATA_DIR}/spirals.csv --epochs 30"
    manifest.write_text(text.replace(original, json.dumps(command)))
    result = trainui("validate", str(manifest), str(EXAMPLES / "demo" / "model"))
    assert result.returncode == 0, result.stdout + result.stderr
    if warned is None:
        assert "which is not in the model definition" not in result.stdout, result.stdout
    else:
        assert f"runs '{warned}', which is not in the model definition" in result.stdout


def test_a_tar_model_definition_is_refused_with_a_sentence(tmp_path):
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(EXAMPLES / "demo" / "model" / "train.py", "train.py")
    result = trainui("validate", str(EXAMPLES / "demo" / "manifest.yml"), str(archive))
    assert result.returncode == 1
    assert (
        "model.tar.gz is a gzip archive: only .zip model definitions are accepted" in result.stdout
    )
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"\x00\x01\x02binary", "is a binary file"),
        (b"- a\n- b\n", "a manifest must be a YAML mapping, but this is a list"),
        (
            b"a: &a [1,1,1,1,1,1,1,1,1,1]\n"
            + b"".join(
                b"b%d: &b%d [%s]\n"
                % (i, i, b",".join([b"*a" if i == 0 else b"*b%d" % (i - 1)] * 10))
                for i in range(8)
            ),
            "billion laughs",
        ),
        (b"[" * 20000 + b"]" * 20000, "nested deeper than 64 levels"),
    ],
    ids=["empty", "binary", "list", "alias-bomb", "deep"],
)
def test_hostile_files_get_one_clear_error_and_no_traceback(tmp_path, content, message):
    hostile = tmp_path / "hostile.yml"
    hostile.write_bytes(content)
    result = trainui("validate", str(hostile))
    assert result.returncode == 1
    assert message in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_usage_errors_exit_2():
    result = trainui("validate")
    assert result.returncode == 2
    assert "the following arguments are required: MANIFEST.yml" in result.stderr


def test_schema_prints_the_json_schema():
    result = trainui("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    execution = schema["properties"]["model_definition"]["properties"]["execution"]
    assert execution["properties"]["resource"]["enum"] == ["small", "medium", "large"]


NO_CATALOGUE_NOTE = (
    "framework: not checked: the service has no frameworks catalogue, so every framework "
    "runs on the host"
)


def test_a_service_without_a_frameworks_catalogue_is_said_once_after_the_verdict(home, tmp_path):
    """The note on the framework says its one thing once (not "...: every framework runs on
    the host): every framework runs on the host"), and never between the errors and the
    verdict."""
    home.env.pop("TRAINUI_FRAMEWORKS", None)
    home.env["XDG_CONFIG_HOME"] = str(tmp_path / "config")  # no catalogue on this machine
    home.cli("list", check=True)  # a service answers now
    assert home.service_pid()
    good = home.manifest("true")
    result = home.cli("validate", str(good), process=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"{good}: valid", NO_CATALOGUE_NOTE]
    bad = tmp_path / "bad.yml"
    bad.write_text(good.read_text().replace("resource: small", "resource: huge"))
    result = home.cli("validate", str(bad), process=True)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{bad}:6:15: model_definition.execution.resource: 'huge'")
    assert lines[1:] == [f"{bad}: not valid (1 error, 0 warnings)", NO_CATALOGUE_NOTE]
    out = json.loads(home.cli("validate", str(good), "--json", process=True).stdout)
    assert out["frameworks_checked"] == NO_CATALOGUE_NOTE.removeprefix("framework: ")


def test_a_missing_model_definition_is_what_the_verdict_names(tmp_path):
    """Not `missing.zip: missing.zip does not exist` and then `manifest.yml: not valid`, which
    blamed the manifest."""
    manifest = str(EXAMPLES / "demo" / "manifest.yml")
    missing = str(tmp_path / "missing.zip")
    result = trainui("validate", manifest, missing)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"model definition: {missing} does not exist"
    assert verdict(result) == f"model definition {missing}: not valid; {manifest}: valid"
    assert all(line.count(missing) <= 1 for line in lines), result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    # with the manifest's own errors too: both named
    bad = tmp_path / "bad.yml"
    bad.write_text(Path(manifest).read_text().replace("resource: small", "resource: huge"))
    result = trainui("validate", str(bad), missing)
    assert result.returncode == 1
    assert f"model definition: {missing} does not exist" in result.stdout.splitlines()
    assert verdict(result) == (
        f"{bad}: not valid (1 error, 0 warnings); model definition {missing}: not valid"
    )
    json_out = json.loads(trainui("validate", manifest, missing, "--json").stdout)
    assert json_out["valid"] is False
    assert json_out["model_definition"]["error"] == f"{missing} does not exist"


def test_the_model_definition_and_manifest_in_trains_order_are_read_the_same():
    """`trainui train MODEL MANIFEST` takes them in that order: `validate` does too."""
    manifest = str(EXAMPLES / "demo" / "manifest.yml")
    model = str(EXAMPLES / "demo" / "model")
    swapped = trainui("validate", model, manifest)
    assert swapped.returncode == 0, swapped.stdout + swapped.stderr
    assert swapped.stdout == trainui("validate", manifest, model).stdout
