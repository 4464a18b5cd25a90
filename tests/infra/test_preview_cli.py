"""`retail infra preview` lists the whole stack offline."""

from typer.testing import CliRunner

from cli.main import app
from infra.offline import OfflineRun

from .conftest import PROJECT_DIR


def test_preview_prints_every_resource_with_its_type_and_totals(dev: OfflineRun):
    result = CliRunner().invoke(app, ["infra", "preview", "--stack", "dev", "--project-dir", str(PROJECT_DIR)])
    assert result.exit_code == 0, result.output
    for resource in dev.resources:
        assert f"{resource.type}" in result.output and resource.name in result.output
    assert f"Total: {len(dev.resources)} resources" in result.output
