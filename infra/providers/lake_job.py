"""`LakeJob`: one run of the lake job (ml/spark_lake.py: raw -> silver -> gold, features) on EMR Serverless, as a
Pulumi resource.

The job runs the project's lake image (Dockerfile.lake), which the EMR Serverless application names: the entry point
is the file the image holds at `ENTRY_POINT` (a `local://` path, no script on S3), run by the image's Python 3.11
(`IMAGE_PYTHON`, set for the driver and the executors through `spark.emr-serverless.driverEnv.*` and
`spark.executorEnv.*`). Its arguments are those of the contract in ml/spark_lake.py, with an explicit `--run-id`, so
the manifest's URI (`<lake root>/manifests/<run>.json`) is known before the run starts and is an input, not an output.

`create` first looks for a run of the same lake run not yet final (ListJobRuns; `unfinished_twin`): one sent the same
job is waited for instead of starting another, one sent another job or being cancelled is an error naming it. Else it
starts the run (StartJobRun, its client token derived from the inputs), then polls GetJobRun every
`poll_seconds` up to `timeout_seconds`: botocore ships no waiter for emr-serverless (its `waiters` list is empty), so
the poll is ours. StartJobRun's API reference says only that the token "must be unique for each request"; that the
same token gives back the run it started (so a retried create gets its run again) is assumed, not documented
(docs/aws.md, Not verified). Everything StartJobRun is sent is in the token (tags and `executionTimeoutMinutes` too),
so a token is never reused for a different request; should EMR Serverless still answer ConflictException or
ValidationException, the token is salted and the request sent once more. A run given back is told from a new one by
GetJobRun's `createdAt` before the StartJobRun call (not by its state: a new run may fail at once): an earlier
attempt still going is waited for again (a create that timed out resumes), one that ended FAILED or CANCELLED is
started again with the token salted by its id, at most `MAX_STARTS` StartJobRun calls in all. SUCCESS is checked
against the lake: the manifest must exist, else the run is an error; an earlier run that ended SUCCESS without it
would be given back for ever, so the error says to start a new run with `retail lake build --cloud --new-run <text>`
(`new_run` salts the token and needs no replacement). FAILED or CANCELLED is an error carrying EMR Serverless's
`stateDetails` and where the run's logs are (the driver's and executors' stdout and stderr, infra/lake_engine.py's
`LOG_TYPES`).

A run is immutable: a change of what it reads or writes or of the code that runs (raw input and its listing
fingerprint, lake root, run id, image, entry point and arguments, Spark parameters, application, role) replaces
the resource with a new run; other changes (tags, timeouts, polling) are recorded without running again. Deleting
the resource cancels a run still going, waits until it is CANCELLED, and deletes no data: what a run wrote stays in
the lake (a lake run is a record), and finished runs stay in the application's history. A run or application that is
gone is reported gone by `read` and is nothing to cancel for `delete`.

The Spark parameters give Python its room: Polars runs on the driver and in every executor's Python workers, outside
the JVM heap, so the memory each worker asks for is mostly `memoryOverhead` (retail:lakeEngine's driver and executor
sizes, `spark_parameters`), and the job's `--max-memory-gb` is the driver's Python room less the JVM's own off-heap
use. POLARS_MAX_THREADS keeps Polars to the worker's cores: the driver's on the driver, one per task in an executor
(it runs as many Python workers as it has cores).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from typing import Any

import pulumi
from botocore.exceptions import ClientError
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

from infra.config import LakeEngineConfig
from infra.providers import clients
from infra.providers.kinds import LAKE_JOB
from infra.providers.runs import run_diff, run_update

IMAGE_ROOT = "/opt/retail"
"""Where Dockerfile.lake puts the repository's `ml` package (importable from the image's Python through a .pth)."""
ENTRY_POINT = f"local://{IMAGE_ROOT}/ml/spark_lake.py"
"""StartJobRun's entryPoint: the job's file inside the image."""
IMAGE_PYTHON = "/opt/venv/bin/python"
"""The image's Python 3.11 environment (uv.lock's core dependencies); EMR 7.x's own Python is 3.9."""
PYTHON_SETTINGS = (
    "spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON",
    "spark.emr-serverless.driverEnv.PYSPARK_PYTHON",
    "spark.executorEnv.PYSPARK_PYTHON",
)
REPLACE_ON = ("application_id", "role_arn", "image_uri", "entry_point", "arguments", "spark_parameters",
              "raw_uri", "input_fingerprint", "lake_root", "run_id")
