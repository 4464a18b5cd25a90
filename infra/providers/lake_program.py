"""The inline Pulumi program of `retail lake build --cloud`: an EMR Serverless application on the lake image, and one
run of the lake job (ml/spark_lake.py) on it.

It runs as its own project (`retail-mlops-lake`, stack `lake-<platform stack>`) and reads what it needs from the
platform stack's outputs (`lake_inputs`): the private subnets, the lake job's role, security group and log group
(infra/lake_engine.py's `LakeEngine`), the lake root and the `lake` image repository; and the application's
settings from the platform's `Pulumi.<stack>.yaml` (`retail:lakeEngine`, `lake_engine_config`), as training reads
`retail:training`. It exports the run's `manifestUri`, which `retail train --cloud --manifest` takes.

The run id is explicit and decided before the run: the newest modification time among the raw input's CSV files
(UTC, so runs sort by time as `ml.lake.run_id_for`'s do) and 8 hex digits of a hash over the input's listing (keys,
sizes, ETags) and the image. The same input and image give the same run id, so running the command again after a
successful run changes nothing (after a failed one it starts the run again: infra/providers/lake_job.py); new data or
new code is a new run in new folders. `lake_offline_run` runs the same program under the mock
runtime, for the offline policy check.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.automation import LAKE_PROJECT
from infra.config import NAMESPACE, LakeEngineConfig, stack_file_section
from infra.lake_engine import LOG_SOURCES, LOG_STREAM_PREFIX, LOG_TYPES, LakeApplication, LakeApplicationArgs
from infra.offline import OfflineRun, run_offline
from infra.providers.lake_job import LakeJob, unfinished_runs
from infra.providers.sourcedir import code_version
from ml.ingest import WEEKLY_FILE
from ml.lineage import COMMIT_ENV, git_commit

DOCKERFILE = "Dockerfile.lake"
TAG_PREFIX = "lake-"
KEY = f"{NAMESPACE}:lakeEngine"
REQUIRED_OUTPUTS = ("privateSubnetIds", "repositoryUrls", "lakeRoot", "lakeJobRoleArn", "lakeEngineSecurityGroupId",
                    "lakeEngineLogGroupName")
"""Platform stack outputs the program cannot do without (empty when the stack has retail:lakeEngine turned off)."""
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


class LakeEngineMissing(ValueError):
    """The platform stack has no lake engine (outputs missing or empty); the message says what to do."""


@dataclass(frozen=True)
class RawObject:
    """One file of the raw input, as S3 lists it."""

    key: str
    size: int
    etag: str
    last_modified: dt.datetime


@dataclass(frozen=True)
class LakeInputs:
    """Everything the program needs; `lake_inputs` gathers it from the platform stack and the raw input."""

    stack: str
    region: str
    subnet_ids: list[str]
    security_group_id: str
    role_arn: str
    log_group_name: str
    image_uri: str
    """Dockerfile.lake's image, `<lake repository>@sha256:...` (infra.images.ensure_image)."""
    lake_root: str
    raw_uri: str
    input_fingerprint: str
    run_id: str
    settings: LakeEngineConfig = field(default_factory=LakeEngineConfig)
    tags: Mapping[str, str] = field(default_factory=dict)
    new_run: str | None = None
    """`retail lake build --cloud --new-run`: salts the run's StartJobRun token so that a new run starts (LakeJob)."""


def lake_engine_config(project_dir: Path, stack: str) -> LakeEngineConfig:
    """The platform stack file's `retail:lakeEngine`, validated; the defaults without the file or the section."""
    parsed: LakeEngineConfig = stack_file_section(LakeEngineConfig, project_dir, stack, KEY)
    return parsed


def require_lake_outputs(stack: str, outputs: Mapping[str, Any]) -> None:
    """LakeEngineMissing unless the platform stack has every output the lake job reads."""
    missing = [key for key in REQUIRED_OUTPUTS if not outputs.get(key)]
    if outputs.get("repositoryUrls") and not outputs["repositoryUrls"].get("lake"):
        missing.append("repositoryUrls.lake")
    if missing:
        raise LakeEngineMissing(
            f"the platform stack {stack!r} has no (or empty) output(s) {', '.join(missing)}: deploy the current "
            f"platform with retail:lakeEngine enabled (`retail infra up --stack {stack}`) before building the lake "
            "on AWS"
        )


