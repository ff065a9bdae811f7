"""The frameworks catalogue (SPEC §10): its errors located, its matching, C104's sentence."""

from __future__ import annotations

import pytest

from trainui import frameworks
from trainui.frameworks import CatalogueError, parse, unsupported

GOOD = b"""\
[[framework]]
name = "pytorch"
versions = ["2.4", "2.5"]
runtime = "container"
image = "docker.io/pytorch/pytorch:{version}-cuda12.4-cudnn9-runtime"
options = ["--shm-size=8g"]

[[framework]]
name = "tensorflow"
versions = ["2.*"]
runtime = "venv"
path = "/opt/envs/tf-{version}"

[[framework]]
name = "numpy"
versions = ["*"]
runtime = "host"
"""


def catalogue(raw: bytes = GOOD) -> frameworks.Catalogue:
    return frameworks.Catalogue("/etc/f.toml", parse(raw, "/etc/f.toml"))


def problems(raw: bytes) -> list[str]:
    with pytest.raises(CatalogueError) as caught:
        parse(raw, "f.toml")
    return caught.value.problems


def test_a_good_catalogue_matches_names_case_blind_and_versions_by_pattern():
    c = catalogue()
    assert [f.name for f in c.frameworks] == ["pytorch", "tensorflow", "numpy"]
    assert c.find("PyTorch", "2.4").runtime == "container"
    assert c.find("pytorch", "2.6") is None
    assert c.find("tensorflow", "2.16").runtime == "venv"
    assert c.find("tensorflow", "1.15") is None
    assert c.find("numpy", "anything").runtime == "host"
    spec = c.find("tensorflow", "2.16").runtime_spec("2.16")
    assert spec == {"runtime": "venv", "framework": "tensorflow 2.16", "path": "/opt/envs/tf-2.16"}
    spec = c.find("pytorch", "2.5").runtime_spec("2.5")
    assert spec["image"] == "docker.io/pytorch/pytorch:2.5-cuda12.4-cudnn9-runtime"
    assert spec["options"] == ["--shm-size=8g"]
    described = c.describe()
    assert described["catalogue"] == "/etc/f.toml" and len(described["frameworks"]) == 3
    assert described["frameworks"][1]["path"] == "/opt/envs/tf-{version}"


@pytest.mark.parametrize("version", ["2.16/../../..", "2.1/x", "2.16:latest", "2.16 ", ".."])
def test_a_version_is_never_a_path_or_a_tag(version):
    # it becomes part of a venv's folder or an image's name: "2.*" must not let a manifest
    # point the venv at any folder of the machine
    c = catalogue()
    assert c.find("tensorflow", version) is None and c.find("numpy", version) is None
    assert "is not a version: letters, digits and . _ + - only" in c.check("numpy", version)
    assert c.find("numpy", "1.2-py3+cu12_x") is not None


def test_without_a_catalogue_nothing_is_refused(tmp_path):
    c = frameworks.load({"XDG_CONFIG_HOME": str(tmp_path)})
    assert not c.present and c.check("anything", "1") is None
    assert "every framework runs on the host" in c.describe()["message"]
    # a file named explicitly must exist
    with pytest.raises(CatalogueError, match="no such file"):
        frameworks.load({"TRAINUI_FRAMEWORKS": str(tmp_path / "missing.toml")})
    assert frameworks.catalogue_path({"XDG_CONFIG_HOME": "/x"}) == "/x/trainui/frameworks.toml"


def test_c104_lists_what_is_supported_and_guesses_what_was_meant():
    c = catalogue()
    why = c.check("pytorh", "2.4")
    assert why.startswith("framework pytorh is not supported here (did you mean pytorch?)")
    assert "Supported: pytorch 2.4, 2.5; tensorflow 2.*; numpy *" in why
    why = c.check("pytorch", "2.6")
    assert "pytorch versions 2.4, 2.5 (did you mean pytorch 2.5?)" in why
    assert c.check("caffe", "1.0").startswith("framework caffe is not supported here. Supported")
    assert c.check("Pytorch", "2.4") is None
    # the CLI checks a service's answer with the same words
    assert unsupported("pytorh", "2.4", c.describe()["frameworks"]) == c.check("pytorh", "2.4")


