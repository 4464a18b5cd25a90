"""The Pulumi Automation API behind `retail infra up|preview --live|destroy|ephemeral` and `retail train --cloud`.

Every operation goes through a `StackRunner`, a small seam over `pulumi.automation`
for one Pulumi project: `AutomationRunner` drives the real Pulumi CLI; tests use a
recording runner and assert the exact sequence of operations. The Pulumi CLI is found
with `shutil.which("pulumi")`; without it `require_cli` stops with how to install it.

Two projects make a deployment: the platform (repository root) and the service
(`service/`), joined by a StackReference. `deploy` brings up the platform, resolves the
release (image digest, approved model package) against it, then brings up the service
with that release in a temporary config file, so nothing in the repository changes.
`teardown` destroys the service before the platform (the load balancer controller
removes the ALB it made while it still runs), retries a failed destroy after emptying
what AWS refuses to delete while it holds something (the stack's buckets, its model
package group), and removes a stack only once it is empty. Given `TeardownChecks`
(infra/teardown.py's `ProvenTeardown`), `destroy` and `ephemeral` remove the service's
load-balanced Kubernetes objects before destroying and scan the account for leftovers
after, whether the destroy succeeded or not. `ephemeral` runs both projects as inline
programs in temporary work directories.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from infra.config import NAMESPACE, PLATFORM_PROJECT, SERVICE_DIR, SERVICE_PROJECT, read_stack_file

POLICY_PACK_DIR = Path(__file__).resolve().parent.parent / "policies"
INSTALL_HINT = "install it with `curl -fsSL https://get.pulumi.com | sh` (or see https://www.pulumi.com/docs/install/)"
EPHEMERAL_CONFIG = "ephemeral"
"""`Pulumi.ephemeral.yaml` (both projects): the config every `ephemeral-<name>` stack is built from."""
DESTROY_ATTEMPTS = 3
API_KEY_ENV = "RETAIL_API_KEY"
API_KEY_OUTPUT = "deployApiKey"
TRAINING_PROJECT = "retail-mlops-training"
"""The project `retail train --cloud` runs its inline program in (infra/providers/program.py)."""
LAKE_PROJECT = "retail-mlops-lake"
"""The project `retail lake build --cloud` runs its inline program in (infra/providers/lake_program.py)."""


class PulumiCliMissing(RuntimeError):
    """The Pulumi CLI is not on PATH; the message says which command needed it and how to install it."""


class TeardownFailed(RuntimeError):
    """A stack could not be destroyed after every attempt; it is kept so a later run can finish the job."""


def require_cli(command: str) -> str:
    """The path of the `pulumi` executable, or PulumiCliMissing naming `command`."""
    path = shutil.which("pulumi")
    if path is None:
        raise PulumiCliMissing(f"The Pulumi CLI is required for `{command}`: {INSTALL_HINT}")
    return path


class StackRunner(Protocol):
    """The Pulumi operations this module needs, for one project, one stack at a time."""

    def select_stack(self, stack: str) -> None: ...
    def create_stack(self, stack: str) -> None: ...
    def set_config(self, stack: str, values: Mapping[str, str], secret: Mapping[str, str]) -> None: ...
    def preview(self, stack: str, policy_config: Path | None, config_file: Path | None = None) -> None: ...
    def up(self, stack: str, policy_config: Path | None, config_file: Path | None = None) -> dict[str, Any]: ...
    def outputs(self, stack: str) -> dict[str, Any]: ...
    def secret_output_names(self, stack: str) -> set[str]: ...
    def refresh(self, stack: str) -> None: ...
    def destroy(self, stack: str, config_file: Path | None = None) -> None: ...
    def remove_stack(self, stack: str, force: bool = False) -> None: ...
    def run_command(self, argv: Sequence[str], env: Mapping[str, str]) -> int: ...


@dataclass
class AutomationRunner:
    """`StackRunner` over `pulumi.automation`: a local project (`work_dir`) or an inline `program`."""

    work_dir: Path
    project_name: str | None = None
    program: Callable[[], None] | None = None
    echo: Callable[[str], None] = print

    def _stack(self, stack: str, create: bool = False):
        from pulumi import automation as auto

        if self.program is None:
            factory = auto.create_or_select_stack if create else auto.select_stack
            return factory(stack, work_dir=str(self.work_dir))
        factory = auto.create_or_select_stack if create else auto.select_stack
        # The engine starts dynamic providers with the project's Python: this one, whose environment has
        # `infra` (a generated project would otherwise take whichever `python3` is first on PATH).
        in_venv = sys.prefix != sys.base_prefix
        settings = auto.ProjectSettings(
            name=self.project_name,
            runtime=auto.ProjectRuntimeInfo(name="python", options={"virtualenv": sys.prefix} if in_venv else None),
        )
        return factory(
            stack,
            project_name=self.project_name,
            program=self.program,
            opts=auto.LocalWorkspaceOptions(work_dir=str(self.work_dir), project_settings=settings),
        )

    @staticmethod
    def _options(policy_config: Path | None, config_file: Path | None) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if policy_config is not None:
            options |= {"policy_packs": [str(POLICY_PACK_DIR)], "policy_pack_configs": [str(policy_config)]}
        if config_file is not None:
            options["config_file"] = str(config_file)
        return options

    def select_stack(self, stack: str) -> None:
        self._stack(stack)

    def create_stack(self, stack: str) -> None:
        self._stack(stack, create=True)

    def set_config(self, stack: str, values: Mapping[str, str], secret: Mapping[str, str]) -> None:
        from pulumi import automation as auto

        config = {k: auto.ConfigValue(v) for k, v in values.items()}
        config |= {k: auto.ConfigValue(v, secret=True) for k, v in secret.items()}
        self._stack(stack).set_all_config(config)

    def preview(self, stack: str, policy_config: Path | None, config_file: Path | None = None) -> None:
        self._stack(stack).preview(on_output=self.echo, **self._options(policy_config, config_file))

    def up(self, stack: str, policy_config: Path | None, config_file: Path | None = None) -> dict[str, Any]:
        result = self._stack(stack).up(on_output=self.echo, **self._options(policy_config, config_file))
        return {key: output.value for key, output in result.outputs.items()}

    def outputs(self, stack: str) -> dict[str, Any]:
        return {key: output.value for key, output in self._stack(stack).outputs().items()}

    def secret_output_names(self, stack: str) -> set[str]:
        return {key for key, output in self._stack(stack).outputs().items() if output.secret}

    def refresh(self, stack: str) -> None:
        self._stack(stack).refresh(on_output=self.echo)

    def destroy(self, stack: str, config_file: Path | None = None) -> None:
        self._stack(stack).destroy(on_output=self.echo, **self._options(None, config_file))

    def remove_stack(self, stack: str, force: bool = False) -> None:
        self._stack(stack).workspace.remove_stack(stack, force=force)

    def run_command(self, argv: Sequence[str], env: Mapping[str, str]) -> int:
        return subprocess.run(list(argv), env={**os.environ, **env}, check=False).returncode


@dataclass(frozen=True)
class Runners:
    """One runner per project of a deployment."""

    platform: StackRunner
    service: StackRunner
    training: StackRunner | None = None
    """Project retail-mlops-training (stack `train-<stack>`, `retail train --cloud`), when a destroy should
    remove it: its security group sits in the platform's VPC, which cannot be deleted while it is there."""
    lake: StackRunner | None = None
    """Project retail-mlops-lake (stack `lake-<stack>`, `retail lake build --cloud`), when a destroy should remove
    it: its EMR Serverless application uses the platform's subnets and the lake engine's security group."""


