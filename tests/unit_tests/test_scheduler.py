"""Tests for trainui.service.scheduler: which pending runs start, on which GPUs, and why the
others wait (SPEC §4). The scheduler is pure, so every test is a plain call with pretend GPUs."""

from __future__ import annotations

import random

import pytest

from trainui.service.scheduler import Plan, Scheduler, Waiting

SMALL, MEDIUM, LARGE = 1, 2, 4
FOUR_GPUS = (0, 1, 2, 3)


def run(run_id: str, gpus: int, queued_at: float = 0.0) -> Waiting:
    return Waiting(run_id, gpus, queued_at)


def started(plan: Plan) -> dict[str, tuple[int, ...]]:
    return dict(plan.starts)


# GPU allocation


def test_small_and_medium_get_disjoint_lowest_ids_and_large_waits_for_them():
    scheduler = Scheduler(FOUR_GPUS)
    queue = [run("small", SMALL), run("medium", MEDIUM), run("large", LARGE)]

    plan = scheduler.plan(queue, busy={}, busy_cpu_slots=0, now=1.0)

    assert plan.starts == [("small", (0,)), ("medium", (1, 2))]
    assert plan.reasons == {"large": "waiting for 4 GPUs: 1 free"}


def test_each_size_gets_as_many_distinct_gpus_as_it_needs_on_a_larger_machine():
    scheduler = Scheduler(range(8))
    queue = [run("small", SMALL), run("medium", MEDIUM), run("large", LARGE)]

    plan = scheduler.plan(queue, busy={}, busy_cpu_slots=0, now=1.0)

    assert started(plan) == {"small": (0,), "medium": (1, 2), "large": (3, 4, 5, 6)}
    assert plan.reasons == {}


def test_a_large_run_takes_all_four_gpus_once_the_others_are_released():
    scheduler = Scheduler(FOUR_GPUS)
    queue = [run("large", LARGE)]

    plan = scheduler.plan(queue, busy={"small": (0,), "medium": (1, 2)}, busy_cpu_slots=0, now=1)
    assert plan.starts == []
    plan = scheduler.plan(queue, busy={}, busy_cpu_slots=0, now=2)
    assert plan.starts == [("large", (0, 1, 2, 3))]


def test_a_second_large_run_waits_with_a_reason_and_starts_when_the_first_is_released():
    scheduler = Scheduler(FOUR_GPUS)
    queue = [run("first", LARGE), run("second", LARGE)]

    plan = scheduler.plan(queue, busy={}, busy_cpu_slots=0, now=1.0)
    assert plan.starts == [("first", (0, 1, 2, 3))]
    assert plan.reasons == {"second": "waiting for 4 GPUs: 0 free"}

    plan = scheduler.plan(queue[1:], busy={"first": (0, 1, 2, 3)}, busy_cpu_slots=0, now=2.0)
    assert plan.starts == []
    assert plan.reasons == {"second": "waiting for 4 GPUs: 0 free"}

    plan = scheduler.plan(queue[1:], busy={}, busy_cpu_slots=0, now=3.0)
    assert plan.starts == [("second", (0, 1, 2, 3))]
    assert plan.reasons == {}


def test_gpus_held_by_active_runs_are_never_allocated_again():
    scheduler = Scheduler(FOUR_GPUS)
    busy = {"a": (0,), "b": (2,)}
    queue = [run("one", SMALL), run("two", SMALL), run("three", SMALL)]

    plan = scheduler.plan(queue, busy=busy, busy_cpu_slots=0, now=1.0)

    assert plan.starts == [("one", (1,)), ("two", (3,))]
    assert plan.reasons == {"three": "waiting for 1 GPU: 0 free"}


def test_a_medium_run_can_use_free_gpus_that_are_not_next_to_each_other():
    scheduler = Scheduler(FOUR_GPUS)

    plan = scheduler.plan([run("medium", MEDIUM)], busy={"a": (1, 2)}, busy_cpu_slots=0, now=1)

    assert plan.starts == [("medium", (0, 3))]


def test_a_sparse_inventory_allocates_its_own_ids_lowest_first():
    scheduler = Scheduler([5, 2])

    plan = scheduler.plan([run("a", SMALL), run("b", SMALL)], busy={}, busy_cpu_slots=0, now=1)

    assert plan.starts == [("a", (2,)), ("b", (5,))]
    assert scheduler.gpu_ids == (2, 5)