def test_every_problem_is_located_at_its_entry():
    found = problems(
        b"""\
[[framework]]
name = "pytorch"
versions = ["2.4"]
runtime = "container"
imgae = "x"

[[framework]]
name = "tf"
versions = []
runtime = "virtualenv"

[[framework]]
name = "jax"
versions = ["0.4"]
runtime = "venv"
path = "relative/env"
image = "x"

[[framework]]
name = "PyTorch"
versions = ["2.4"]
runtime = "host"
"""
    )
    assert "f.toml:1: [[framework]] #1: unknown key 'imgae' (did you mean image?)" in found
    assert any(
        p.startswith("f.toml:1: [[framework]] #1: a container runtime needs image") for p in found
    )
    assert any(p.startswith("f.toml:7: [[framework]] #2: versions is required") for p in found)
    assert any(
        p.startswith("f.toml:7: [[framework]] #2: runtime must be one of container, venv")
        and "'virtualenv'" in p
        for p in found
    )
    assert "f.toml:12: [[framework]] #3: path must be absolute (got 'relative/env')" in found
    assert "f.toml:12: [[framework]] #3: image is for a container runtime, not venv" in found
    # entry 1 had errors, so entry 4's PyTorch 2.4 is no duplicate; a duplicate is
    found = problems(
        GOOD + b'[[framework]]\nname = "PYTORCH"\nversions = ["2.5"]\nruntime = "host"\n'
    )
    assert found == [
        "f.toml:18: [[framework]] #4: PYTORCH 2.5 is already in [[framework]] #1: each"
        " version has one runtime"
    ]


def test_broken_toml_and_hostile_input_are_one_located_sentence():
    (syntax,) = problems(b'[[framework]]\nname = "pytorch\n')
    assert syntax.startswith("f.toml: ") and "line 2" in syntax
    assert problems(b"\xff\xfe")[0] == "f.toml: not UTF-8 text (byte 0)"
    assert "larger than 1 MiB" in problems(b"#" * ((1 << 20) + 1))[0]
    assert problems(b"[frameworks]\n")[0] == (
        "f.toml: unknown table or key 'frameworks' (did you mean [[framework]]?)"
    )
    assert "a list of tables" in problems(b"[framework]\nname='x'\n")[0]
    error = CatalogueError("f.toml", ["a", "b"])
    assert str(error) == "the frameworks catalogue is not valid: a (and 1 more)"


def test_c104_points_at_the_version_when_the_name_is_supported():
    from trainui.core.manifest import parse_manifest

    text = (
        "model_definition:\n  name: x\n  framework:\n    name: {name}\n    version: '{version}'\n"
        "  execution: {{command: 'true', resource: small}}\n"
        "training_data_reference:\n  connection: {{}}\n  source: {{bucket: d, type: local}}\n"
        "training_results_reference:\n  connection: {{}}\n  target: {{bucket: r, type: local}}\n"
    )
    entries = catalogue().describe()["frameworks"]

    def problem(name: str, version: str):
        report = parse_manifest(text.format(name=name, version=version), "m.yml", env={})
        assert report.ok, report.formatted()
        return frameworks.manifest_problem(report.manifest, entries)

    why, line, column = problem("pytorch", "2.6")
    assert (line, column) == (5, 14) and "did you mean pytorch 2.5?" in why
    why, line, column = problem("pytorh", "2.4")
    assert (line, column) == (4, 11) and "did you mean pytorch?" in why
    assert problem("tensorflow", "2.16") is None


def test_a_version_named_as_it_is_wins_over_an_earlier_pattern_and_numbers_are_refused():
    both = frameworks.Catalogue(
        "/etc/f.toml",
        parse(
            b'[[framework]]\nname = "tensorflow"\nversions = ["*"]\nruntime = "host"\n\n'
            b'[[framework]]\nname = "tensorflow"\nversions = ["2.16"]\nruntime = "venv"\n'
            b'path = "/opt/envs/tf-{version}"\n',
            "/etc/f.toml",
        ),
    )
    assert both.find("tensorflow", "2.16").runtime == "venv"
    assert both.find("tensorflow", "2.15").runtime == "host"
    found = problems(b'[[framework]]\nname = "numpy"\nversions = [1.20]\nruntime = "host"\n')
    assert any('versions: 1.2 is a number (1.20 would read 1.2): write it in quotes' in p
               for p in found), found  # fmt: skip