"""Inputs that change what the run reads, writes or runs: a change starts a new run (replaces the resource)."""
OUTPUTS = ("job_run_id", "job_run_arn", "state", "state_details", "execution_seconds")
FINAL = {"SUCCESS", "FAILED", "CANCELLED"}
UNFINISHED_RUNS = ["SUBMITTED", "PENDING", "SCHEDULED", "RUNNING", "CANCELLING", "QUEUED"]
"""Job run states that are not final: StopApplication refuses while a run is in one ("All scheduled and running jobs
must be completed or cancelled before stopping an application", API_StopApplication.html)."""
MAX_NAME = 256
MAX_TOKEN = 64
TOKEN_INPUTS = (*REPLACE_ON, "execution_timeout_minutes", "tags", "name_prefix", "new_run")
"""Everything StartJobRun is sent, and `new_run`: the client token covers them all, so it names one request."""
MAX_STARTS = 3
"""StartJobRun calls one create makes at most (earlier failed attempts walked past, a conflicting token salted)."""
TOKEN_CONFLICTS = {"ConflictException", "ValidationException"}
"""StartJobRun errors answered by salting the token and asking once more (a token reused for another request)."""


class LakeJobFailed(Exception):
    """The run ended FAILED or CANCELLED, or succeeded without writing its manifest; the message says which."""


def spark_parameters(sizes: LakeEngineConfig) -> str:
    """sparkSubmitParameters: the image's Python for the driver and the executors, each worker's cores and memory
    (the JVM heap small, the overhead Python lives in large), and Polars' threads per Python process."""
    settings = {setting: IMAGE_PYTHON for setting in PYTHON_SETTINGS} | {
        "spark.driver.cores": str(sizes.driver_cores),
        "spark.driver.memory": f"{sizes.driver_memory_gb}g",
        "spark.driver.memoryOverhead": f"{sizes.driver_python_memory_gb}g",
        "spark.executor.cores": str(sizes.executor_cores),
        "spark.executor.memory": f"{sizes.executor_memory_gb}g",
        "spark.executor.memoryOverhead": f"{sizes.executor_python_memory_gb}g",
        "spark.emr-serverless.driverEnv.POLARS_MAX_THREADS": str(sizes.driver_cores),
        "spark.executorEnv.POLARS_MAX_THREADS": "1",
    }
    return " ".join(f"--conf {setting}={value}" for setting, value in settings.items())


def job_arguments(raw_uri: str, lake_root: str, run_id: str, max_memory_gb: float) -> list[str]:
    """entryPointArguments: ml/spark_lake.py's contract, the run id explicit, `--max-memory-gb` the driver's Python
    room (`LakeEngineConfig.job_memory_gb`); the rest at ml.settings' defaults."""
    return ["--raw", raw_uri, "--lake", lake_root, "--run-id", run_id, "--max-memory-gb", f"{max_memory_gb:g}"]


def manifest_uri(lake_root: str, run_id: str) -> str:
    return f"{lake_root.rstrip('/')}/manifests/{run_id}.json"


def client_token(props: dict[str, Any], after: str | None = None) -> str:
    """StartJobRun's idempotency token over everything the request sends (`TOKEN_INPUTS`): the same request gives the
    same token, so a retried create starts no second run; `after` (an earlier failed run's id, or a conflict's salt)
    and `new_run` salt it so a new run starts."""
    payload = json.dumps({key: props.get(key) for key in TOKEN_INPUTS} | ({"after": after} if after else {}),
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:MAX_TOKEN]


def job_driver(props: dict[str, Any]) -> dict[str, Any]:
    """StartJobRun's jobDriver: the image's entry point, the contract's arguments, the Spark parameters."""
    return {"sparkSubmit": {"entryPoint": props["entry_point"], "entryPointArguments": list(props["arguments"]),
                            "sparkSubmitParameters": props["spark_parameters"]}}


