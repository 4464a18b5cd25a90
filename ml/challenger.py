"""When a challenger takes the champion's place: it must beat the champion on the same baskets, week after week.

The challenger scores in the champion's shadow (the service answers with the champion and
logs both models' predictions, role champion and challenger), and `retail monitor`
measures both on the labelled baskets both predicted that week (`Comparison`). The
challenger is promoted when, in each of its last `MonitorSettings.challenger_weeks`
judged weeks:

* both predicted at least `MonitorSettings.min_baskets` of the same labelled baskets (a
  week with fewer is not judged);
* its macro-F1 beat the champion's by at least `MonitorSettings.challenger_margin`;
* its own macro-F1 met the gate's minimum (`GateSettings.min_macro_f1`).

Only weeks in which the current champion alone answered for those baskets count: a week
measured against an earlier champion says nothing about this one. A lost judged week
starts the count again. The verdict carries its evidence, the weeks it
counted, which `Registry.promote_challenger` records on the promoted version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ml.settings import GateSettings, MonitorSettings


@dataclass
class Comparison:
    """A challenger version and the champion on the labelled baskets both predicted in one week."""

    week: int  # YYYYWW
    challenger: str  # version
    champions: list[str]  # the versions that answered as champion for those baskets
    baskets: int
    champion_macro_f1: float
    challenger_macro_f1: float

    @property
    def margin(self) -> float:
        """The challenger's macro-F1 less the champion's: above 0, the challenger did better."""
        return self.challenger_macro_f1 - self.champion_macro_f1


@dataclass(frozen=True)
class Verdict:
    challenger: str
    champion: str  # the version it was compared with
    promote: bool
    reason: str
    evidence: tuple[dict[str, Any], ...]  # the judged weeks counted, latest last, with both macro-F1s and the margin


def challenger_verdict(
    comparisons: Sequence[Comparison], challenger: str, champion: str, gate: GateSettings, settings: MonitorSettings
) -> Verdict:
    """Whether `challenger` has earned promotion over `champion` in its monitored weeks (see the module
    docstring)."""
    judged = sorted((c for c in comparisons if c.challenger == challenger and c.champions == [champion]
                     and c.baskets >= settings.min_baskets), key=lambda c: c.week)
    streak: list[Comparison] = []
    for comparison in judged:
        won = (comparison.margin >= settings.challenger_margin
               and comparison.challenger_macro_f1 >= gate.min_macro_f1)
        streak = [*streak, comparison] if won else []
    needed = settings.challenger_weeks
    counted = streak[-needed:]
    evidence = tuple({**asdict(c), "margin": round(c.margin, 6)} for c in counted)
    if len(streak) >= needed:
        weeks = ", ".join(str(c.week) for c in counted)
        return Verdict(challenger, champion, True,
                       f"beat the champion's macro-F1 by at least {settings.challenger_margin} (and met the gate's "
                       f"{gate.min_macro_f1}) on the same baskets in each of the {needed} weeks {weeks}", evidence)
    return Verdict(challenger, champion, False,
                   f"{len(streak)} of {needed} winning weeks in a row so far ({len(judged)} judged)", evidence)