def test_plan_does_not_change_its_arguments():
    scheduler = Scheduler(FOUR_GPUS)
    queue = [run("a", MEDIUM), run("b", LARGE)]
    busy = {"x": [0]}

    scheduler.plan(queue, busy=busy, busy_cpu_slots=0, now=1.0)

    assert queue == [run("a", MEDIUM), run("b", LARGE)]
    assert busy == {"x": [0]}


# Reasons


def test_the_reason_counts_pending_runs_ahead_with_the_right_plural():
    scheduler = Scheduler(FOUR_GPUS)
    queue = [run("a", LARGE), run("b", LARGE), run("c", LARGE)]

    plan = scheduler.plan(queue, busy={"x": (0, 1)}, busy_cpu_slots=0, now=1.0)

    assert plan.reasons == {
        "a": "waiting for 4 GPUs: 2 free",
        "b": "waiting for 4 GPUs: 2 free, 1 run ahead",
        "c": "waiting for 4 GPUs: 2 free, 2 runs ahead",
    }


def test_the_free_count_in_a_reason_is_after_this_plans_starts():
    scheduler = Scheduler(FOUR_GPUS)
    queue = [run("large", LARGE), run("small", SMALL)]

    plan = scheduler.plan(queue, busy={"x": (0, 1)}, busy_cpu_slots=0, now=1.0)

    assert plan.starts == [("small", (2,))]
    assert plan.reasons == {"large": "waiting for 4 GPUs: 1 free"}


def test_every_waiting_run_either_starts_or_has_a_reason():
    scheduler = Scheduler(FOUR_GPUS)
    queue = [run(f"r{i}", size) for i, size in enumerate([1, 4, 2, 1, 2, 4, 1])]

    plan = scheduler.plan(queue, busy={}, busy_cpu_slots=0, now=1.0)

    assert set(started(plan)) | set(plan.reasons) == {w.run_id for w in queue}
    assert not set(started(plan)) & set(plan.reasons)


# Backfill and the starvation guard


def test_backfill_starts_a_small_run_behind_a_blocked_large_one():
    scheduler = Scheduler(FOUR_GPUS)
    queue = [run("large", LARGE, queued_at=0), run("small", SMALL, queued_at=1)]

    plan = scheduler.plan(queue, busy={"x": (0,)}, busy_cpu_slots=0, now=10)

    assert plan.starts == [("small", (1,))]
    assert plan.reasons == {"large": "waiting for 4 GPUs: 2 free"}


def test_backfill_stops_once_the_blocked_head_has_waited_past_the_starvation_limit():
    scheduler = Scheduler(FOUR_GPUS, starvation_seconds=600)
    queue = [run("training-aaaa", LARGE, queued_at=0), run("small", SMALL, queued_at=5)]
    busy = {"x": (0,)}

    plan = scheduler.plan(queue, busy=busy, busy_cpu_slots=0, now=601)

    assert plan.starts == []
    assert plan.reasons == {
        "training-aaaa": "waiting for 4 GPUs: 3 free",
        "small": "waiting behind training-aaaa (queued first, waiting for 4 GPUs)",
    }


def test_the_guard_is_off_at_exactly_the_starvation_limit():
    scheduler = Scheduler(FOUR_GPUS, starvation_seconds=600)
    queue = [run("large", LARGE, queued_at=0), run("small", SMALL, queued_at=5)]

    plan = scheduler.plan(queue, busy={"x": (0,)}, busy_cpu_slots=0, now=600)

    assert plan.starts == [("small", (1,))]


def test_backfill_resumes_once_the_starved_head_has_started():
    scheduler = Scheduler(FOUR_GPUS, starvation_seconds=600)
    head = run("training-aaaa", LARGE, queued_at=0)
    behind = [run("small", SMALL, queued_at=5), run("medium", MEDIUM, queued_at=6)]

    # Starved: the head waits for the GPU held by x, nothing behind it may start.
    plan = scheduler.plan([head, *behind], busy={"x": (0,)}, busy_cpu_slots=0, now=700)
    assert plan.starts == []
    # x ends: the head starts, and what is behind it still cannot fit.
    plan = scheduler.plan([head, *behind], busy={}, busy_cpu_slots=0, now=710)
    assert plan.starts == [("training-aaaa", (0, 1, 2, 3))]
    assert plan.reasons == {
        "small": "waiting for 1 GPU: 0 free",
        "medium": "waiting for 2 GPUs: 0 free, 1 run ahead",
    }
    # The head holds 0-3; once it ends, the queue proceeds normally.
    plan = scheduler.plan(behind, busy={}, busy_cpu_slots=0, now=720)
    assert plan.starts == [("small", (0,)), ("medium", (1, 2))]


