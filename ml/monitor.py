"""A week's logged predictions joined with the week's labels: what `retail monitor` measures.

Predictions are read from the lake's predictions zone, every source alike (`read_predictions`):
`retail score` runs write `predictions/<run>/baskets/week=YYYYWW/`, the API's prediction log
`predictions/service/week=YYYYWW/` (ml/prediction_log.py), one row per basket with its key, the
predicted class, the model's version and family and, from the API, the `role` of the model that
answered (the champion, or the challenger scoring in its shadow). Only the week's folders are
listed (one for the service, one per run), so a week costs the same however much history the
zone holds, and its files are read in one dataset scan in `ml.prediction_log.ARROW_SCHEMA`,
several files at a time, each with two requests on S3 (its footer, then its columns): the
service's files of a week number about 2,016 per replica at the default 300 s flush. A file
that cannot be read (cut short, not Parquet) is left out and named in the report, with the
reason, rather than failing the week. A row without a role is the champion's: batch scoring
answers with the model it is given, the champion unless told otherwise. A basket predicted
twice by the same model version in the same role (two runs over one week) counts once: a
batch run's row before the service's, then the first in file path order.

Labels are the week's validated lines in silver (`ml.labels.week_lines`); a basket's label
is a class the models predict (LA, MM, UM), or it has none (XX, or not in silver).

For each (role, model version): baskets predicted and labelled; accuracy, macro-F1 and
per-class precision, recall and F1 (`ml.evaluate.week_metrics`: the gate's, but macro-F1 over
the classes the week holds, and no precision for a class never predicted); the
PSI of each key feature over the baskets it predicted, against its own training reference,
as the API computes it (`ml.reference`). For each challenger version: its macro-F1 and the
champion's on the labelled baskets both predicted. Breaches: the champion's figures against
the gate's thresholds (GateSettings) and the drift threshold (MonitorSettings).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from ml.calendar import week_index_expr
from ml.challenger import Comparison
from ml.evaluate import week_metrics
from ml.ingest import storage_failed
from ml.labels import WeekLines
from ml.lake import Lake, arrow_frame, join
from ml.prediction_log import (
    ARROW_SCHEMA,
    BATCH,
    BATCH_BASKETS,
    CHALLENGER,
    CHAMPION,
    PREDICTION,
    PREDICTIONS,
    SERVICE_LOG,
    week_folder,
)
from ml.reference import DRIFT_FEATURES, feature_psi, flat_features, missing_values
from ml.retrain_policy import MonitoredWeek
from ml.schema import BASKET_KEY, LABEL, TRAINABLE_LABELS
from ml.settings import GateSettings, MonitorSettings

if TYPE_CHECKING:
    from ml.bundle import ModelBundle

VERSION = "model_version"
FAMILY = "model_family"
ROLE = "role"
SOURCE = "source"
CLASSES = list(TRAINABLE_LABELS)
COLUMNS = [BASKET_KEY, PREDICTION, VERSION, FAMILY, ROLE, SOURCE]
"""The columns of the prediction log the monitor reads."""
FILES_READ_AHEAD = 16
"""Files the scan reads at once (pyarrow's default is 4): a small file's two S3 requests are mostly waiting. Against
moto with 20 ms added to every request, 4 gave 15 ms a file, 8 to 64 gave 8-10 ms (Arrow's 8 I/O threads)."""
NAMED_UNREADABLE = 20
"""Unreadable files named one by one in the report's notices (report.json lists every one)."""

BundleFor = Callable[[str], "ModelBundle | None"]
"""A model version's bundle, or None when it cannot be had (its PSI is then not measured)."""


def week_index(week: int) -> int:
    """Weeks since the fiscal epoch of a week code (`ml.calendar`)."""
    return int(pl.select(week_index_expr(pl.lit(week))).item())


@dataclass(frozen=True)
class WeekPredictions:
    """The week's prediction rows, one per (role, version, basket), and where they came from."""

    rows: pl.DataFrame  # BASKET_KEY, prediction, model_version, model_family, role
    sources: tuple[str, ...]  # folders under predictions/ (a run id, `service`) that held the week
    files: int  # files read
    duplicates: int  # rows dropped as a repeat of a (role, version, basket) already read
    unkeyed: int  # rows dropped for want of a basket key (a service request that sent no BASKET_ID)
    unreadable: dict[str, str] = field(default_factory=dict)  # path -> why it was left out


def read_predictions(lake: Lake, week: int) -> WeekPredictions:
    """Every prediction row of the week in the lake's predictions zone, whichever run or source wrote it."""
    base = join(lake.base, PREDICTIONS)
    files = _week_files(lake.fs, lake.base, week)
    rows, unreadable = _read(lake.fs, files)
    keyed = rows.filter(pl.col(BASKET_KEY).is_not_null())
    # Of a basket's repeats, a batch run's row is kept before the service's, then the first file in path order.
    unique = (keyed.with_row_index("_read").sort(pl.col(SOURCE) != BATCH, "_file", "_read")
              .unique(subset=[ROLE, VERSION, BASKET_KEY], keep="first", maintain_order=True)
              .sort("_read").drop("_read", "_file", SOURCE))
    read = [info.path for info in files if info.path not in unreadable]
    sources = sorted({path[len(base):].strip("/").split("/")[0] for path in read})
    return WeekPredictions(unique, tuple(sources), len(read), keyed.height - unique.height,
                           rows.height - keyed.height, unreadable)


def predicted_weeks(lake: Lake) -> list[int]:
    """The weeks with a folder in the predictions zone (the service log's or a batch run's), in order. Lists the
    zone's top level and one level below each of its folders only (no object is read)."""
    top = lake.fs.get_file_info(pafs.FileSelector(join(lake.base, PREDICTIONS), allow_not_found=True))
    service = join(lake.base, *SERVICE_LOG)
    parents = [join(info.path, BATCH_BASKETS) if info.path != service else service
               for info in top if info.type == pafs.FileType.Directory]
    prefix = week_folder(0)[:-1]  # `week=`
    weeks = {int(info.base_name[len(prefix):]) for parent in parents
             for info in lake.fs.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
             if info.type == pafs.FileType.Directory and info.base_name.startswith(prefix)
             and info.base_name[len(prefix):].isdigit()}
    return sorted(weeks)


def _week_files(fs: pafs.FileSystem, root: str, week: int) -> list[pafs.FileInfo]:
    """The Parquet files of `week` in the predictions zone of the lake at `root`, in path order: the service log's
    week folder and each batch run's (`ml.prediction_log`'s layout). Lists the zone's top level and those folders
    only; hidden files (a local write's `.partial`) are not the week's."""
    top = fs.get_file_info(pafs.FileSelector(join(root, PREDICTIONS), allow_not_found=True))
    service = join(root, *SERVICE_LOG)
    folders = [join(service, week_folder(week))]
    folders += [join(info.path, BATCH_BASKETS, week_folder(week)) for info in top
                if info.type == pafs.FileType.Directory and info.path != service]
    listed = [info for folder in folders for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))]
    return sorted((info for info in listed if info.type == pafs.FileType.File and info.base_name.endswith(".parquet")
                   and not info.base_name.startswith((".", "_"))), key=lambda info: info.path)