def require_raw_in_lake(raw_uri: str, lake_root: str) -> tuple[str, str]:
    """(bucket, key prefix) of `raw_uri`; a ValueError unless it lies under `<lake root>/raw/`, the only input the
    job role may read."""
    raw_zone = f"{lake_root.rstrip('/')}/raw/"
    if not raw_uri.startswith(raw_zone) or raw_uri == raw_zone:
        raise ValueError(f"--raw {raw_uri} is not under the lake's raw zone {raw_zone}: the lake job may read only "
                         f"there; copy the input first (aws s3 cp <file or folder> {raw_zone}<name>/ --recursive)")
    bucket, _, prefix = raw_uri.removeprefix("s3://").partition("/")
    return bucket, prefix


def raw_listing(s3: Any, bucket: str, prefix: str) -> list[RawObject]:
    """The files the job will read at s3://<bucket>/<prefix>, by its own rule (`ml.score.transaction_files`): the
    object itself when the URI names one, else the folder's weekly files `transactions_YYYYWW.csv` (its direct
    children, `ml.ingest.WEEKLY_FILE`); a ValueError if there are none, so no paid run starts to find nothing."""
    def listed(**request: str) -> list[RawObject]:
        return [RawObject(item["Key"], int(item["Size"]), str(item["ETag"]).strip('"'), item["LastModified"])
                for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, **request)
                for item in page.get("Contents", [])]

    if not prefix.endswith("/"):
        named = [o for o in listed(Prefix=prefix) if o.key == prefix]
        if named:
            return named
    folder = prefix if prefix.endswith("/") else f"{prefix}/"
    weekly = [o for o in listed(Prefix=folder, Delimiter="/") if WEEKLY_FILE.match(o.key.removeprefix(folder))]
    if not weekly:
        raise ValueError(f"s3://{bucket}/{prefix} is neither a file nor a folder holding weekly files named "
                         "transactions_YYYYWW.csv: nothing for the lake job to read")
    return sorted(weekly, key=lambda o: o.key)


def input_fingerprint(objects: Sequence[RawObject]) -> str:
    """Hex SHA-256 over each file's key, size and ETag: new data under the same URI changes it."""
    lines = "".join(f"{o.key}\0{o.size}\0{o.etag}\n" for o in sorted(objects, key=lambda o: o.key))
    return hashlib.sha256(lines.encode()).hexdigest()


def lake_run_id(objects: Sequence[RawObject], fingerprint: str, image_uri: str) -> str:
    """`<newest modification, UTC>-<8 hex of the input and image>`: the same input and image, the same run."""
    newest = max(o.last_modified for o in objects).astimezone(dt.UTC)
    return f"{newest:%Y%m%dT%H%M%SZ}-{hashlib.sha256(f'{fingerprint}{image_uri}'.encode()).hexdigest()[:8]}"


def lake_image_tag(repo_root: Path, settings: LakeEngineConfig) -> str:
    """`lake-<release>-<16 hex>` over the training source set's version (ml/, the lock, the project file),
    Dockerfile.lake and the EMR release and base image the image is built on."""
    recipe = (repo_root / DOCKERFILE).read_bytes()
    base = f"{settings.release_label}:{settings.base_image_tag}"
    version = hashlib.sha256(f"{code_version(repo_root)}\0{base}\0".encode() + recipe).hexdigest()[:16]
    return f"{TAG_PREFIX}{settings.release_label}-{version}"


def lake_image_build_args(repo_root: Path, settings: LakeEngineConfig) -> dict[str, str]:
    """Dockerfile.lake's build args: the application's EMR release and its base image's tag, and the commit built
    from (RETAIL_GIT_COMMIT, which `ml.lineage.git_commit` reads inside the image, where there is no checkout).

    A checkout with changed tracked files is a ValueError: the image's tag hashes the code, not the commit, so an image
    built from it would name `<sha>-dirty` (a commit that does not hold its code) in every later run on the same code.
    `retail lake build --cloud` asks for these only when the image has to be built (infra.images.ensure_image), so a
    dirty checkout may still use an image that exists.
    Outside a checkout the commit is RETAIL_GIT_COMMIT's value, else `unknown`."""
    commit = git_commit(repo_root)
    if (head := commit.removesuffix("-dirty")) != commit:
        raise ValueError(f"{repo_root} has uncommitted changes to tracked files (HEAD {head}): "
                         "the lake image records the commit it is built from and is reused by every later run on the "
                         "same code, so it is built from committed code only; commit or stash the changes, or pass "
                         "--image-uri")
    return {"EMR_RELEASE": settings.release_label, "EMR_BASE_TAG": settings.base_image_tag, COMMIT_ENV: commit}


