"""Entry point of the `retail` command."""

import typer

from cli import infra as infra_cli

app = typer.Typer(
    name="retail",
    help="retail-mlops: basket price-sensitivity prediction, from transactions to a served model.",
    no_args_is_help=True,
    add_completion=False,
)

app.add_typer(infra_cli.app, name="infra", help="AWS platform (Pulumi): offline stack preview.")


if __name__ == "__main__":
    app()