def job_digest(props: dict[str, Any]) -> str:
    """64 hex digits over the job a run is sent (role and jobDriver), carried by its `lake-job` tag: how a run of the
    same lake run is told to be the same job, without relying on GetJobRun echoing the jobDriver unchanged (its API
    reference does not say it does)."""
    job = {"executionRoleArn": props["role_arn"], "jobDriver": job_driver(props)}
    return hashlib.sha256(json.dumps(job, sort_keys=True).encode()).hexdigest()


def start_request(props: dict[str, Any], after: str | None = None) -> dict[str, Any]:
    """The StartJobRun request (`after`: see `client_token`). The name ends with the run id, which it keeps whole."""
    run_id = str(props["run_id"])
    name = f"{props['name_prefix'][:MAX_NAME - len(run_id) - 1]}-{run_id}"
    return {
        "applicationId": props["application_id"],
        "clientToken": client_token(props, after),
        "executionRoleArn": props["role_arn"],
        "name": name,
        "jobDriver": job_driver(props),
        "executionTimeoutMinutes": int(props["execution_timeout_minutes"]),
        "tags": {str(k): str(v) for k, v in (props.get("tags") or {}).items()}
        | {"lake-run": run_id, "lake-job": job_digest(props)},
    }


def outputs_of(run: dict[str, Any]) -> dict[str, Any]:
    """What the resource exposes from a GetJobRun response's `jobRun`."""
    return {
        "job_run_id": run["jobRunId"],
        "job_run_arn": run["arn"],
        "state": run["state"],
        "state_details": run.get("stateDetails") or "",
        "execution_seconds": int(run.get("totalExecutionDurationSeconds") or 0),
    }


def _start_job_run(client: Any, props: dict[str, Any], after: str | None) -> str:
    """StartJobRun's run id; a token EMR Serverless refuses as used (TOKEN_CONFLICTS) is salted once more."""
    try:
        return str(client.start_job_run(**start_request(props, after))["jobRunId"])
    except ClientError as error:
        if error.response["Error"].get("Code") not in TOKEN_CONFLICTS:
            raise
        return str(client.start_job_run(**start_request(props, f"{after or ''}+conflict"))["jobRunId"])


def unfinished_runs(client: Any, application_id: str) -> list[dict[str, Any]]:
    """The application's job runs not yet final (ListJobRuns' summaries, every page). moto answers
    ResourceNotFoundException for an application no run was started on; AWS lists none (ListJobRuns declares no such
    error): either is no run."""
    try:
        pages = client.get_paginator("list_job_runs").paginate(applicationId=application_id, states=UNFINISHED_RUNS)
        return [run for page in pages for run in page["jobRuns"]]
    except ClientError as error:
        if error.response["Error"].get("Code") == "ResourceNotFoundException":
            return []
        raise


def unfinished_twin(client: Any, props: dict[str, Any]) -> dict[str, Any] | None:
    """A run of the same lake run (StartJobRun's `name`, which carries the run id that names the folders it writes)
    not yet final, as GetJobRun answers; None when there is none.

    The client token alone keeps a retried create from starting a second run only while EMR Serverless remembers the
    token, for a time its API reference does not state; two runs of one lake run would write the same folders. So a
    twin sent the same job (role, entry point, arguments, Spark parameters) is this create's run, and LakeJobFailed
    names one sent another job, or one being cancelled: starting beside either would mix two runs' files. The job is
    compared by the `lake-job` tag (`job_digest`), or for a run without one, by GetJobRun's role and jobDriver.

    Not atomic: two creates sending different jobs for one lake run at the same moment could both find no twin.
    Pulumi's stack lock keeps a lake stack's creates one at a time, and each stack has an application of its own."""
    request = start_request(props)
    twins = [summary["id"] for summary in unfinished_runs(client, props["application_id"])
             if summary.get("name") == request["name"]]
    for twin_id in twins:
        run = job_run(client, props["application_id"], twin_id)
        if run is None:  # gone since the listing
            continue
        tags = run.get("tags") or {}
        if "lake-job" in tags:
            same_job = tags["lake-job"] == request["tags"]["lake-job"] and tags.get("lake-run") == props["run_id"]
        else:
            same_job = (run.get("executionRole") == request["executionRoleArn"]
                        and run.get("jobDriver") == request["jobDriver"])
        if run["state"] not in FINAL | {"CANCELLING"} and same_job:
            return run
        if run["state"] not in FINAL:
            why = "is being cancelled" if run["state"] == "CANCELLING" else "was started with another job"
            raise LakeJobFailed(
                f"EMR Serverless job run {twin_id} of application {props['application_id']} writes the same lake run "
                f"({props['run_id']}) and {why} ({run['state']}): a second run would write the same folders. Wait "
                f"for it to end, or cancel it (`aws emr-serverless cancel-job-run --application-id "
                f"{props['application_id']} --job-run-id {twin_id}`) and wait until it is CANCELLED, then run again")
    return None


