"""`trainui list` against a real service: the table's columns asked with fields=, the JSON of
every run, and what fields= answers."""

from __future__ import annotations

import json

from trainui.cli import LIST_FIELDS
from trainui.client import BlockingClient


def test_fields_keeps_only_the_keys_asked_and_the_table_shows_them(home):
    model = home.model("m", {"train.py": "print(1)\n"})
    ids = [home.submit(model, home.manifest("true", name=f"run-{i}")) for i in range(2)]
    with BlockingClient(home=str(home.path), environ=home.env) as client:
        runs, count = client.list_runs(fields=LIST_FIELDS, shared=False)
        assert count == 2
        assert [sorted(run) for run in runs] == [sorted(LIST_FIELDS)] * 2
        assert [run["model_id"] for run in runs] == ids
        # a name no run has is left out; asked again, the same answer
        assert client.list_runs(fields=("name", "nothing"), shared=False)[0] == [
            {"name": "run-0"},
            {"name": "run-1"},
        ]
        assert client.list_runs(fields=("name", "nothing"), shared=False)[0][1] == {"name": "run-1"}
        full, _ = client.list_runs()
    table = home.cli("list", check=True).stdout.splitlines()
    assert table[0] == "Fetching the list of trained models ..."
    assert [line.split()[1:3] for line in table[2:4]] == [["run-0", ids[0]], ["run-1", ids[1]]]
    assert table[-3:] == ["2 records found.", "OK", "List all trained-models successful"]
    as_json = json.loads(home.cli("list", "--json", check=True).stdout)
    assert [run["model_id"] for run in as_json] == ids
    assert as_json[0].keys() == full[0].keys()  # every key of a run, as GET /v3/models/ID


def test_the_trainui_process_prints_every_byte_and_its_exit_status_before_it_ends(home):
    # `trainui` ends a command at once once it is done (cli.run): what it printed into a pipe
    # (block-buffered) must all be there, and its exit status be the command's
    model = home.model("m", {"train.py": "print(1)\n"})
    ids = [home.submit(model, home.manifest("true", name=f"run-{i}")) for i in range(3)]

    def trainui(*args: str):  # buffered as in a user's shell (CI may set PYTHONUNBUFFERED)
        return home.cli(*args, process=True, PYTHONUNBUFFERED="")

    shown = trainui("show", ids[0], "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["model_id"] == ids[0]
    listed = trainui("list", "--json")
    assert listed.returncode == 0 and [r["model_id"] for r in json.loads(listed.stdout)] == ids
    table = trainui("list")
    assert table.stdout.splitlines()[-1] == "List all trained-models successful"
    assert trainui("schema").stdout.rstrip().endswith("}")
    missing = trainui("show", "training-nosuchrun")
    assert missing.returncode == 1
    assert missing.stderr == "trainui: run training-nosuchrun not found\n"
    assert trainui("--version").stdout.startswith("trainui ")