def lake_inputs(
    stack: str,
    outputs: Mapping[str, Any],
    *,
    raw_uri: str,
    objects: Sequence[RawObject],
    image_uri: str,
    settings: LakeEngineConfig,
    tags: Mapping[str, str],
    region: str,
    new_run: str | None = None,
) -> LakeInputs:
    """The program's inputs from the platform stack's outputs and the raw input's listing."""
    require_lake_outputs(stack, outputs)
    fingerprint = input_fingerprint(objects)
    return LakeInputs(
        stack=stack,
        region=region,
        subnet_ids=list(outputs["privateSubnetIds"]),
        security_group_id=outputs["lakeEngineSecurityGroupId"],
        role_arn=outputs["lakeJobRoleArn"],
        log_group_name=outputs["lakeEngineLogGroupName"],
        image_uri=image_uri,
        lake_root=outputs["lakeRoot"],
        raw_uri=raw_uri,
        input_fingerprint=fingerprint,
        run_id=lake_run_id(objects, fingerprint, image_uri),
        settings=settings,
        tags=dict(tags),
        new_run=new_run,
    )


def lake_program(inputs: LakeInputs) -> Callable[[], None]:
    def program() -> None:
        provider = aws.Provider("aws", region=inputs.region, default_tags={"tags": dict(inputs.tags)})
        engine = LakeApplication(
            f"retail-{inputs.stack}-lake",
            LakeApplicationArgs(
                settings=inputs.settings,
                image_uri=inputs.image_uri,
                subnet_ids=inputs.subnet_ids,
                security_group_id=inputs.security_group_id,
                log_group_name=inputs.log_group_name,
                application_name=f"retail-{inputs.stack}-lake",
            ),
            opts=pulumi.ResourceOptions(providers={"aws": provider}),
        )
        job = LakeJob(
            f"retail-{inputs.stack}-lake-run",
            region=inputs.region,
            application_id=engine.application_id,
            role_arn=inputs.role_arn,
            image_uri=inputs.image_uri,
            raw_uri=inputs.raw_uri,
            input_fingerprint=inputs.input_fingerprint,
            lake_root=inputs.lake_root,
            run_id=inputs.run_id,
            log_group=inputs.log_group_name,
            sizes=inputs.settings,
            execution_timeout_minutes=inputs.settings.job_timeout_minutes,
            timeout_seconds=inputs.settings.job_timeout_minutes * 60 + 600,  # queueing and start-up on top
            tags=dict(inputs.tags),
            new_run=inputs.new_run,
        )
        pulumi.export("applicationId", engine.application_id)
        pulumi.export("imageUri", inputs.image_uri)
        pulumi.export("jobRunId", job.job_run_id)
        pulumi.export("runId", job.run_id)
        pulumi.export("manifestUri", job.manifest_uri)

    return program


STOPPED = {"CREATED", "STOPPED"}
"""Application states in which EMR Serverless accepts UpdateApplication."""
PASSING = {"CREATING", "STARTING", "STOPPING"}
"""States an application passes through on its own: waited out."""


def declared_application(inputs: LakeInputs) -> dict[str, Any]:
    """What the program declares of the application (infra/lake_engine.py `LakeApplication`), in GetApplication's
    shape: the settings UpdateApplication changes."""
    settings = inputs.settings
    return {
        "releaseLabel": settings.release_label,
        "architecture": settings.architecture,
        "imageConfiguration": {"imageUri": inputs.image_uri},
        "maximumCapacity": {"cpu": settings.max_cpu, "memory": settings.max_memory, "disk": settings.max_disk},
        "autoStartConfiguration": {"enabled": True},
        "autoStopConfiguration": {"enabled": True, "idleTimeoutMinutes": settings.idle_timeout_minutes},
        "networkConfiguration": {"subnetIds": list(inputs.subnet_ids), "securityGroupIds": [inputs.security_group_id]},
        "monitoringConfiguration": {"cloudWatchLoggingConfiguration": {
            "enabled": True, "logGroupName": inputs.log_group_name, "logStreamNamePrefix": LOG_STREAM_PREFIX,
            "logTypes": {source: list(LOG_TYPES) for source in LOG_SOURCES}}},
    }


def _differs(declared: Any, live: Any) -> bool:
    """Whether `live` lacks or changes anything of `declared` (keys `declared` does not name are ignored; lists are
    compared as sets)."""
    if isinstance(declared, Mapping):
        return not isinstance(live, Mapping) or any(_differs(value, live.get(key)) for key, value in declared.items())
    if isinstance(declared, list):
        return not isinstance(live, list) or sorted(map(str, declared)) != sorted(map(str, live))
    return bool(declared != live)