def test_backfill_resumes_for_the_next_blocked_head_while_it_is_young():
    scheduler = Scheduler(FOUR_GPUS, starvation_seconds=600)
    queue = [run("large", LARGE, queued_at=650), run("small", SMALL, queued_at=660)]

    plan = scheduler.plan(queue, busy={"x": (0,)}, busy_cpu_slots=0, now=700)

    assert plan.starts == [("small", (1,))]


def test_under_the_guard_runs_that_would_not_fit_anyway_keep_the_plain_reason():
    scheduler = Scheduler(FOUR_GPUS, starvation_seconds=60)
    queue = [
        run("training-head", LARGE, queued_at=0),
        run("medium", MEDIUM, queued_at=1),
        run("big", LARGE, queued_at=2),
    ]

    plan = scheduler.plan(queue, busy={"x": (0, 1)}, busy_cpu_slots=0, now=100)

    assert plan.starts == []
    assert plan.reasons == {
        "training-head": "waiting for 4 GPUs: 2 free",
        "medium": "waiting behind training-head (queued first, waiting for 4 GPUs)",
        "big": "waiting for 4 GPUs: 2 free, 2 runs ahead",
    }


def test_runs_ahead_of_the_blocked_head_still_start_under_the_guard():
    scheduler = Scheduler(FOUR_GPUS, starvation_seconds=60)
    queue = [run("small", SMALL, queued_at=0), run("large", LARGE, queued_at=0)]

    plan = scheduler.plan(queue, busy={}, busy_cpu_slots=0, now=1000)

    assert plan.starts == [("small", (0,))]
    assert plan.reasons == {"large": "waiting for 4 GPUs: 3 free"}


# Refusal at submit


@pytest.mark.parametrize(
    ("gpu_ids", "gpus", "sentence"),
    [
        ((0, 1), 4, "the run needs 4 GPUs (large) but this machine has 2"),
        ((0,), 2, "the run needs 2 GPUs (medium) but this machine has 1"),
        ((0,), 4, "the run needs 4 GPUs (large) but this machine has 1"),
        ((0, 1), 3, "the run needs 3 GPUs but this machine has 2"),
    ],
)
def test_refuse_explains_a_run_that_can_never_fit(gpu_ids, gpus, sentence):
    assert Scheduler(gpu_ids).refuse(gpus) == sentence


@pytest.mark.parametrize(("gpu_ids", "gpus"), [(FOUR_GPUS, 1), (FOUR_GPUS, 2), (FOUR_GPUS, 4)])
def test_refuse_accepts_a_run_that_fits_the_inventory(gpu_ids, gpus):
    assert Scheduler(gpu_ids).refuse(gpus) is None


@pytest.mark.parametrize("gpu_ids", [None, ()])
@pytest.mark.parametrize("gpus", [1, 2, 4])
def test_refuse_never_refuses_in_cpu_mode(gpu_ids, gpus):
    assert Scheduler(gpu_ids).refuse(gpus) is None


# CPU mode


@pytest.mark.parametrize("gpu_ids", [None, []])
def test_no_gpu_inventory_means_cpu_mode(gpu_ids):
    assert Scheduler(gpu_ids).cpu_mode
    assert not Scheduler(FOUR_GPUS).cpu_mode


def test_cpu_mode_with_one_slot_runs_one_run_of_any_size_without_gpus():
    scheduler = Scheduler(None, cpu_slots=1)
    queue = [run("large", LARGE), run("small", SMALL), run("medium", MEDIUM), run("l2", LARGE)]

    plan = scheduler.plan(queue, busy={}, busy_cpu_slots=0, now=1.0)

    assert plan.starts == [("large", ())]
    assert plan.reasons == {
        "small": "waiting for a CPU slot: 0 of 1 free",
        "medium": "waiting for a CPU slot: 0 of 1 free, 1 run ahead",
        "l2": "waiting for a CPU slot: 0 of 1 free, 2 runs ahead",
    }


def test_cpu_mode_with_two_slots_counts_the_slots_already_taken():
    scheduler = Scheduler([], cpu_slots=2)
    queue = [run("a", LARGE), run("b", SMALL), run("c", MEDIUM)]

    plan = scheduler.plan(queue, busy={"x": ()}, busy_cpu_slots=1, now=1.0)
    assert plan.starts == [("a", ())]
    assert plan.reasons == {
        "b": "waiting for a CPU slot: 0 of 2 free",
        "c": "waiting for a CPU slot: 0 of 2 free, 1 run ahead",
    }

    plan = scheduler.plan(queue[1:], busy={}, busy_cpu_slots=0, now=2.0)
    assert plan.starts == [("b", ()), ("c", ())]
    assert plan.reasons == {}


