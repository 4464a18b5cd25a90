"""The Pulumi checks of `retail infra doctor`: the CLI, its plugins, the state backend and the secrets provider.

The CLI is found as `retail infra up` finds it (`infra.automation.require_cli`); without
it the CLI check fails with the install instructions and the checks that need it are
unknown. The backend is `PULUMI_BACKEND_URL`, else `backend.url` of Pulumi.yaml, else
whatever `pulumi login` chose (`pulumi whoami --json`); the secrets provider is each stack
file's `secretsprovider` (a salt alone means passphrase), else the backend's default.
A Pulumi Cloud backend is asked `pulumi whoami` (a token that is merely set proves nothing);
of PULUMI_CONFIG_PASSPHRASE(_FILE) only the presence is looked at.
"""

from __future__ import annotations

import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import semver
import yaml

from infra.automation import EPHEMERAL_CONFIG, INSTALL_HINT, PulumiCliMissing, require_cli
from infra.config import SERVICE_DIR
from infra.preflight import AWS_ERRORS, Context, Status, Verdict, error_code, error_text, fail, ok, unknown, warn

COMMAND_TIMEOUT_SECONDS = 60
SELF_MANAGED_SCHEMES = ("s3://", "file://", "azblob://", "gs://")
PASSPHRASE_VARIABLES = ("PULUMI_CONFIG_PASSPHRASE", "PULUMI_CONFIG_PASSPHRASE_FILE")
NEEDS_CLI = "not run: needs the Pulumi CLI (see 'pulumi cli')"


def _cli() -> str | None:
    try:
        return require_cli("retail infra doctor")
    except PulumiCliMissing:
        return None


