"""The editor's framework completion: where the cursor is, what it becomes."""

from __future__ import annotations

from trainui.tui.framework_complete import complete

CATALOGUE = [
    {"name": "pytorch", "versions": ["2.4", "2.5"], "runtime": "container"},
    {"name": "tensorflow", "versions": ["2.16", "2.*"], "runtime": "venv"},
    {"name": "numpy", "versions": ["*"], "runtime": "host"},
]
BLOCK = """\
model_definition:
  name: demo
  framework:
    name: py
    version: "2.4"
  execution:
    command: train
"""
FLOW = 'model_definition:\n  framework: {name: tensorflow, version: "2.1"}\n'


def apply(text: str, done) -> str:
    lines = text.split("\n")
    line = lines[done.line]
    lines[done.line] = line[: done.start] + done.text + line[done.end :]
    return "\n".join(lines)


def test_a_name_completes_from_what_is_typed_then_cycles():
    done = complete(BLOCK, (3, 12), CATALOGUE)  # after "py"
    assert (done.field, done.text, done.choices) == (
        "name", "pytorch", ["pytorch", "tensorflow", "numpy"]
    )  # fmt: skip
    text = apply(BLOCK, done)
    assert "    name: pytorch\n" in text
    again = complete(text, (3, 17), CATALOGUE)
    assert again.text == "tensorflow"  # the next one
    # the model's own name: not the framework's
    assert complete(BLOCK, (1, 9), CATALOGUE) is None


def test_a_version_comes_from_its_frameworks_versions_quoted():
    done = complete(BLOCK.replace("name: py", "name: pytorch"), (4, 15), CATALOGUE)
    assert done.field == "version" and done.text == '"2.5"' and done.choices == ["2.4", "2.5"]
    flow = complete(FLOW, (1, 44), CATALOGUE)  # after "2.1" in the flow mapping
    assert flow.text == '"2.16"' and flow.choices == ["2.16"]  # patterns are not offered
    assert (
        apply(FLOW, flow) == 'model_definition:\n  framework: {name: tensorflow, version: "2.16"}\n'
    )
    name = complete(FLOW, (1, 20), CATALOGUE)
    assert name.text == "numpy"  # tensorflow is a choice already: the next one
    none = complete(FLOW.replace("tensorflow", "caffe"), (1, 40), CATALOGUE)
    assert none.text is None and none.field == "version"