def test_cpu_mode_with_every_slot_taken_starts_nothing():
    scheduler = Scheduler(None, cpu_slots=2)

    plan = scheduler.plan([run("a", SMALL)], busy={}, busy_cpu_slots=3, now=1.0)

    assert plan.starts == []
    assert plan.reasons == {"a": "waiting for a CPU slot: 0 of 2 free"}


def test_cpu_slots_must_be_at_least_one():
    with pytest.raises(ValueError, match="cpu_slots"):
        Scheduler(None, cpu_slots=0)


# The inventory shrinking (after a restart)


def test_a_run_larger_than_a_shrunken_inventory_is_told_so_and_blocks_nobody():
    scheduler = Scheduler((0, 1), starvation_seconds=60)
    queue = [
        run("large", LARGE, queued_at=0),
        run("medium", MEDIUM, queued_at=1),
        run("small", SMALL, queued_at=2),
    ]

    plan = scheduler.plan(queue, busy={}, busy_cpu_slots=0, now=1000)

    assert plan.starts == [("medium", (0, 1))]
    assert plan.reasons == {
        "large": "needs 4 GPUs but this machine has 2",
        "small": "waiting for 1 GPU: 0 free",
    }


def test_busy_ids_outside_the_inventory_are_ignored():
    scheduler = Scheduler((0, 1))
    busy = {"old": (2, 3), "current": (1,)}

    plan = scheduler.plan([run("a", SMALL), run("b", SMALL)], busy, busy_cpu_slots=0, now=1)

    assert plan.starts == [("a", (0,))]
    assert plan.reasons == {"b": "waiting for 1 GPU: 0 free"}


# Property: random submissions and finishes


def check_plan(
    scheduler: Scheduler,
    queue: list[Waiting],
    busy: dict[str, tuple[int, ...]],
    now: float,
    plan: Plan,
) -> None:
    inventory = set(scheduler.gpu_ids)
    held = {gpu for ids in busy.values() for gpu in ids}
    by_id = {w.run_id: w for w in queue}
    given: list[int] = []
    for run_id, ids in plan.starts:
        assert len(ids) == by_id[run_id].gpus
        given.extend(ids)
    # No GPU twice, none already held, none outside the inventory.
    assert len(given) == len(set(given))
    assert not set(given) & held
    assert set(given) <= inventory
    # Every run either starts or has a reason, never both; starts keep queue order.
    assert set(started(plan)) | set(plan.reasons) == set(by_id)
    assert not set(started(plan)) & set(plan.reasons)
    order = [w.run_id for w in queue if w.run_id in started(plan)]
    assert [run_id for run_id, _ in plan.starts] == order
    # Nobody waits while it would fit, unless the guard holds it behind a starved head.
    free_after = len(inventory - held - set(given))
    head = next((w for w in queue if w.run_id in plan.reasons and w.gpus <= len(inventory)), None)
    for w in queue:
        if w.run_id in plan.reasons and w.gpus <= free_after:
            assert head is not None
            assert now - head.queued_at > scheduler.starvation_seconds
            assert head.gpus > free_after
            assert plan.reasons[w.run_id].startswith(f"waiting behind {head.run_id} ")


@pytest.mark.parametrize("seed", range(8))
def test_random_submissions_and_finishes_never_overlap_and_never_idle_a_fitting_run(seed):
    rng = random.Random(seed)
    scheduler = Scheduler(FOUR_GPUS, starvation_seconds=50)
    queue: list[Waiting] = []
    active: dict[str, tuple[int, ...]] = {}
    now = 0.0
    guarded = 0
    for step in range(400):
        now += rng.choice([0.0, 1.0, 5.0, 30.0])
        if active and rng.random() < 0.4:
            del active[rng.choice(sorted(active))]
        else:
            queue.append(run(f"training-{step:04d}", rng.choice([1, 1, 2, 4]), now))
        plan = scheduler.plan(queue, busy=active, busy_cpu_slots=0, now=now)
        check_plan(scheduler, queue, active, now, plan)
        guarded += any(r.startswith("waiting behind") for r in plan.reasons.values())
        for run_id, ids in plan.starts:
            active[run_id] = ids
        queue = [w for w in queue if w.run_id not in active]
        assert len({gpu for ids in active.values() for gpu in ids}) == sum(
            len(ids) for ids in active.values()
        )
    assert active or queue  # the simulation did something
    assert guarded  # and exercised the starvation guard
