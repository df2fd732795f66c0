"""SWAD's loss-valley selector on scripted validation-loss curves."""

import pytest

from domainbed.algorithms.swad_valley import LossValley


def _feed(losses, **settings):
    """Observe losses at steps 0, 10, 20...; segment id = index. Returns (selector, stop)."""
    selector = LossValley(**settings)
    stop_step = None
    for i, loss in enumerate(losses):
        decision = selector.observe(10 * i, loss, i)
        if decision.stopped:
            stop_step = 10 * i
    return selector, stop_step


def test_never_converging_curve_never_starts():
    selector, stop = _feed([5, 4, 3, 2, 1.5, 1.2, 1.0, 0.9])
    assert not selector.started and not selector.stopped and stop is None
    assert selector.segments() == []


def test_start_when_oldest_of_queue_is_minimum():
    # minimum 1.0 at index 2; indices 3 and 4 do not improve -> start at index 2 after index 4
    selector = LossValley(n_converge=3, n_tolerance=6, tolerance_ratio=0.3)
    started_at = None
    for i, loss in enumerate([3.0, 2.0, 1.0, 1.1, 1.05]):
        if selector.observe(i, loss, i).started:
            started_at = i
    assert started_at == 4
    # SWAD's published threshold: the mean loss of the converged queue times 1.3
    assert selector.threshold == pytest.approx((1.0 + 1.1 + 1.05) / 3 * 1.3)
    assert selector.segments() == [2, 3, 4]


def test_converging_then_diverging_stops_and_drops_the_tail():
    # threshold 1.1 * 1.3 = 1.43; indices 5..10 are six losses above it -> stop at index 10
    losses = [3.0, 2.0, 1.0, 1.1, 1.2, 1.5, 1.5, 1.6, 1.7, 1.8, 1.9, 1.0, 0.5]
    selector, stop = _feed(losses)
    assert stop == 100
    assert selector.stopped
    assert selector.segments() == [2, 3, 4]
    # later observations change nothing, even a good loss
    assert selector.observe(200, 0.1, 99).add == []
    assert selector.segments() == [2, 3, 4]


def test_a_loss_back_within_threshold_keeps_the_window_contiguous():
    # index 5, 6 above 1.43, index 7 back below: 5 and 6 join the window with it
    losses = [3.0, 2.0, 1.0, 1.1, 1.2, 1.45, 1.5, 1.25, 2.0]
    selector, stop = _feed(losses)
    assert stop is None
    assert selector.segments() == [2, 3, 4, 5, 6, 7]
    assert [e.segment for e in selector.pending] == [8]


def test_training_ends_inside_the_window():
    losses = [2.0, 1.0, 1.2, 1.1, 1.25, 1.0, 1.5]  # threshold 1.1 * 1.3 = 1.43
    selector, stop = _feed(losses)
    assert stop is None and not selector.stopped
    # the final window: start (index 1) up to the last evaluation within threshold (index 5)
    assert selector.segments() == [1, 2, 3, 4, 5]


def test_tail_above_threshold_at_start_is_pending():
    # start at index 0 (queue 1.0, 1.5, 1.6; threshold their mean 1.367 with ratio 0): 1.5
    # and 1.6 are above it, pending, not in the window
    selector, stop = _feed([1.0, 1.5, 1.6], n_tolerance=3, tolerance_ratio=0.0)
    assert selector.started and selector.segments() == [0]
    assert [e.segment for e in selector.pending] == [1, 2]
    assert selector.observe(30, 1.7, 3).stopped
    assert selector.segments() == [0]


def test_ties_count_as_minimum_and_small_tolerance():
    selector, stop = _feed([1.0, 1.0, 1.0], n_converge=3, n_tolerance=1, tolerance_ratio=0.0)
    assert selector.segments() == [0, 1, 2]
    assert selector.observe(30, 1.01, 3).stopped
    assert selector.segments() == [0, 1, 2]


def test_state_round_trip_resumes_identically():
    losses = [3.0, 2.0, 1.0, 1.1, 1.2, 1.4, 1.5, 1.25, 2.0, 2.1, 2.2, 2.3, 2.4, 2.5]
    reference, ref_stop = _feed(losses)
    first = LossValley()
    for i, loss in enumerate(losses[:6]):
        first.observe(10 * i, loss, i)
    resumed = LossValley()
    resumed.load_state_dict(first.state_dict())
    stop = None
    for i, loss in enumerate(losses[6:], start=6):
        if resumed.observe(10 * i, loss, i).stopped:
            stop = 10 * i
    assert stop == ref_stop == 130  # indices 8..13: six losses above 1.43
    assert resumed.segments() == reference.segments() == [2, 3, 4, 5, 6, 7]


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="n_converge"):
        LossValley(n_converge=0)


def test_threshold_is_the_mean_of_the_converged_queue_not_its_oldest_loss():
    # queue (1.0, 1.2, 1.4): the oldest-loss rule would put 1.35 above a 1.3 threshold;
    # the mean rule (1.2 * 1.3 = 1.56) keeps it in the window
    selector, _ = _feed([2.0, 1.0, 1.2, 1.4, 1.35])
    assert selector.threshold == pytest.approx(1.56)
    assert selector.segments() == [1, 2, 3, 4]


def test_swad_tolerance_ratio_is_0_2_on_vlcs_and_0_3_elsewhere():
    from domainbed import hparams_registry
    assert hparams_registry.default_hparams("SWAD", "VLCS")["swad_tolerance_ratio"] == 0.2
    assert hparams_registry.random_hparams("SWAD", "VLCS", 3)["swad_tolerance_ratio"] == 0.2
    for dataset in ("PACS", "OfficeHome", "Debug28"):
        assert hparams_registry.default_hparams("SWAD", dataset)["swad_tolerance_ratio"] == 0.3