def _pulumi(ctx: Context, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`pulumi <args>`; a CLI that cannot start or does not finish comes back as a failed run saying so."""
    env = {**ctx.env, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    try:
        return subprocess.run(
            [path, *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS, check=False, env=env
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return subprocess.CompletedProcess([path, *args], 1, "", str(error))


def _version(text: str) -> semver.Version:
    return semver.Version.parse(text.strip().removeprefix("v"))


def cli(ctx: Context) -> Verdict:
    """The CLI is on PATH, new enough for the Automation API and not older than the Python SDK."""
    from pulumi.automation._minimum_version import _MINIMUM_VERSION  # what the Automation API refuses below

    try:
        path = require_cli("retail infra doctor")
    except PulumiCliMissing:
        return fail("the Pulumi CLI is not on PATH", INSTALL_HINT)
    answer = _pulumi(ctx, path, "version")
    if answer.returncode != 0:
        return fail(f"`{path} version` failed: {answer.stderr.strip()}", f"reinstall the CLI: {INSTALL_HINT}")
    found, sdk = _version(answer.stdout), _version(metadata.version("pulumi"))
    if found < _version(str(_MINIMUM_VERSION)):
        return fail(f"CLI {found} is older than the Automation API's minimum {_MINIMUM_VERSION}",
                    f"upgrade: {INSTALL_HINT}")
    if found < sdk:
        return warn(f"CLI {found} ({path}) is older than the Python SDK {sdk}", f"upgrade the CLI to {sdk} or later")
    return ok(f"CLI {found} ({path}); Python SDK {sdk}")


def plugins(ctx: Context) -> Verdict:
    """The resource plugins the stacks use are installed at the SDK packages' versions."""
    path = _cli()
    if path is None:
        return unknown(NEEDS_CLI)
    answer = _pulumi(ctx, path, "plugin", "ls", "--json")
    if answer.returncode != 0:
        return unknown(f"`pulumi plugin ls --json` failed: {answer.stderr.strip()}")
    listed = json.loads(answer.stdout or "[]")
    installed = {(p["name"], p.get("version")) for p in listed if p.get("kind") == "resource"}
    wanted = ctx.require_plan().plugins
    missing = [f"{name} {version}" for name, version in sorted(wanted.items()) if (name, version) not in installed]
    if missing:
        commands = "; ".join(f"`pulumi plugin install resource {m}`" for m in missing)
        return warn(
            f"not installed: {', '.join(missing)} (the first `pulumi up` downloads them, which needs "
            "get.pulumi.com or GitHub)",
            f"install them now: {commands}",
        )
    return ok(", ".join(f"{name} {version}" for name, version in sorted(wanted.items())))


def backend_url(ctx: Context) -> tuple[str, str]:
    """(URL, where it came from) as the CLI chooses it, without the CLI; ("", "") when only `pulumi login` knows."""
    if ctx.env.get("PULUMI_BACKEND_URL"):
        return ctx.env["PULUMI_BACKEND_URL"], "PULUMI_BACKEND_URL"
    project = yaml.safe_load((ctx.project_dir / "Pulumi.yaml").read_text()) or {}
    url = (project.get("backend") or {}).get("url")
    return (str(url), "Pulumi.yaml backend.url") if url else ("", "")


def backend(ctx: Context) -> Verdict:
    url, source = backend_url(ctx)
    if not url:
        path = _cli()
        if path is None:
            return unknown("no backend in PULUMI_BACKEND_URL or Pulumi.yaml; the one `pulumi login` chose can only be "
                           "read with the CLI (see 'pulumi cli')")
        answer = _pulumi(ctx, path, "whoami", "--json")
        if answer.returncode != 0:
            return fail(
                f"not logged in to a Pulumi backend: {answer.stderr.strip()}",
                "`pulumi login` (Pulumi Cloud; CI sets PULUMI_ACCESS_TOKEN) or `pulumi login s3://<state bucket>`, "
                "or set PULUMI_BACKEND_URL",
            )
        url, source = str(json.loads(answer.stdout).get("url") or ""), "pulumi whoami"
    ctx.backend_url = url
    if url.startswith("s3://"):
        return _s3_backend(ctx, url, source)
    if url.startswith("file://"):
        folder = Path(url.removeprefix("file://")).expanduser()
        if folder.is_dir():
            return ok(f"{url} (from {source})")
        return fail(f"{url} (from {source}): {folder} is not a folder", f"create it: mkdir -p {folder}")
    if url.startswith(("https://", "http://")):
        if source == "pulumi whoami":
            return ok(f"Pulumi Cloud {url} (from {source})")
        return _cloud_login(ctx, url, source)
    return unknown(f"{url} (from {source}): only s3://, file:// and Pulumi Cloud backends are checked")


def _cloud_login(ctx: Context, url: str, source: str) -> Verdict:
    """A Pulumi Cloud backend accepts this machine's token: `pulumi whoami` against it (a token that is merely set
    may be expired or for another organization)."""
    token = "PULUMI_ACCESS_TOKEN is set" if ctx.env.get("PULUMI_ACCESS_TOKEN") else "no PULUMI_ACCESS_TOKEN"
    path = _cli()
    if path is None:
        return unknown(f"Pulumi Cloud {url} (from {source}), {token}: whether it accepts the login can only be asked "
                       "with the CLI (see 'pulumi cli')")
    answer = _pulumi(ctx, path, "whoami", "--json")
    if answer.returncode != 0:
        return fail(
            f"Pulumi Cloud {url} (from {source}) does not accept this machine's login ({token}): "
            f"{answer.stderr.strip()}",
            "`pulumi login`, or export a valid PULUMI_ACCESS_TOKEN (CI keeps it as a secret)",
        )
    user = json.loads(answer.stdout or "{}").get("user") or "an unnamed user"
    return ok(f"Pulumi Cloud {url} (from {source}), logged in as {user}")


def _s3_backend(ctx: Context, url: str, source: str) -> Verdict:
    parsed = urlparse(url)
    region = parse_qs(parsed.query).get("region", [ctx.region])[0]
    try:
        ctx.client("s3", region).head_bucket(Bucket=parsed.netloc)
    except AWS_ERRORS as error:
        code = error_code(error)
        if code in {"404", "NoSuchBucket"}:
            return fail(
                f"{url} (from {source}): bucket {parsed.netloc} does not exist",
                f"create it, versioned: `aws s3api create-bucket --bucket {parsed.netloc} --region {region} "
                f"--create-bucket-configuration LocationConstraint={region}` then "
                f"`aws s3api put-bucket-versioning --bucket {parsed.netloc} --versioning-configuration Status=Enabled`",
            )
        if code in {"403", "AccessDenied"}:
            return fail(
                f"{url} (from {source}): no access to bucket {parsed.netloc}",
                f"allow the principal s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject on {parsed.netloc}",
            )
        return unknown(f"{url} (from {source}): HeadBucket said {error_text(error)}")
    return ok(f"{url} (from {source})")


def secrets_provider(ctx: Context) -> Verdict:
    """Each stack's secrets provider can be used here: a passphrase in the env, a usable KMS key, Pulumi Cloud."""
    verdicts = [(stack, _provider_verdict(ctx, provider)) for stack, provider in _providers(ctx)]
    detail = "; ".join(f"{stack}: {verdict.detail}" for stack, verdict in verdicts)
    fixes = sorted({verdict.fix for _, verdict in verdicts if verdict.fix})
    for status in (Status.FAIL, Status.UNKNOWN, Status.WARN):
        if any(verdict.status == status for _, verdict in verdicts):
            return Verdict(status, detail, "; ".join(fixes))
    return ok(detail)


def _providers(ctx: Context) -> list[tuple[str, str]]:
    """(stack, declared provider or "" for the default) for the stack files, and the stacks made by inline programs."""
    stacks = []
    for label, folder in (("platform", ctx.project_dir), ("service", ctx.project_dir / SERVICE_DIR)):
        path = folder / f"Pulumi.{ctx.stack}.yaml"
        settings = (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}
        declared = settings.get("secretsprovider") or ("passphrase" if settings.get("encryptionsalt") else "")
        if ctx.stack == EPHEMERAL_CONFIG:
            declared = ""  # ephemeral-<name> stacks are new each time, with the default provider
        stacks.append((f"{label} {ctx.stack if ctx.stack != EPHEMERAL_CONFIG else 'ephemeral-<name>'}", declared))
    stacks.append((f"training train-{ctx.stack}", ""))
    return stacks


def _provider_verdict(ctx: Context, declared: str) -> Verdict:
    provider = declared or _default_provider(ctx.backend_url)
    if not provider:
        return unknown("the default provider depends on the backend, which is not known (see 'pulumi backend')")
    label = provider if declared else f"{provider} (the backend's default)"
    if provider == "service":
        if ctx.backend_url.startswith(SELF_MANAGED_SCHEMES):
            return fail(f"{label} needs Pulumi Cloud, but the backend is {ctx.backend_url}",
                        "use passphrase or awskms:// secrets with a self-managed backend")
        return ok(label)
    if provider == "passphrase":
        if any(ctx.env.get(name) for name in PASSPHRASE_VARIABLES):
            return ok(f"{label}, set in the environment")
        return fail(
            f"{label}: neither PULUMI_CONFIG_PASSPHRASE nor PULUMI_CONFIG_PASSPHRASE_FILE is set",
            "export PULUMI_CONFIG_PASSPHRASE (the same one for every run; CI keeps it as a secret), or use a KMS key: "
            "`pulumi stack change-secrets-provider awskms://alias/<key>?region=<region>`",
        )
    if provider.startswith("awskms://"):
        return _kms_key(ctx, provider)
    return unknown(f"{label}: only passphrase, awskms:// and Pulumi Cloud providers are checked")


def _default_provider(url: str) -> str:
    if not url:
        return ""
    return "passphrase" if url.startswith(SELF_MANAGED_SCHEMES) else "service"


def _kms_key(ctx: Context, provider: str) -> Verdict:
    """awskms://<key id, alias/… or ///arn>?region=<r>: the key exists and is enabled."""
    key, _, query = provider.removeprefix("awskms://").partition("?")
    key = key.lstrip("/")
    region = key.split(":")[3] if key.startswith("arn:") else parse_qs(query).get("region", [ctx.region])[0]
    try:
        metadata_: dict[str, Any] = ctx.client("kms", region).describe_key(KeyId=key)["KeyMetadata"]
    except AWS_ERRORS as error:
        return fail(f"{provider}: {error_text(error)}",
                    f"create the key or alias {key} in {region}, or allow the principal kms:DescribeKey, kms:Encrypt "
                    "and kms:Decrypt on it")
    state = metadata_.get("KeyState")
    if state != "Enabled":
        return fail(f"{provider}: the key is {state}", f"enable {key} (kms:EnableKey), or use another")
    return ok(f"{provider} ({state})")