def start(client: Any, props: dict[str, Any]) -> dict[str, Any]:
    """StartJobRun of these inputs; the run's `jobRun` as GetJobRun first answers.

    An unfinished run of the same lake run sent the same job is this create's run, and no StartJobRun is sent
    (`unfinished_twin`). A run created before the StartJobRun call (GetJobRun's `createdAt`) is an earlier attempt the
    token gave back: one still going or ended SUCCESS is this create's run; one that ended FAILED or CANCELLED is
    started anew with the token salted by its id, up to `MAX_STARTS` calls. A run created since is new, whatever its
    state."""
    twin = unfinished_twin(client, props)
    if twin is not None:
        return twin
    after = None
    for _ in range(MAX_STARTS):
        asked_at = dt.datetime.now(dt.UTC).replace(microsecond=0)  # createdAt may come in whole seconds
        run_id = _start_job_run(client, props, after)
        run: dict[str, Any] = client.get_job_run(applicationId=props["application_id"], jobRunId=run_id)["jobRun"]
        if run["createdAt"] >= asked_at or run["state"] not in FINAL - {"SUCCESS"}:
            return run
        after = run["jobRunId"]
    raise LakeJobFailed(
        f"StartJobRun gave back {MAX_STARTS} earlier runs of these inputs that had ended FAILED or CANCELLED, the "
        f"last {after}: started no new run. Look at them (the application's job runs, the CloudWatch Logs group "
        f"{props['log_group']}), fix the cause, then start a new run with `retail lake build --cloud --new-run <any "
        "text not used before>`")


def wait_for(client: Any, application_id: str, run_id: str, poll_seconds: float,
             timeout_seconds: float) -> dict[str, Any]:
    """GetJobRun every `poll_seconds` until the run is final (SUCCESS, FAILED, CANCELLED); its final `jobRun`.

    TimeoutError when the run is still going after `timeout_seconds` (it keeps running)."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        run: dict[str, Any] = client.get_job_run(applicationId=application_id, jobRunId=run_id)["jobRun"]
        if run["state"] in FINAL:
            return run
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"EMR Serverless job run {run_id} of application {application_id} is still {run['state']} after "
                f"{timeout_seconds:.0f} s; it keeps running: watch it in the EMR Studio console, then run "
                "`pulumi refresh`"
            )
        time.sleep(poll_seconds)


def require_success(run: dict[str, Any], log_group: str) -> None:
    """LakeJobFailed with EMR Serverless's stateDetails unless the run ended SUCCESS."""
    if run["state"] != "SUCCESS":
        raise LakeJobFailed(
            f"EMR Serverless job run {run['jobRunId']} of application {run['applicationId']} ended {run['state']}: "
            f"{run.get('stateDetails') or 'no details given'}. Its driver's and executors' logs are in CloudWatch "
            f"Logs group {log_group}, streams under the run id"
        )


def require_manifest(region: str, uri: str, run_id: str) -> None:
    """LakeJobFailed unless the run's manifest is in the lake (the job writes it last); it says how to start a new run,
    since the same inputs would get this run back."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        clients.s3(region).head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        raise LakeJobFailed(
            f"EMR Serverless job run {run_id} ended SUCCESS but its manifest {uri} cannot be read "
            f"({error.response['Error'].get('Code')}): the job writes it last, so the run did not finish its work. "
            "The same inputs get this run back: start a new one with `retail lake build --cloud --new-run <any text "
            "not used before>`"
        ) from error


def job_run(client: Any, application_id: str, run_id: str) -> dict[str, Any] | None:
    """GetJobRun's `jobRun`; None when the run or its application does not exist (ResourceNotFoundException)."""
    try:
        run: dict[str, Any] = client.get_job_run(applicationId=application_id, jobRunId=run_id)["jobRun"]
    except ClientError as error:
        if error.response["Error"].get("Code") == "ResourceNotFoundException":
            return None
        raise
    return run


