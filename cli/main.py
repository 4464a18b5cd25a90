"""Entry point of the `retail` command."""

import typer

app = typer.Typer(
    name="retail",
    help="retail-mlops: basket price-sensitivity prediction, from transactions to a served model.",
    no_args_is_help=True,
    add_completion=False,
)


if __name__ == "__main__":
    app()
