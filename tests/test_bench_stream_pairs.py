"""The fan-out figures' summary (harness/bench/stream_pairs.py): the ratio is the median of
per-pair ratios, printed with its spread and a verdict that says when the spread cannot
decide."""

from __future__ import annotations

import pytest

from harness.bench.stream_pairs import Paired, paired_row, quartiles


def test_the_ratio_is_the_median_of_the_ratios_inside_each_pair_not_of_the_medians() -> None:
    # The load drifts between pairs: both sides slow in the last two. Inside each pair the
    # daemon costs 1.1x raw's; the ratio of the two medians would say 1.4x.
    daemon = [1.1, 1.1, 1.1, 4.4, 4.4]
    raw = [1.0, 1.0, 1.0, 4.0, 4.0]
    daemon[2], raw[2] = 3.3, 3.0
    figure = Paired.of(daemon, raw)
    assert figure.ratios == pytest.approx([1.1] * 5)
    assert figure.ratio == pytest.approx(1.1)
    assert figure.daemon == 3.3 and figure.raw == 3.0  # each side's own median


def test_one_lucky_pair_does_not_move_the_figure() -> None:
    figure = Paired.of([1.0, 1.0, 0.5, 1.0, 1.0], [1.0] * 5)
    assert figure.ratio == 1.0
    assert "all 0.50-1.00x" in figure.spread()


def test_the_verdict_is_sure_only_when_the_middle_half_is_on_one_side_of_the_target() -> None:
    sure_met = Paired.of([1.00, 1.02, 1.04, 1.05, 1.30], [1.0] * 5)  # one outlier above
    assert sure_met.verdict(at_most=1.1) == "met"
    sure_missed = Paired.of([1.2, 1.25, 1.3, 1.3, 0.9], [1.0] * 5)
    assert sure_missed.verdict(at_most=1.1) == "missed"
    spans = Paired.of([0.9, 1.0, 1.05, 1.2, 1.3], [1.0] * 5)
    assert spans.verdict(at_most=1.1) == "met?"
    assert Paired.of([0.9, 1.0, 1.15, 1.2, 1.3], [1.0] * 5).verdict(at_most=1.1) == "missed?"
    # at least: ev/s
    assert Paired.of([1.0, 1.1, 1.2, 1.2], [1.0] * 4).verdict(at_least=1.0) == "met"
    assert Paired.of([0.8, 0.95, 1.05, 1.1], [1.0] * 4).verdict(at_least=1.0) == "met?"
    assert Paired.of([0.8, 0.9, 0.98, 1.1], [1.0] * 4).verdict(at_least=1.0) == "missed?"
    assert Paired.of([0.8, 0.9, 0.95, 0.97], [1.0] * 4).verdict(at_least=1.0) == "missed"
    assert sure_met.verdict() == ""  # no target, no verdict


def test_quartiles_of_few_values_are_their_extremes() -> None:
    assert quartiles([2.0, 1.0]) == (1.0, 2.0)
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 4.0)


def test_pairs_must_be_whole() -> None:
    with pytest.raises(ValueError):
        Paired.of([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        Paired.of([], [])


def test_the_printed_line_carries_the_median_ratio_target_verdict_and_spread(
    capsys: pytest.CaptureFixture[str],
) -> None:
    paired_row("daemon CPU", Paired.of([1.0, 1.2, 1.3], [1.0, 1.0, 1.0]), "us", at_most=1.1)
    first, second = capsys.readouterr().out.splitlines()
    assert "1.200" in first and "1.20x baseline" in first and "<= 1.1x missed?" in first
    assert second.strip() == "(pairs 3: middle half 1.00-1.30x, all 1.00-1.30x)"
