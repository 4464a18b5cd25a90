"""When to retrain: one pure function, asked by CI (`retail changed`) and by `retail monitor`.

Retrain when any of these holds (each gives a reason):

* changed: the training data, training code or hyperparameters changed in git (`retail
  changed` finds which paths; a range it cannot compare counts too);
* performance: the champion's macro-F1 in the latest judged week is below the gate's
  (`GateSettings.min_macro_f1`);
* drift: a key feature's PSI in the latest judged week is above `MonitorSettings.drift_psi`
  (`share_unseen_products` excepted, see `ml.reference.DRIFT_FEATURES`);
* new weeks: at least `MonitorSettings.new_weeks` fiscal weeks have landed after the last
  week of the champion's training data.

A monitored week is judged only when the champion had at least `MonitorSettings.min_baskets`
labelled baskets in it; fewer are too few to tell a real fall from noise, and the decision
says so. After the policy has called for retraining, performance and drift are held back for
`MonitorSettings.cooldown_weeks` weeks (the decision notes it): a retrained model needs weeks
of the new data before it can do better, and a fall that lasts would otherwise call for a
retraining every week. A week is judged once: a week no newer than the last call for
retraining is not judged again (it was that call's evidence, or older). New weeks call once
per `MonitorSettings.new_weeks` weeks since the last call: a retrained model that was not
promoted leaves the champion's data as old as before, and would otherwise call every week.
Changes are never held back.

Nothing here reads files, the clock or git: the callers gather the inputs, so a replay of
past weeks gets the answers the weekly job would have given (tests/test_retrain_policy.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ml.settings import GateSettings, MonitorSettings

PERFORMANCE = "performance"
DRIFT = "drift"
NEW_WEEKS = "new weeks"


@dataclass(frozen=True)
class MonitoredWeek:
    """The champion's figures in one monitored week."""

    week: int  # YYYYWW
    labelled: int  # baskets with a label it could predict
    macro_f1: float | None  # None without a labelled basket
    drift: tuple[str, float] | None  # the key feature with the largest PSI, and that PSI; None when not measured


@dataclass(frozen=True)
class Reason:
    kind: str  # a `retail changed` reason (data, hyperparameters, training code, ...) or one of the names above
    detail: str


@dataclass(frozen=True)
class RetrainDecision:
    retrain: bool
    reasons: tuple[Reason, ...]
    notes: tuple[str, ...]  # what could not be judged, and why


def decide_retraining(
    weeks: Sequence[MonitoredWeek],
    new_weeks: int | None,
    changes: Mapping[str, Sequence[str]],
    gate: GateSettings,
    settings: MonitorSettings,
    since_retraining: int | None = None,
    last_call: int | None = None,
) -> RetrainDecision:
    """Whether to retrain, and why.

    `weeks`: the current champion's monitored weeks, in any order (the latest judged one counts);
    `new_weeks`: fiscal weeks from the last week of its training data to the latest monitored week (None: unknown);
    `changes`: `retail changed`'s reasons, each with the paths (or words) behind it;
    `since_retraining`: fiscal weeks from the last monitored week the policy called for retraining to the latest
    monitored week (None: it never did); `last_call`: that week (YYYYWW), whose weeks up to it are not judged again.
    """
    reasons = [Reason(kind, ", ".join(paths)) for kind, paths in changes.items()]
    notes: list[str] = []
    unjudged = [] if last_call is None else [w for w in weeks if w.week <= last_call]
    monitored = _monitored_reasons([w for w in weeks if w not in unjudged], gate, settings, notes)
    if monitored and since_retraining is not None and since_retraining < settings.cooldown_weeks:
        notes.append(f"held back for the cool-down ({since_retraining} of {settings.cooldown_weeks} weeks since "
                     f"the last call for retraining): " + "; ".join(r.detail for r in monitored))
    else:
        reasons += monitored
    if new_weeks is None and weeks:
        notes.append("new weeks not judged: the end of the champion's training data is unknown (its bundle was not "
                     "available: a sha256: version without --bundle, or --no-registry)")
    if new_weeks is not None and new_weeks >= settings.new_weeks:
        if since_retraining is not None and since_retraining < settings.new_weeks:
            notes.append(f"{new_weeks} weeks landed after the champion's training data, held back: the policy called "
                         f"for retraining {since_retraining} weeks ago and calls again {settings.new_weeks} weeks "
                         "after that call")
        else:
            reasons.append(Reason(NEW_WEEKS, f"{new_weeks} weeks landed after the champion's training data "
                                             f"(retrain every {settings.new_weeks})"))
    return RetrainDecision(bool(reasons), tuple(reasons), tuple(notes))


def _monitored_reasons(
    weeks: Sequence[MonitoredWeek], gate: GateSettings, settings: MonitorSettings, notes: list[str]
) -> list[Reason]:
    """Performance and drift in the latest judged week; what could not be judged is added to `notes`."""
    reasons = []
    ordered = sorted(weeks, key=lambda w: w.week)
    judged = [w for w in ordered if w.labelled >= settings.min_baskets]
    if ordered and (not judged or judged[-1] is not ordered[-1]):
        latest = ordered[-1]
        notes.append(f"week {latest.week} not judged: {latest.labelled} labelled baskets, fewer than "
                     f"{settings.min_baskets}")
    if judged:
        week = judged[-1]
        if week.macro_f1 is not None and week.macro_f1 < gate.min_macro_f1:
            reasons.append(Reason(PERFORMANCE, f"week {week.week}: macro-F1 {week.macro_f1:.4f} below the gate's "
                                               f"{gate.min_macro_f1}"))
        if week.drift is not None and week.drift[1] > settings.drift_psi:
            reasons.append(Reason(DRIFT, f"week {week.week}: PSI of {week.drift[0]} {week.drift[1]:.3f} above "
                                         f"{settings.drift_psi}"))
    return reasons
