"""`retail` starts without loading the Pulumi side or the model libraries: each command loads what it needs.

Importing them took most of a `retail --help` (skops' trusted-type scan imports all of scikit-learn,
pulumi_aws thousands of modules): 20 s and more on a busy 2-core machine, for any command. Defaults that
live in the libraries (the synthetic file's size, the scoring chunk) are resolved when a command runs.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("pulumi", "pulumi_aws", "pulumi_eks", "pulumi_kubernetes", "pulumi_policy", "sklearn", "skops", "mlflow",
         "xgboost", "boto3", "botocore", "fastapi", "uvicorn", "numpy", "polars", "pyarrow", "pandas", "scipy",
         "pydantic", "pydantic_settings")
"""Nothing a command needs only when it runs: `retail --help` pays for typer and rich alone."""


def test_the_cli_loads_none_of_the_heavy_libraries_until_a_command_runs():
    probe = "import json, sys, cli.main; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                       check=True).stdout)
    assert sorted(set(loaded) & set(HEAVY)) == []


def test_the_training_command_offers_the_training_program_s_default_families():
    from cli.train import DEFAULT_FAMILIES
    from infra.providers.program import DEFAULT_FAMILIES as PROGRAM_DEFAULT

    assert DEFAULT_FAMILIES == PROGRAM_DEFAULT


def test_the_retail_command_runs_with_a_larger_young_generation_and_freezes_at_exit():
    """What keeps a short command from spending a second in the collector (bench/cli_startup.py)."""
    import tomllib
    from pathlib import Path

    from cli.main import YOUNG_GENERATION_THRESHOLD

    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["retail"] == "cli.main:main"
    # atexit runs handlers last-registered first: the probe, registered before main(), runs after main's freeze.
    probe = ("import atexit, gc, sys\n"
             "atexit.register(lambda: print(gc.get_threshold()[0], gc.get_freeze_count() > 0, file=sys.stderr))\n"
             "sys.argv = ['retail', '--help']\nfrom cli.main import main\nmain()")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr.split() == [str(YOUNG_GENERATION_THRESHOLD), "True"]