def _read(fs: pafs.FileSystem, files: list[pafs.FileInfo]) -> tuple[pl.DataFrame, dict[str, str]]:
    """The monitor's columns of `files` (with `_file`, the file's index, and a null role or source filled in, as
    in files written before those columns existed), and the files that could not be read, with why."""
    fragments = [ds.ParquetFileFormat().make_fragment(info.path, filesystem=fs, file_size=info.size)
                 for info in files]
    try:
        table = ds.FileSystemDataset(fragments, ARROW_SCHEMA, ds.ParquetFileFormat(), fs).to_table(
            columns={**{c: ds.field(c) for c in COLUMNS}, "_file": ds.field("__fragment_index")},
            fragment_readahead=FILES_READ_AHEAD)
        tables, unreadable = [table], dict[str, str]()
    except (pa.ArrowException, OSError):  # a file cut short, not Parquet: read them one by one to find which
        tables, unreadable = _read_each(fragments)
    rows = pl.concat([arrow_frame(t) for t in tables]) if tables else pl.DataFrame(
        schema={**dict.fromkeys(COLUMNS, pl.String), "_file": pl.Int32})
    return rows.with_columns(pl.col(ROLE).fill_null(CHAMPION), pl.col(SOURCE).fill_null(BATCH)), unreadable


