"""The metrics as the TUI holds and draws them: downsampling keeps spikes, smoothing is
TensorBoard's, a restarted attempt starts its series again, manifests are compared by field."""

from __future__ import annotations

import numpy as np

from trainui.tui.metrics import (
    Series,
    differences,
    downsample,
    not_positive,
    prepare,
    smooth,
    step_ticks,
)
from trainui.tui.runs import format_value


def test_downsampling_keeps_two_points_a_column_and_every_spike():
    steps = np.arange(100_000, dtype=float)
    values = np.sin(steps / 1000)
    values[31_337] = 50.0
    values[77_777] = -50.0
    kept_steps, kept_values = downsample(steps, values, 80)
    assert len(kept_steps) <= 2 * 80 + 2
    assert 50.0 in kept_values and -50.0 in kept_values
    assert kept_steps[0] == 0 and kept_steps[-1] == 99_999
    assert (np.diff(kept_steps) > 0).all()  # in the order they came
    few = np.arange(10, dtype=float)
    assert downsample(few, few, 80)[0] is few  # nothing to thin


def test_smoothing_is_tensorboards_debiased_moving_average():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    expected, last = [], 0.0
    for i, v in enumerate(values, start=1):
        last = last * 0.6 + 0.4 * v
        expected.append(last / (1 - 0.6**i))
    assert np.allclose(smooth(values, 0.6), expected)
    assert smooth(values, 0.6)[0] == 1.0  # debiased: the first point is not pulled to 0
    assert smooth(values, 0.0) is values


def test_a_step_going_backwards_starts_the_series_again_from_there():
    series = Series([0, 1, 2, 3], [4.0, 3.0, 2.0, 1.0])
    series.extend([4, 5], [0.5, 0.4])
    assert series.steps.tolist() == [0, 1, 2, 3, 4, 5]
    series.extend([2, 3], [9.0, 8.0])  # a restarted attempt
    assert series.steps.tolist() == [0, 1, 2, 3] and series.values.tolist() == [4, 3, 9, 8]
    assert series.last == 8.0 and series.bounds() == (3.0, 9.0) and series.revision == 2


def test_a_log_scale_leaves_out_what_it_cannot_show_as_gaps_at_their_steps():
    series = Series([0, 1, 2, 3], [-1.0, 0.0, 0.5, 2.0])
    steps, values = prepare(series, 80, log=True)
    assert steps.tolist() == [0, 1, 2, 3]  # the x axis stays the run's
    assert np.isnan(values[:2]).all() and values[2:].tolist() == [0.5, 2.0]
    assert not_positive(series) == 2


def test_values_and_step_ticks_read_in_a_few_cells():
    assert [format_value(v) for v in (0.53214, 12.0, 123456.0, 1.5e-5, None)] == [
        "0.5321", "12", "123456", "1.5e-05", "-",
    ]  # fmt: skip
    ticks, labels = step_ticks(0, 99_999, 6)
    assert labels == ["0", "20k", "40k", "60k", "80k"] and ticks[-1] <= 99_999
    # a short run in a narrow chart still gets two ticks or more (the demo's 30 epochs)
    assert step_ticks(1, 30, 3) == ([10, 20, 30], ["10", "20", "30"])
    # steps are whole: never a tick between two (2.5, 7.5 for a run of 10 steps)
    for first, last, count in ((1, 10, 4), (0, 1, 21), (0, 2, 21), (3, 4, 9), (0, 7, 8)):
        ticks, _labels = step_ticks(first, last, count)
        assert ticks and all(float(t).is_integer() for t in ticks), (first, last, ticks)


def test_the_manifest_fields_that_differ_between_runs():
    data = {"source": {"bucket": "d"}}
    a = {"model_definition": {"name": "a", "execution": {"command": "python t.py --lr 0.1"}},
         "training_data": data}  # fmt: skip
    b = {"model_definition": {"name": "b", "execution": {"command": "python t.py --lr 0.2"}},
         "training_data": data, "evaluation_metrics": {"type": "jsonl"}}  # fmt: skip
    found = dict(differences({"ra": a, "rb": b}))
    assert found == {
        "model_definition.name": ["a", "b"],
        "model_definition.execution.command": ["python t.py --lr 0.1", "python t.py --lr 0.2"],
        "evaluation_metrics.type": ["-", "jsonl"],
    }


def test_charts_fill_the_view_with_whole_rows():
    from trainui.tui.widgets.metrics_view import ROW_MAX, row_height

    assert row_height(37, 10, 2) == 12  # 120x40, ten charts: three whole rows of 12, then scroll
    assert row_height(21, 8, 1) == 10  # 80x24: two rows of 10
    assert row_height(37, 4, 2) == ROW_MAX  # four charts: two rows, taller, up to ROW_MAX
    assert row_height(19, 2, 1) == 19  # one row fits: the chart takes the view
    assert row_height(37, 1, 1) == 37  # one chart alone at 120x40: the view is that chart
    assert row_height(9) == 10  # never under 10
