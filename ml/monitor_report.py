"""The monitoring report: one week's outcome as JSON, HTML and PNG, and the weeks before it read back.

Under the report location (a folder or an s3:// prefix; `retail monitor` defaults to the
lake's `monitoring/`), each monitored week has a folder:

  week=YYYYWW/trends.png     the champion's accuracy and macro-F1 week by week against the gate's
                             thresholds, the challenger's macro-F1 beside the champion's on the same
                             baskets, and the champion's largest PSI against the drift threshold
  week=YYYYWW/week.png       this week: per-class precision and recall of each model, PSI per key feature
  week=YYYYWW/report.html    the figures (embedded, so the file stands alone) and the tables behind them
  week=YYYYWW/report.json    the outcome (`Outcome.to_dict`), written last: the history the next weeks read

Figures are drawn with matplotlib's Agg backend (no display needed). Files are put straight
through the location's filesystem: on S3 no directory marker is written, so writing needs
PutObject under the prefix and nothing else.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow.fs as pafs

from ml.challenger import Verdict
from ml.lake import Lake, join
from ml.monitor import WeekReport, policy_inputs, week_index
from ml.retrain_policy import MonitoredWeek, Reason, RetrainDecision, decide_retraining
from ml.settings import GateSettings, MonitorSettings

REPORT_JSON = "report.json"


@dataclass
class Outcome:
    """What one `retail monitor` run found and decided."""

    report: WeekReport
    retraining: RetrainDecision
    verdict: Verdict | None  # the week's challenger, if one was compared
    promoted: str | None  # the version made champion by this run, if any

    def to_dict(self) -> dict[str, Any]:
        return {"report": self.report.to_dict(), "retraining": asdict(self.retraining),
                "verdict": None if self.verdict is None else asdict(self.verdict), "promoted": self.promoted}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        retraining = data["retraining"]
        verdict = data["verdict"]
        return cls(
            report=WeekReport.from_dict(data["report"]),
            retraining=RetrainDecision(retraining["retrain"], tuple(Reason(**r) for r in retraining["reasons"]),
                                       tuple(retraining["notes"])),
            verdict=None if verdict is None else Verdict(**{"champion": "", **verdict,  # "": written before it was
                                                            "evidence": tuple(verdict["evidence"])}),
            promoted=data["promoted"],
        )


@dataclass(frozen=True)
class PolicyInputs:
    """What the retraining policy reads from the monitoring history (`decide_retraining`'s arguments)."""

    weeks: list[MonitoredWeek]
    new_weeks: int | None
    since_retraining: int | None
    last_call: int | None = None

    def decide(self, changes: Mapping[str, Sequence[str]], gate: GateSettings, settings: MonitorSettings
               ) -> RetrainDecision:
        return decide_retraining(self.weeks, self.new_weeks, changes, gate, settings, self.since_retraining,
                                 self.last_call)


def policy_inputs_of(history: list[Outcome], report: WeekReport) -> PolicyInputs:
    """The policy's inputs for `report`'s week, given the outcomes of the weeks before it."""
    weeks, new_weeks = policy_inputs([*(o.report for o in history), report])
    called = [o.report.week for o in history if o.retraining.retrain]
    since = None if not called else week_index(report.week) - week_index(max(called))
    return PolicyInputs(weeks, new_weeks, since, max(called) if called else None)


class ReportStore:
    """The report location: week folders, each holding one week's files."""

    def __init__(self, location: str):
        self.folder = Lake(location)  # the location's filesystem, paths, URIs and whole-file writes
        self.fs, self.base = self.folder.fs, self.folder.base

    def uri(self, *parts: str) -> str:
        return self.folder.uri(*parts)

    def history(self, before: int) -> list[Outcome]:
        """The outcomes of the weeks before `before`, in week order."""
        listed = self.fs.get_file_info(pafs.FileSelector(self.base, recursive=True, allow_not_found=True))
        outcomes = []
        for info in listed:
            folder = info.path[len(self.base):].strip("/").split("/")[0]
            if info.type != pafs.FileType.File or not info.path.endswith(f"/{REPORT_JSON}"):
                continue
            if folder.startswith("week=") and folder[5:].isdigit() and int(folder[5:]) < before:
                with self.fs.open_input_stream(info.path) as stream:
                    outcomes.append(Outcome.from_dict(json.loads(stream.read())))
        return sorted(outcomes, key=lambda o: o.report.week)

    def reported_weeks(self) -> set[int]:
        """The weeks whose folder holds a report.json (listed, not read)."""
        listed = self.fs.get_file_info(pafs.FileSelector(self.base, recursive=True, allow_not_found=True))
        folders = {info.path[len(self.base):].strip("/").split("/")[0] for info in listed
                   if info.type == pafs.FileType.File and info.path.endswith(f"/{REPORT_JSON}")}
        return {int(folder[5:]) for folder in folders if folder.startswith("week=") and folder[5:].isdigit()}

    def write(self, outcome: Outcome, history: list[Outcome], gate: GateSettings, settings: MonitorSettings
              ) -> dict[str, str]:
        """The week's figures, HTML and JSON (last); returns each file's location by name."""
        week = f"week={outcome.report.week}"
        figures = {"trends.png": trends_png([*history, outcome], gate, settings),
                   "week.png": week_png(outcome.report, gate, settings)}
        written = {name: self._put(png, week, name) for name, png in figures.items()}
        written["report.html"] = self._put(render_html(outcome, history, figures, gate, settings).encode(),
                                           week, "report.html")
        written[REPORT_JSON] = self._put(json.dumps(outcome.to_dict(), indent=2).encode(), week, REPORT_JSON)
        return written

    def _put(self, data: bytes, *parts: str) -> str:
        return self.folder.write_bytes(join(*parts), data)


# ---- figures -----------------------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    _pyplot().close(figure)
    return buffer.getvalue()


def trends_png(outcomes: list[Outcome], gate: GateSettings, settings: MonitorSettings) -> bytes:
    """The champion's accuracy, macro-F1 and largest PSI week by week, the challenger's comparisons, the
    thresholds, and the weeks the policy said retrain."""
    plt = _pyplot()
    figure, (performance, drift) = plt.subplots(2, 1, figsize=(8, 6), dpi=100, sharex=True)
    positions = list(range(len(outcomes)))
    champions = [o.report.champion for o in outcomes]
    series = {"accuracy": [None if m is None else m.accuracy for m in champions],
              "macro-F1": [None if m is None else m.macro_f1 for m in champions]}
    for name, values in series.items():
        performance.plot(positions, [np.nan if v is None else v for v in values], marker="o", label=f"champion {name}")
    shadow = [(i, c) for i, o in enumerate(outcomes) for c in o.report.comparisons]
    if shadow:
        performance.plot([i for i, _ in shadow], [c.challenger_macro_f1 for _, c in shadow], "s--",
                         label="challenger macro-F1 (same baskets)")
    performance.axhline(gate.min_accuracy, color="grey", linestyle=":", label=f"gate accuracy {gate.min_accuracy}")
    performance.axhline(gate.min_macro_f1, color="red", linestyle=":", label=f"gate macro-F1 {gate.min_macro_f1}")
    performance.set_ylabel("on labelled baskets")
    performance.set_ylim(0, 1)
    performance.legend(fontsize=7, loc="lower left")
    drifts = [m.max_psi for m in champions if m is not None]
    drift.plot(positions, [np.nan if m is None or m.max_psi is None else m.max_psi[1] for m in champions],
               marker="o", color="purple", label="champion's largest PSI")
    drift.axhline(settings.drift_psi, color="red", linestyle=":", label=f"drift threshold {settings.drift_psi}")
    drift.set_ylim(0, max([settings.drift_psi * 1.5, *[d[1] * 1.1 for d in drifts if d is not None]]))
    for i, outcome in enumerate(outcomes):
        if outcome.retraining.retrain:
            for axis in (performance, drift):
                axis.axvline(i, color="orange", alpha=0.3, linewidth=6)
    drift.set_ylabel("PSI")
    drift.legend(fontsize=7, loc="upper left")
    drift.set_xticks(positions, [f"{o.report.week}\nv{m.version if m else '-'}" for o, m in zip(outcomes, champions,
                                                                                               strict=True)],
                     fontsize=7)
    drift.set_xlabel("week, champion version (orange: the policy said retrain)")
    return _png(figure)


def week_png(report: WeekReport, gate: GateSettings, settings: MonitorSettings) -> bytes:
    """Each model's per-class precision and recall, and its PSI per key feature, this week."""
    plt = _pyplot()
    figure, (classes, drift) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    measured = [m for m in report.models if m.metrics is not None]
    names = sorted({c for m in measured if m.metrics for c in m.metrics["per_class"]})
    width = 0.8 / max(2 * len(measured), 1)
    for k, model in enumerate(measured):
        per_class = model.metrics["per_class"] if model.metrics else {}
        for j, what in enumerate(("precision", "recall")):
            offset = (2 * k + j) * width - 0.4 + width / 2
            classes.bar(np.arange(len(names)) + offset, [np.nan if per_class[c][what] is None else per_class[c][what]
                                                         for c in names], width,
                        label=f"{model.role} v{model.version} {what}")
    classes.axhline(gate.min_class_precision, color="red", linestyle=":",
                    label=f"gate precision {gate.min_class_precision}")
    classes.set_xticks(range(len(names)), names)
    classes.set_ylim(0, 1)
    classes.set_title(f"week {report.week}: per class", fontsize=9)
    classes.legend(fontsize=6)
    with_psi = [m for m in report.models if m.psi]
    features = sorted({f for m in with_psi for f in m.psi})
    width = 0.8 / max(len(with_psi), 1)
    for k, model in enumerate(with_psi):
        drift.barh(np.arange(len(features)) + k * width - 0.4 + width / 2, [model.psi.get(f, 0.0) for f in features],
                   width, label=f"{model.role} v{model.version}")
    drift.axvline(settings.drift_psi, color="red", linestyle=":", label=f"drift threshold {settings.drift_psi}")
    drift.set_yticks(range(len(features)), features, fontsize=7)
    drift.set_title(f"week {report.week}: PSI against each model's training reference", fontsize=9)
    drift.legend(fontsize=6)
    return _png(figure)


# ---- HTML --------------------------------------------------------------------------------------------------------
def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _list(items: list[str] | tuple[str, ...]) -> str:
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>" if items else "<p>none</p>"


def render_html(outcome: Outcome, history: list[Outcome], figures: dict[str, bytes], gate: GateSettings,
                settings: MonitorSettings) -> str:
    report = outcome.report
    models = [[m.role, m.version, m.family, str(m.predicted), str(m.labelled), _number(m.accuracy),
               _number(m.macro_f1), _number(m.min_class_precision),
               "-" if m.max_psi is None else f"{m.max_psi[0]} {m.max_psi[1]:.3f}",
               "-" if m.weeks_after_data is None else str(m.weeks_after_data)] for m in report.models]
    per_class = [[m.role, m.version, c, _number(v["precision"]), _number(v["recall"]), _number(v["f1"]),
                  str(v["support"])] for m in report.models if m.metrics for c, v in m.metrics["per_class"].items()]
    comparisons = [[str(c.week), c.challenger, ", ".join(c.champions), str(c.baskets), _number(c.champion_macro_f1),
                    _number(c.challenger_macro_f1), f"{c.margin:+.4f}"]
                   for o in [*history, outcome] for c in o.report.comparisons]
    weeks = [[str(o.report.week), "-" if o.report.champion is None else o.report.champion.version,
              _number(o.report.champion.macro_f1 if o.report.champion else None),
              "yes" if o.retraining.retrain else "no", "; ".join(r.kind for r in o.retraining.reasons),
              o.promoted or ""] for o in [*history, outcome]]
    decision = outcome.retraining
    verdict = outcome.verdict
    images = "".join(f'<p><img alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode()}"></p>'
                     for name, png in figures.items())
    parts = [
        f"<h1>Monitoring, week {report.week}</h1>",
        f"<p>Labels: {html.escape(report.label_source)} ({report.labelled_baskets} labelled baskets). Predictions: "
        f"{report.prediction_files} files from {html.escape(', '.join(report.prediction_sources) or 'nowhere')} "
        f"({report.duplicate_rows} repeated rows and {report.unkeyed_rows} rows without a basket key left out).</p>",
        f"<h2>Retraining: {'yes' if decision.retrain else 'no'}</h2>",
        _list([f"{r.kind}: {r.detail}" for r in decision.reasons] + list(decision.notes)),
        f"<p>Thresholds: gate accuracy {gate.min_accuracy}, macro-F1 {gate.min_macro_f1}, per-class precision "
        f"{gate.min_class_precision}; drift PSI {settings.drift_psi}; at least {settings.min_baskets} labelled "
        f"baskets to judge a week; retrain every {settings.new_weeks} new weeks.</p>",
        "<h2>Breaches (the champion against the thresholds)</h2>", _list(report.breaches),
        "<h2>Challenger</h2>",
        "<p>no challenger this week</p>" if verdict is None else
        f"<p>version {html.escape(verdict.challenger)}: {'promote' if verdict.promote else 'keep watching'} "
        f"({html.escape(verdict.reason)}){'; promoted to champion' if outcome.promoted else ''}.</p>",
        images,
        "<h2>Models this week</h2>",
        _table(["role", "version", "family", "predicted", "labelled", "accuracy", "macro-F1", "min precision",
                "largest PSI", "weeks after its data"], models),
        "<h2>Per class</h2>", _table(["role", "version", "class", "precision", "recall", "F1", "support"], per_class),
        "<h2>Champion and challenger on the same baskets</h2>",
        _table(["week", "challenger", "champion", "baskets", "champion macro-F1", "challenger macro-F1", "margin"],
               comparisons),
        "<h2>Weeks monitored</h2>",
        _table(["week", "champion", "macro-F1", "retrain", "why", "promoted"], weeks),
        "<h2>Notices</h2>", _list(report.notices),
    ]
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}img{max-width:100%}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Monitoring week {report.week}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")