def _read_each(fragments: list[ds.Fragment]) -> tuple[list[pa.Table], dict[str, str]]:
    """`_read`'s tables, a file at a time (several at once), leaving out the files whose content fails (cut short,
    not Parquet). A file the storage failed to give (`ml.ingest.storage_failed`: S3's throttling, a timeout) is not
    left out: its error stops the run, which the scheduled Job retries, instead of a week's report written without
    it that no later run would judge again."""
    def read(index: int) -> pa.Table | str:
        try:
            table = fragments[index].to_table(schema=ARROW_SCHEMA, columns=COLUMNS)
        except (pa.ArrowException, OSError) as exc:
            if storage_failed(exc):
                raise
            return f"{type(exc).__name__}: {exc}"
        return table.append_column("_file", pa.repeat(pa.scalar(index, pa.int32()), table.num_rows))

    with ThreadPoolExecutor(max_workers=FILES_READ_AHEAD) as pool:
        results = list(pool.map(read, range(len(fragments))))
    tables = [result for result in results if isinstance(result, pa.Table)]
    unreadable = {fragment.path: result for fragment, result in zip(fragments, results, strict=True)
                  if isinstance(result, str)}
    return tables, unreadable


@dataclass
class ModelWeek:
    """One model version in one role over the week."""

    role: str
    version: str
    family: str
    predicted: int  # baskets it predicted
    labelled: int  # of those, baskets with a label it could predict
    metrics: dict[str, Any] | None  # ml.evaluate.Metrics as a dict; None without a labelled basket
    psi: dict[str, float]  # key feature -> PSI; empty when the version's bundle was not available
    weeks_after_data: int | None  # fiscal weeks from the last week of its training data to this one

    @property
    def accuracy(self) -> float | None:
        return None if self.metrics is None else float(self.metrics["accuracy"])

    @property
    def macro_f1(self) -> float | None:
        return None if self.metrics is None else float(self.metrics["macro_f1"])

    @property
    def min_class_precision(self) -> float | None:
        """The lowest precision among the classes it predicted (None: none)."""
        if self.metrics is None:
            return None
        known = [float(v["precision"]) for v in self.metrics["per_class"].values() if v["precision"] is not None]
        return min(known) if known else None

    @property
    def max_psi(self) -> tuple[str, float] | None:
        """The key feature that drifted most among those that judge drift (`ml.reference.DRIFT_FEATURES`), and its
        PSI."""
        judged = {name: value for name, value in self.psi.items() if name in DRIFT_FEATURES}
        return max(judged.items(), key=lambda item: item[1]) if judged else None


@dataclass
class WeekReport:
    week: int
    created: str
    label_source: str
    labelled_baskets: int  # baskets of the week in silver with a label the models predict
    prediction_sources: list[str]
    prediction_files: int
    duplicate_rows: int
    unkeyed_rows: int
    models: list[ModelWeek]
    comparisons: list[Comparison]
    breaches: list[str]
    notices: list[str] = field(default_factory=list)
    predicted_baskets: int = 0  # distinct basket keys predicted in the week, whatever the role or version
    joined_baskets: int = 0  # of those, baskets found in the week's silver lines (labelled or XX)
    unreadable_files: dict[str, str] = field(default_factory=dict)  # prediction files left out, and why
    served_versions: list[str] = field(default_factory=list)  # the --bundle versions (sha256:<manifest hash>) read

    @property
    def join_coverage(self) -> float | None:
        """The share of predicted baskets whose key the week's silver lines hold; None without a prediction.
        Low, the predictions' keys do not match the labels' (a key built differently at scoring and landing)."""
        return self.joined_baskets / self.predicted_baskets if self.predicted_baskets else None

    @property
    def champion(self) -> ModelWeek | None:
        """The champion-role version that answered for most baskets this week."""
        champions = [m for m in self.models if m.role == CHAMPION]
        return max(champions, key=lambda m: (m.labelled, m.predicted)) if champions else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeekReport:
        return cls(**{**data, "models": [ModelWeek(**m) for m in data["models"]],
                      "comparisons": [Comparison(**c) for c in data["comparisons"]]})