@dataclass(frozen=True)
class Release:
    """What the service stack deploys: the image digest CI pushed and the approved model package."""

    image: str
    model_package_arn: str

    def config(self) -> dict[str, str]:
        return {f"{NAMESPACE}:image": self.image, f"{NAMESPACE}:modelPackageArn": self.model_package_arn}


ReleaseResolver = Callable[[Mapping[str, Any]], Release]
"""Given the platform stack's outputs, the release to deploy (may build and push the image, register a model)."""


def policy_config_for(stack: str) -> Path:
    """The enforcement levels a stack's deploys run the pack with (ephemeral's for ephemeral-*, dev's otherwise)."""
    name = EPHEMERAL_CONFIG if stack.startswith(f"{EPHEMERAL_CONFIG}-") else stack
    path = POLICY_PACK_DIR / "config" / f"{name}.json"
    return path if path.is_file() else POLICY_PACK_DIR / "config" / "dev.json"


@contextlib.contextmanager
def service_config_file(service_dir: Path, stack: str, release: Release | None) -> Iterator[Path | None]:
    """A temporary copy of `service/Pulumi.<stack>.yaml` with the release added; None when there is no release.

    Passed to `pulumi up --config-file`, so the release never lands in the repository's
    stack file. Encrypted values and the stack's secrets-provider settings are copied as
    they are, so they still decrypt.
    """
    if release is None:
        yield None
        return
    source = service_dir / f"Pulumi.{stack}.yaml"
    settings = yaml.safe_load(source.read_text()) if source.is_file() else {}
    settings = settings or {}
    settings["config"] = {**(settings.get("config") or {}), **release.config()}
    with tempfile.TemporaryDirectory(prefix="retail-service-config-") as scratch:
        path = Path(scratch) / f"Pulumi.{stack}.yaml"
        path.write_text(yaml.safe_dump(settings, sort_keys=False))
        yield path


