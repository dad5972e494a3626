"""How the stream benchmark's fan-out figures are summarised: interleaved pairs, one ratio per
pair, the median of those ratios, and their spread printed beside it.

Why pairs and medians, not the best run of each side: the native CPU per event of the *same*
code moved from 1.42x to 0.79x raw's between two runs minutes apart on a quiet machine (best
of 4 each). A server's CPU per event is not a property of its code alone there: with two
cores, the server shares them with its reader process and whatever else runs, and how often
it is preempted, how large its writes are and whether its reader keeps up all follow from
where the scheduler puts them. The best of a few runs of each side picks each side's luckiest
run, and the two sides' luck differs. A pair (raw and daemon back to back, the order taking
turns) sees nearly the same machine; the ratio taken inside the pair cancels the load that
drifts between pairs, and the median of many such ratios is not moved by one lucky or unlucky
pair. The spread is printed so that a reader can see how sure each figure is.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """The lower and upper quartile (the middle half of the values lies between them);
    for fewer than four values, the lowest and highest."""
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


@dataclass(frozen=True)
class Paired:
    """One figure measured in interleaved pairs: each side's median and the per-pair ratios
    (daemon / raw)."""

    daemon: float  # the daemon's median value
    raw: float  # raw's median value
    ratios: tuple[float, ...]  # one per pair, in the order measured

    @classmethod
    def of(cls, daemon: Sequence[float], raw: Sequence[float]) -> Paired:
        if len(daemon) != len(raw) or not raw:
            raise ValueError("one daemon and one raw value per pair, at least one pair")
        return cls(
            daemon=statistics.median(daemon),
            raw=statistics.median(raw),
            ratios=tuple(d / r for d, r in zip(daemon, raw, strict=True)),
        )

    @property
    def ratio(self) -> float:
        """The figure: the median of the per-pair ratios."""
        return statistics.median(self.ratios)

    def verdict(self, *, at_least: float | None = None, at_most: float | None = None) -> str:
        """``met`` or ``missed`` when the middle half of the pairs' ratios is on one side of
        the target; ``met?`` or ``missed?`` (by the median) when it spans the target: the
        measure could not decide at this spread."""
        lo, hi = quartiles(self.ratios)
        if at_least is not None:
            good, sure = self.ratio >= at_least, (lo >= at_least) or (hi < at_least)
        elif at_most is not None:
            good, sure = self.ratio <= at_most, (hi <= at_most) or (lo > at_most)
        else:
            return ""
        return ("met" if good else "missed") + ("" if sure else "?")

    def spread(self) -> str:
        """``pairs N: middle half LO-HIx, all MIN-MAXx``."""
        lo, hi = quartiles(self.ratios)
        return (
            f"pairs {len(self.ratios)}: middle half {lo:.2f}-{hi:.2f}x, "
            f"all {min(self.ratios):.2f}-{max(self.ratios):.2f}x"
        )


def paired_row(
    label: str,
    figure: Paired,
    unit: str,
    *,
    at_least: float | None = None,
    at_most: float | None = None,
) -> None:
    """One printed line: the daemon's median, the median ratio, the target and the verdict,
    then the spread indented below it."""
    target = ""
    if at_least is not None:
        target = f">= {at_least:.1f}x"
    elif at_most is not None:
        target = f"<= {at_most:.1f}x"
    verdict = figure.verdict(at_least=at_least, at_most=at_most)
    ratio = f"{figure.ratio:6.2f}x baseline"
    print(
        f"  {label:<48} {figure.daemon:>12,.3f} {unit:<6} {ratio}  {target} {verdict}".rstrip(),
        flush=True,
    )
    print(f"  {'':<48} {'':>12} {'':<6} ({figure.spread()})", flush=True)