def measure_week(
    week: int,
    predictions: WeekPredictions,
    lines: WeekLines,
    bundle_for: BundleFor,
    gate: GateSettings,
    settings: MonitorSettings,
) -> WeekReport:
    """The week's measurements (see the module docstring)."""
    labels = lines.labels().with_columns(pl.col(BASKET_KEY).cast(pl.String))
    joined = predictions.rows.join(labels, on=BASKET_KEY, how="left")
    predicted = joined[BASKET_KEY].n_unique()
    found = joined.filter(pl.col(LABEL).is_not_null())[BASKET_KEY].n_unique()
    notices = [*_unreadable_notices(predictions.unreadable), *lines.notices,
               *_coverage_notices(predicted, found, settings)]
    models = []
    groups = joined.partition_by(ROLE, VERSION, as_dict=True)
    for (role, version), rows in sorted(groups.items(), key=lambda group: (group[0][0] != CHAMPION, group[0])):
        bundle = bundle_for(str(version))
        if bundle is None:
            notices.append(f"version {version}: no bundle available, so its input drift was not measured")
        models.append(_model_week(str(role), str(version), rows, lines, bundle, week, notices))
    comparisons = [_comparison(week, version, joined) for version in
                   sorted(joined.filter(pl.col(ROLE) == CHALLENGER)[VERSION].unique().to_list())]
    report = WeekReport(
        week=week,
        created=dt.datetime.now(dt.UTC).isoformat(),
        label_source=lines.source,
        labelled_baskets=lines.labelled_baskets,
        prediction_sources=list(predictions.sources),
        prediction_files=predictions.files,
        duplicate_rows=predictions.duplicates,
        unkeyed_rows=predictions.unkeyed,
        models=models,
        comparisons=[c for c in comparisons if c is not None],
        breaches=[],
        notices=notices,
        predicted_baskets=predicted,
        joined_baskets=found,
        unreadable_files=dict(predictions.unreadable),
    )
    report.breaches = breaches(report, gate, settings)
    return report


def _unreadable_notices(unreadable: dict[str, str]) -> list[str]:
    """A notice per prediction file left out (the first `NAMED_UNREADABLE`), and how many more there were."""
    notices = [f"prediction file {path} left out, unreadable: {reason}"
               for path, reason in list(unreadable.items())[:NAMED_UNREADABLE]]
    if len(unreadable) > NAMED_UNREADABLE:
        notices.append(f"{len(unreadable) - NAMED_UNREADABLE} more unreadable prediction files left out "
                       "(unreadable_files in report.json names each)")
    return notices


def _coverage_notices(predicted: int, found: int, settings: MonitorSettings) -> list[str]:
    """A notice when fewer than `MonitorSettings.min_join_coverage` of the predicted baskets are in silver."""
    if not predicted or found / predicted >= settings.min_join_coverage:
        return []
    return [f"only {found} of {predicted} predicted baskets ({found / predicted:.1%}) are in the week's silver "
            f"lines (expected at least {settings.min_join_coverage:.0%}): the predictions' basket keys do not "
            "match the labels' (a key rebuilt differently when scored and when landed, or another week's "
            "predictions), so the figures cover only the baskets that joined"]