def preview(runners: Runners, stack: str, project_dir: Path, release: Release | None) -> None:
    """`pulumi preview` of the platform, then of the service when a release to preview is known."""
    runners.platform.select_stack(stack)
    runners.platform.preview(stack, policy_config_for(stack))
    if release is None:
        return
    runners.service.select_stack(stack)
    with service_config_file(project_dir / SERVICE_DIR, stack, release) as config_file:
        runners.service.preview(stack, policy_config_for(stack), config_file)


def deploy(
    runners: Runners, stack: str, project_dir: Path, resolve_release: ReleaseResolver
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Platform up, release resolved against it, service up with that release: both stacks' outputs.

    Each `up` follows a `preview` with the policy pack (`guarded_up`).
    """
    runners.platform.create_stack(stack)
    platform = guarded_up(runners.platform, stack)
    release = resolve_release(platform)
    runners.service.create_stack(stack)
    with service_config_file(project_dir / SERVICE_DIR, stack, release) as config_file:
        service = guarded_up(runners.service, stack, config_file)
    return platform, service


def guarded_up(runner: StackRunner, stack: str, config_file: Path | None = None) -> dict[str, Any]:
    """`preview` with the policy pack, then `up`: a mandatory violation of a stack rule stops the deploy.

    The Automation API's `up` runs with --skip-preview, and the pack's stack rules
    (AnalyzeStack) run only after its steps, so under `up` alone they report once the
    resources exist; resource rules run before each step either way. The preview raises
    when a mandatory rule fails, before anything changes.
    """
    policy = policy_config_for(stack)
    runner.preview(stack, policy, config_file)
    return runner.up(stack, policy, config_file)


def deploy_service(
    runners: Runners, stack: str, project_dir: Path, resolve_release: ReleaseResolver
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The service alone (a new release, a rollback), on the platform stack as it is."""
    runners.platform.select_stack(stack)
    platform = runners.platform.outputs(stack)
    release = resolve_release(platform)
    runners.service.select_stack(stack)
    with service_config_file(project_dir / SERVICE_DIR, stack, release) as config_file:
        service = guarded_up(runners.service, stack, config_file)
    return platform, service


def current_release(runner: StackRunner, stack: str) -> Release | None:
    """The release the service stack runs now (its outputs), or None if it has none yet."""
    try:
        runner.select_stack(stack)
        outputs = runner.outputs(stack)
    except Exception:  # noqa: BLE001 (no such stack yet: the Automation API raises its own error types)
        return None
    if not outputs.get("image") or not outputs.get("modelPackageArn"):
        return None
    return Release(outputs["image"], outputs["modelPackageArn"])


EmptyStack = Callable[[Mapping[str, Any]], None]
"""Given a platform stack's outputs, empties what a destroy cannot delete while it holds something."""


class TeardownChecks(Protocol):
    """What runs around the destroy of a deployment (both projects of one stack name)."""

    def before_destroy(self, stack: str, platform: Mapping[str, Any], service: Mapping[str, Any]) -> None:
        """Given both stacks' outputs; whatever happens here (an error is printed), the destroy goes on."""

    def after_destroy(self, stack: str, platform: Mapping[str, Any]) -> None:
        """Given the platform's outputs from before the destroy; runs even when the destroy failed."""


def teardown(
    runner: StackRunner,
    stack: str,
    *,
    outputs: Mapping[str, Any] | None = None,
    empty: EmptyStack | None = None,
    echo: Callable[[str], None] = print,
    remove: bool = True,
) -> None:
    """Destroy `stack`, retrying after `empty(outputs)` and a refresh; then remove it once it is empty.

    TeardownFailed if every attempt fails: the stack is then kept (with its state) so
    `pulumi destroy` can finish later; removing it would orphan whatever is left.
    """
    for attempt in range(1, DESTROY_ATTEMPTS + 1):
        try:
            runner.destroy(stack)
            break
        except Exception as error:  # noqa: BLE001 (the Automation API's errors carry the CLI's stderr)
            echo(f"destroy of {stack} failed (attempt {attempt}/{DESTROY_ATTEMPTS}): {_first_line(error)}")
            if attempt == DESTROY_ATTEMPTS:
                raise TeardownFailed(
                    f"{stack} could not be destroyed after {DESTROY_ATTEMPTS} attempts and is kept with its state; "
                    f"finish with `pulumi destroy --stack {stack}` once the cause is fixed: {_first_line(error)}"
                ) from error
            if outputs and empty is not None:
                empty(outputs)
            runner.refresh(stack)
    if remove:
        runner.remove_stack(stack, force=True)


def destroy(
    runners: Runners,
    stack: str,
    *,
    empty: EmptyStack | None = None,
    checks: TeardownChecks | None = None,
    echo=print,
) -> None:
    """Service first (its Ingress goes while the controller can still delete the ALB), then the platform;
    with `checks`, its `before_destroy` first and its `after_destroy` last."""
    runners.service.select_stack(stack)
    service_outputs = _outputs(runners.service, stack) if checks else {}
    runners.platform.select_stack(stack)
    platform_outputs = _outputs(runners.platform, stack)
    if checks:
        _before_destroy(checks, stack, platform_outputs, service_outputs, echo)
    try:
        _destroy_training(runners, stack, echo)
        _destroy_lake(runners, stack, echo)
        teardown(runners.service, stack, echo=echo, remove=False)
        teardown(runners.platform, stack, outputs=platform_outputs, empty=empty, echo=echo, remove=False)
    finally:
        if checks:
            checks.after_destroy(stack, platform_outputs)


def training_stack_name(stack: str) -> str:
    """The stack `retail train --cloud` runs in for platform stack `stack` (cli/train.py)."""
    return f"train-{stack}"


def _destroy_training(runners: Runners, stack: str, echo: Callable[[str], None]) -> None:
    """Destroy `train-<stack>` when it exists (its ModelVersion's delete leaves the registry as it is)."""
    _destroy_if_there(runners.training, training_stack_name(stack), "training", echo)


def _destroy_lake(runners: Runners, stack: str, echo: Callable[[str], None]) -> None:
    """Destroy `lake-<stack>` when it exists (its LakeJob's delete leaves the lake as it is)."""
    _destroy_if_there(runners.lake, f"lake-{stack}", "lake", echo)


def _destroy_if_there(runner: StackRunner | None, name: str, what: str, echo: Callable[[str], None]) -> None:
    if runner is None:
        return
    try:
        runner.select_stack(name)
    except Exception:  # noqa: BLE001 (no such stack: nothing of this kind ran in the cloud for this platform)
        echo(f"no {what} stack {name} to destroy")
        return
    teardown(runner, name, echo=echo)


def _before_destroy(
    checks: TeardownChecks, stack: str, platform: Mapping[str, Any], service: Mapping[str, Any], echo
) -> None:
    try:
        checks.before_destroy(stack, platform, service)
    except Exception as error:  # noqa: BLE001 (nothing before a destroy may stop it)
        echo(f"pre-destroy checks of {stack} failed ({type(error).__name__}: {error}); destroying anyway")


def _outputs(runner: StackRunner, stack: str) -> dict[str, Any]:
    try:
        return runner.outputs(stack)
    except Exception:  # noqa: BLE001 (a stack that never came up has no outputs)
        return {}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__


def command_env(outputs: Mapping[str, Any], secret_names: set[str]) -> dict[str, str]:
    """Stack outputs for a command: `PULUMI_OUTPUT_<NAME>` and all in `PULUMI_OUTPUTS_JSON`, secrets left out.

    The one secret a command needs, the service's deploy API key, goes to `RETAIL_API_KEY`
    (read it with `retail smoke --api-key-env RETAIL_API_KEY`); it is never printed.
    """
    public = {key: value for key, value in outputs.items() if key not in secret_names and key != API_KEY_OUTPUT}
    env = {"PULUMI_OUTPUTS_JSON": json.dumps(public, sort_keys=True, default=str)}
    for key, value in public.items():
        env[f"PULUMI_OUTPUT_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value, default=str)
    if outputs.get(API_KEY_OUTPUT):
        env[API_KEY_ENV] = str(outputs[API_KEY_OUTPUT])
    return env


EPHEMERAL_NAME_LENGTH = 10
"""Longest name part: names built from the stack name stay within AWS's limits (IAM roles 64, S3 buckets 63)."""


def ephemeral_stack_name(name: str) -> str:
    """`ephemeral-<name>`, lower-case, with anything but letters, digits and `-` replaced; a long name is
    shortened and given a hash of the whole, so two long branch names do not collide."""
    cleaned = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-")
    if not cleaned:
        raise ValueError(f"--name {name!r} has no letters or digits; use e.g. the branch name")
    if len(cleaned) > EPHEMERAL_NAME_LENGTH:
        digest = hashlib.sha256(cleaned.encode()).hexdigest()[:4]
        cleaned = f"{cleaned[: EPHEMERAL_NAME_LENGTH - 5].rstrip('-')}-{digest}"
    return f"{EPHEMERAL_CONFIG}-{cleaned}"


def ephemeral_config(project_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The platform's and the service's config for an ephemeral stack (their `Pulumi.ephemeral.yaml`)."""
    platform = read_stack_file(project_dir, EPHEMERAL_CONFIG)
    service = read_stack_file(project_dir / SERVICE_DIR, EPHEMERAL_CONFIG)
    for stack_file in (platform, service):
        if stack_file.secret_keys:
            raise ValueError(f"{stack_file.project}: Pulumi.ephemeral.yaml must hold no encrypted values "
                             f"(found {', '.join(stack_file.secret_keys)}): an ephemeral stack cannot decrypt them")
    return platform.config, service.config


def ephemeral(
    runners: Runners,
    name: str,
    command: Sequence[str],
    project_dir: Path,
    resolve_release: ReleaseResolver,
    *,
    empty: EmptyStack | None = None,
    checks: TeardownChecks | None = None,
    echo: Callable[[str], None] = print,
) -> int:
    """New platform and service stacks from `Pulumi.ephemeral.yaml`, up, run `command`; always tear both down.

    The command sees both stacks' non-secret outputs (`command_env`) and the deploy API
    key in RETAIL_API_KEY; its exit code is returned. Both stacks are destroyed and
    removed whatever happened (a failed up, a failed command, Ctrl-C); a teardown that
    fails raises TeardownFailed after trying everything. `checks` run around the
    teardown with the outputs the ups returned (empty for a stack that never came up).
    """
    if not command:
        raise ValueError("give the command to run after `--`, e.g. retail infra ephemeral --name pr-42 -- pytest")
    stack = ephemeral_stack_name(name)
    platform_config, service_config = ephemeral_config(project_dir)
    platform_outputs: dict[str, Any] = {}
    service_outputs: dict[str, Any] = {}
    created: set[str] = set()
    try:
        runners.platform.create_stack(stack)
        created.add("platform")
        runners.platform.set_config(stack, platform_config, {})
        platform_outputs = guarded_up(runners.platform, stack)
        release = resolve_release(platform_outputs)
        runners.service.create_stack(stack)
        created.add("service")
        runners.service.set_config(stack, {**service_config, **release.config()}, {})
        service_outputs = guarded_up(runners.service, stack)
        secret = runners.service.secret_output_names(stack) | runners.platform.secret_output_names(stack)
        return runners.service.run_command(command, command_env({**platform_outputs, **service_outputs}, secret))
    finally:
        # The platform goes only once the service is gone: destroying the cluster under a service whose
        # Ingress still exists would orphan the ALB the controller made, and leave a service stack that
        # can never be destroyed. A failed service teardown keeps both stacks for a later `destroy`.
        if checks and created:
            _before_destroy(checks, stack, platform_outputs, service_outputs, echo)
        try:
            if "service" in created:
                teardown(runners.service, stack, echo=echo)
            if "platform" in created:
                teardown(runners.platform, stack, outputs=platform_outputs, empty=empty, echo=echo)
        finally:
            if checks and created:
                checks.after_destroy(stack, platform_outputs)


def inline_runners(work_root: Path, echo: Callable[[str], None] = print) -> Runners:
    """Runners for both projects as inline programs, each in its own folder under `work_root` (not the repository)."""
    for project in ("platform", "service"):
        (work_root / project).mkdir(parents=True, exist_ok=True)
    return Runners(
        platform=AutomationRunner(
            work_root / "platform", project_name=PLATFORM_PROJECT, program=platform_program, echo=echo
        ),
        service=AutomationRunner(
            work_root / "service", project_name=SERVICE_PROJECT, program=service_program, echo=echo
        ),
    )


@contextlib.contextmanager
def project_runners(project_dir: Path, echo: Callable[[str], None] = print) -> Iterator[Runners]:
    """Runners for the repository's two project folders (`pulumi up` there would do the same), and for the training
    and lake projects in work folders of their own, which are removed when the block ends."""
    with (
        tempfile.TemporaryDirectory(prefix="retail-training-") as training_dir,
        tempfile.TemporaryDirectory(prefix="retail-lake-") as lake_dir,
    ):
        yield Runners(
            platform=AutomationRunner(project_dir, echo=echo),
            service=AutomationRunner(project_dir / SERVICE_DIR, echo=echo),
            # Like `retail train --cloud`, an inline program in a work dir outside the checkout; a destroy runs
            # no program, so an empty one stands in for the training program (it needs the platform's outputs).
            training=AutomationRunner(
                Path(training_dir), project_name=TRAINING_PROJECT, program=lambda: None, echo=echo
            ),
            lake=AutomationRunner(Path(lake_dir), project_name=LAKE_PROJECT, program=lambda: None, echo=echo),
        )


def platform_program() -> None:
    """The platform's `__main__.py`, as an inline program."""
    import pulumi

    from infra.config import load_platform_config
    from infra.platform import build_platform

    for key, value in build_platform(load_platform_config()).outputs().items():
        pulumi.export(key, value)


def service_program() -> None:
    """The service's `__main__.py`, as an inline program."""
    import pulumi

    from infra.config import load_service_config
    from infra.service import build_service

    for key, value in build_service(load_service_config()).outputs().items():
        pulumi.export(key, value)


@dataclass
class StackEmptier:
    """Empties a platform stack so `pulumi destroy` can delete it: every bucket's object versions and
    delete markers (bypassing GOVERNANCE retention) and every version in its model package group."""

    region: str
    deleted: dict[str, int] = field(default_factory=dict)
    """Per bucket or group, how many object versions or model versions were deleted."""

    def __call__(self, outputs: Mapping[str, Any]) -> None:
        import boto3

        for bucket in sorted((outputs.get("lakeBuckets") or {}).values()):
            self._empty_bucket(boto3.client("s3", region_name=self.region), bucket)
        if outputs.get("modelPackageGroupName"):
            self._empty_group(boto3.client("sagemaker", region_name=self.region), outputs["modelPackageGroupName"])

    def _empty_bucket(self, s3: Any, bucket: str) -> None:
        try:
            pages = list(s3.get_paginator("list_object_versions").paginate(Bucket=bucket))
        except s3.exceptions.NoSuchBucket:
            return
        versions = [v for page in pages for v in (*page.get("Versions", []), *page.get("DeleteMarkers", []))]
        for start in range(0, len(versions), 1000):
            batch = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions[start : start + 1000]]
            answer = s3.delete_objects(
                Bucket=bucket, Delete={"Objects": batch, "Quiet": True}, BypassGovernanceRetention=True
            )
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise RuntimeError(f"could not empty s3://{bucket}: {len(answer['Errors'])} object version(s) "
                                   f"refused, e.g. {first.get('Key')}: {first.get('Code')} {first.get('Message')}")
        self.deleted[bucket] = self.deleted.get(bucket, 0) + len(versions)

    def _empty_group(self, sagemaker: Any, group: str) -> None:
        paginator = sagemaker.get_paginator("list_model_packages")
        try:
            pages = paginator.paginate(ModelPackageGroupName=group, ModelPackageType="Versioned")
            arns = [p["ModelPackageArn"] for page in pages for p in page["ModelPackageSummaryList"]]
        except sagemaker.exceptions.ClientError:
            return
        for arn in arns:
            sagemaker.delete_model_package(ModelPackageName=arn)
        self.deleted[group] = self.deleted.get(group, 0) + len(arns)