def changed_settings(live: Mapping[str, Any], declared: Mapping[str, Any]) -> list[str]:
    """The settings of `declared` the live application (GetApplication's `application`) does not have."""
    return [key for key, value in declared.items() if _differs(value, live.get(key))]


def _require_no_unfinished_runs(client: Any, application_id: str) -> None:
    """Refuse to stop an application with job runs not yet final, naming them and how to cancel them."""
    runs = unfinished_runs(client, application_id)
    if runs:
        listed = ", ".join(f"{run['id']} ({run['state']})" for run in runs)
        raise ValueError(f"EMR Serverless application {application_id} must be stopped to be updated, but job runs "
                         f"are not finished: {listed}. Wait for them, or cancel each with `aws emr-serverless "
                         f"cancel-job-run --application-id {application_id} --job-run-id <id>`, then run again")


def stop_for_update(client: Any, application_id: str | None, declared: Mapping[str, Any], poll_seconds: float = 10,
                    timeout_seconds: float = 600) -> list[str]:
    """Stop the lake stack's application before `pulumi up` updates it; the settings that differ (none: nothing done).

    EMR Serverless updates an application only while it is CREATED or STOPPED, and one stays STARTED for
    `idleTimeoutMinutes` after its last run, so an up soon after a run that changes anything UpdateApplication sets
    (image, release, capacity, idle timeout, network, logging) would fail. The live application (GetApplication) is
    compared with `declared_application`; when they differ it is stopped, waiting through CREATING, STARTING and
    STOPPING. Nothing is done for the first up (no application yet, or it is gone) or when nothing differs (a new run
    needs no update). StopApplication needs every job run finished: job runs not yet final are a ValueError naming
    them. A TERMINATED application cannot be updated, nor run on: a ValueError saying to drop it from the state (the
    program does not replace it by itself)."""
    if not application_id:
        return []
    try:
        live = client.get_application(applicationId=application_id)["application"]
    except client.exceptions.ResourceNotFoundException:
        return []
    if live["state"] == "TERMINATED":
        raise ValueError(f"EMR Serverless application {application_id} is TERMINATED (deleted outside this stack): it "
                         "cannot be updated or run on. Drop its Application from the lake stack's state (`pulumi "
                         "state delete <its URN>` in the lake stack) so that the next run creates a new one")
    changed = changed_settings(live, declared)
    if not changed:
        return []
    deadline = time.monotonic() + timeout_seconds
    stop_asked = False
    while (state := live["state"]) not in STOPPED:
        if state not in PASSING and not stop_asked:
            _require_no_unfinished_runs(client, application_id)
            client.stop_application(applicationId=application_id)
            stop_asked = True
        elif time.monotonic() >= deadline:
            raise TimeoutError(f"EMR Serverless application {application_id} is still {state} {timeout_seconds:.0f} s "
                               "after StopApplication (a run still going?); try again once it has stopped")
        else:
            time.sleep(poll_seconds)
        live = client.get_application(applicationId=application_id)["application"]
    return changed


OFFLINE_LAST_MODIFIED = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
"""Stands in for the raw input's modification time in the offline run (no bucket is listed)."""


def lake_offline_run(stack: str, platform_outputs: Mapping[str, Any], *,
                     project_dir: Path = REPOSITORY_ROOT) -> OfflineRun:
    """The lake program for `stack` under the mock runtime, as `retail lake build --cloud` would build it.

    `platform_outputs` are the platform stack's outputs (e.g. an offline preview's); the raw input is a placeholder
    file under the lake's raw zone and the image is named by its tag (no registry is asked for a digest)."""
    from infra.providers.program import platform_tags

    lake_root = str(platform_outputs.get("lakeRoot") or "s3://raw/lake")
    raw_uri = f"{lake_root}/raw/offline/transactions.csv"
    placeholder = RawObject(raw_uri.split("/", 3)[3], 0, "offline", OFFLINE_LAST_MODIFIED)
    settings = lake_engine_config(project_dir, stack)
    inputs = lake_inputs(
        stack,
        platform_outputs,
        raw_uri=raw_uri,
        objects=[placeholder],
        image_uri=f"{platform_outputs.get('repositoryUrls', {}).get('lake', 'lake')}:"
                  f"{lake_image_tag(project_dir, settings)}",
        settings=settings,
        tags=platform_tags(stack, platform_outputs, project_dir),
        region=str(platform_outputs.get("region") or "ap-southeast-1"),
    )
    return run_offline(lake_program(inputs), project=LAKE_PROJECT, stack=f"lake-{stack}",
                       config={"aws:region": inputs.region})