def _model_week(
    role: str, version: str, rows: pl.DataFrame, lines: WeekLines, bundle: ModelBundle | None, week: int,
    notices: list[str],
) -> ModelWeek:
    """One model version's week; what limits its PSI (a flat reference, missing values) is added to `notices`."""
    labelled = rows.filter(pl.col(LABEL).is_in(CLASSES))
    metrics = _metrics(labelled[LABEL], labelled[PREDICTION]) if labelled.height else None
    psi: dict[str, float] = {}
    weeks_after_data = None
    if bundle is not None:
        keys = rows[BASKET_KEY].implode()
        scored = lines.lines.filter(pl.col(BASKET_KEY).cast(pl.String).is_in(keys))
        batch, _ = bundle.compiled.encode_frame(scored)
        reference, matrix = bundle.meta.get("drift_reference", {}), bundle.compiled.transform(batch)
        psi = feature_psi(reference, bundle.featurizer.feature_names_, matrix)
        notices += [f"version {version}: the reference of {name} has fewer than two populated bins, so its PSI "
                    "cannot show a drift" for name in flat_features(reference)]
        notices += [f"version {version}: {count} baskets without a value of {name}, left out of its PSI"
                    for name, count in missing_values(bundle.featurizer.feature_names_, matrix).items()]
        data_weeks = bundle.meta.get("data", {}).get("holdout_weeks")
        if data_weeks:
            weeks_after_data = week_index(week) - week_index(int(data_weeks[1]))
    return ModelWeek(role=role, version=version, family=str(rows[FAMILY][0]), predicted=rows.height,
                     labelled=labelled.height, metrics=metrics, psi=psi,
                     weeks_after_data=weeks_after_data)


def _metrics(truth: pl.Series, predicted: pl.Series) -> dict[str, Any]:
    index = {c: i for i, c in enumerate(CLASSES)}
    return week_metrics(truth.replace_strict(index, return_dtype=pl.Int32).to_numpy(),
                           predicted.replace_strict(index, return_dtype=pl.Int32).to_numpy(), CLASSES)


def _comparison(week: int, challenger: str, joined: pl.DataFrame) -> Comparison | None:
    labelled = joined.filter(pl.col(LABEL).is_in(CLASSES))
    theirs = labelled.filter((pl.col(ROLE) == CHALLENGER) & (pl.col(VERSION) == challenger))
    ours = labelled.filter(pl.col(ROLE) == CHAMPION).unique(BASKET_KEY, keep="first", maintain_order=True)
    both = theirs.join(ours.select(BASKET_KEY, pl.col(PREDICTION).alias("champion_prediction"),
                                   pl.col(VERSION).alias("champion_version")), on=BASKET_KEY)
    if not both.height:
        return None
    return Comparison(
        week=week,
        challenger=challenger,
        champions=sorted(both["champion_version"].unique().to_list()),
        baskets=both.height,
        champion_macro_f1=_metrics(both[LABEL], both["champion_prediction"])["macro_f1"],
        challenger_macro_f1=_metrics(both[LABEL], both[PREDICTION])["macro_f1"],
    )


def breaches(report: WeekReport, gate: GateSettings, settings: MonitorSettings) -> list[str]:
    """The champion's figures that cross a threshold, in words; none when it had too few labelled baskets."""
    champion = report.champion
    if champion is None or champion.labelled < settings.min_baskets or champion.metrics is None:
        return []
    found = []
    checks = [("accuracy", champion.accuracy, gate.min_accuracy), ("macro-F1", champion.macro_f1, gate.min_macro_f1)]
    checks += [(f"precision {c}", float(v["precision"]), gate.min_class_precision)
               for c, v in champion.metrics["per_class"].items() if v["precision"] is not None]
    for name, value, threshold in checks:
        if value is not None and value < threshold:
            found.append(f"week {report.week}: champion version {champion.version} {name} {value:.4f} "
                         f"< {threshold} (gate)")
    drifted = champion.max_psi
    if drifted is not None and drifted[1] > settings.drift_psi:
        found.append(f"week {report.week}: champion version {champion.version} input drift: PSI of {drifted[0]} "
                     f"{drifted[1]:.3f} > {settings.drift_psi}")
    return found


def policy_inputs(reports: Iterable[WeekReport]) -> tuple[list[MonitoredWeek], int | None]:
    """What the retraining policy reads from monitored weeks: the weeks in which the latest week's champion
    version answered as champion, and the fiscal weeks from the end of its training data to the latest week."""
    ordered = sorted(reports, key=lambda r: r.week)
    latest = next((r.champion for r in reversed(ordered) if r.champion is not None), None)
    if latest is None:
        return [], None
    weeks = [MonitoredWeek(r.week, c.labelled, c.macro_f1, c.max_psi)
             for r in ordered if (c := r.champion) is not None and c.version == latest.version]
    return weeks, latest.weeks_after_data