class LakeJobProvider(ResourceProvider):
    """Starts, waits for, reads and cancels EMR Serverless job runs of the lake job; holds no client (it is
    pickled)."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        client = clients.emr_serverless(props["region"])
        started = start(client, props)
        run = wait_for(client, props["application_id"], started["jobRunId"], float(props["poll_seconds"]),
                       float(props["timeout_seconds"]))
        require_success(run, props["log_group"])
        require_manifest(props["region"], props["manifest_uri"], run["jobRunId"])
        return CreateResult(run["jobRunId"], {**props, **outputs_of(run)})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        return run_diff(olds, news, OUTPUTS, REPLACE_ON)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Only inputs that need no new run changed: keep the run's outputs, record the new inputs."""
        return run_update(olds, news, OUTPUTS)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        """Cancel the run if it is still going (not again if it is CANCELLING) and wait until it is final; nothing
        when the run or its application is gone. The lake keeps whatever the run wrote."""
        client = clients.emr_serverless(props["region"])
        run = job_run(client, props["application_id"], id_)
        if run is None or run["state"] in FINAL:
            return
        if run["state"] != "CANCELLING":
            client.cancel_job_run(applicationId=props["application_id"], jobRunId=id_)
        wait_for(client, props["application_id"], id_, float(props["poll_seconds"]), float(props["timeout_seconds"]))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """The run's state; an empty id (Pulumi's "gone") when the run or its application no longer exists."""
        run = job_run(clients.emr_serverless(props["region"]), props["application_id"], id_)
        if run is None:
            return ReadResult("", {})
        return ReadResult(id_, {**props, **outputs_of(run)})


class LakeJob(pulumi.dynamic.Resource):
    """One run of ml/spark_lake.py on an EMR Serverless application whose image is Dockerfile.lake's.

    `raw_uri` is the raw input (a CSV file or a folder of them under the lake's raw/ prefix), `lake_root` the lake
    (`s3://<bucket>/<prefix>`), `run_id` the folder the run writes; `input_fingerprint` stands for the raw input's
    content (its listing: keys, sizes, ETags), so new data under the same URI is a new run; `sizes`, the
    retail:lakeEngine section, gives the driver's and executors' cores and memory; `new_run`, any text not used
    before, salts StartJobRun's client token so that a create starts a new run where the same inputs would get an
    earlier one back (one that ended SUCCESS without its manifest, or after `MAX_STARTS` failed ones).
    """

    job_run_id: pulumi.Output[str]
    job_run_arn: pulumi.Output[str]
    state: pulumi.Output[str]
    state_details: pulumi.Output[str]
    execution_seconds: pulumi.Output[int]
    manifest_uri: pulumi.Output[str]
    run_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        region: pulumi.Input[str],
        application_id: pulumi.Input[str],
        role_arn: pulumi.Input[str],
        image_uri: pulumi.Input[str],
        raw_uri: str,
        input_fingerprint: str,
        lake_root: str,
        run_id: str,
        log_group: pulumi.Input[str],
        sizes: LakeEngineConfig,
        execution_timeout_minutes: int = 120,
        tags: dict[str, str] | None = None,
        poll_seconds: float = 30,
        timeout_seconds: float = 3 * 3600,
        new_run: str | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "kind": LAKE_JOB,
            "name_prefix": name,
            "region": region,
            "application_id": application_id,
            "role_arn": role_arn,
            "image_uri": image_uri,
            "entry_point": ENTRY_POINT,
            "arguments": job_arguments(raw_uri, lake_root, run_id, sizes.job_memory_gb),
            "spark_parameters": spark_parameters(sizes),
            "raw_uri": raw_uri,
            "input_fingerprint": input_fingerprint,
            "lake_root": lake_root,
            "run_id": run_id,
            "manifest_uri": manifest_uri(lake_root, run_id),
            "log_group": log_group,
            "execution_timeout_minutes": execution_timeout_minutes,
            "tags": tags or {},
            "poll_seconds": poll_seconds,
            "timeout_seconds": timeout_seconds,
            "new_run": new_run,
            **{key: None for key in OUTPUTS},
        }
        super().__init__(LakeJobProvider(), name, props, opts)
