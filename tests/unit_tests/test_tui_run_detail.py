"""The run screen's fields: a description and a status message are words to read whole, so
they wrap (up to three lines) where the other wide fields are cut."""

from __future__ import annotations

from rich.cells import cell_len

from trainui.tui.widgets.run_detail import LABEL, render_fields, wrap_cells


def test_words_wrap_between_words_within_the_width_and_end_with_a_mark_when_cut():
    text = "CPU-only numpy MLP that learns to separate three noisy spirals (about 3 s, no GPU)"
    assert wrap_cells(text, 40, 3) == [
        "CPU-only numpy MLP that learns to",
        "separate three noisy spirals (about 3 s,",
        "no GPU)",
    ]
    cut = wrap_cells("word " * 40, 20, 3)
    assert len(cut) == 3 and cut[-1].endswith("…")
    assert wrap_cells("first line\nsecond", 40, 3) == ["first line", "second"]
    long_path = "/data/" + "x" * 50
    assert [cell_len(line) for line in wrap_cells(long_path, 20, 3)] == [20, 20, 16]
    wide = wrap_cells("数据" * 30, 21, 3)  # a wide character is never split in two
    assert all(cell_len(line) <= 21 for line in wide) and wide[-1].endswith("…")


def test_the_description_is_read_whole_on_the_run_screen():
    description = "A long description of what this run tries: " + "more words " * 8 + "THE END"
    run = {"model_id": "training-aaaaaaaaa", "status": "completed", "description": description}
    lines = render_fields(run, 78).plain.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("Description"))
    said = " ".join(line[LABEL:].strip() for line in lines[first : first + 3])
    assert said == description and lines[first + 1].startswith(" " * LABEL)
    assert all(cell_len(line) <= 78 for line in lines)
