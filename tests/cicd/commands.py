"""Find the `retail` and `make` commands that the CI definitions run, and resolve them against the real CLI.

A workflow's commands are the `run:` scripts of its steps; a Jenkinsfile's are the
strings given to `sh`. Each script is split into shell words; every word `retail`
starts a command whose sub-command names follow it (so `retail infra ephemeral ...
-- uv run retail smoke ...` yields both commands), and every `make` is followed by
its targets.

`resolve` then parses a `retail` command's words with the CLI's own option parser:
unknown options, an option without its value, stray arguments, a missing required
option and a literal value the option does not accept (`--stack ephemeral` for
`infra up`) are errors. Words holding a shell variable (`"$STACK"`) are values only
the runner knows, so their conversion is not checked.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer.exceptions
import typer.main
import yaml

from cli.main import app

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
JENKINSFILE = ROOT / "Jenkinsfile"
CI_SCRIPTS = sorted((ROOT / ".ci").iterdir())
"""The CI's own scripts: .ci/run (the test entry point) and the clean-ups' helpers."""
PUNCTUATION = re.compile(r"[();|&`]+")
WORD = re.compile(r"[();|&`]+|[^\s();|&`]+")
GROOVY_STRING = r"""'''.*?'''|\"\"\".*?\"\"\"|'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|\$/.*?/\$"""
"""A Groovy string literal: triple-quoted, single- or double-quoted (escapes read), or dollar-slashy (`$/.../$`)."""
GROOVY_TOKEN = re.compile(rf"(?P<string>{GROOVY_STRING})|(?P<comment>//[^\n]*|/\*.*?\*/)|[^'\"$/]+|.", re.S)
GROOVY_SH = re.compile(
    r"sh\s*\(?\s*\[?\s*"
    rf"(?:(?!script\b)\w+\s*:\s*(?:{GROOVY_STRING}|[\w.]+\([^()]*\)|[^'\"\s,()\]]+)\s*,\s*)*"  # arguments before
    rf"(?:script\s*:\s*)?({GROOVY_STRING})", re.S)
"""An `sh` step and its script as written, quotes included: `sh '...'`, `sh(script: '...', ...)`, `sh script:
'...', returnStdout: true`, or the script after other named arguments (`sh(returnStatus: true, script: '...')`)."""
GROOVY_SH_STEP = re.compile(r"(?<![\w$/-])(?:\w+\.)?sh\b(?=\s*[('\"\[$]|[ \t]+[A-Za-z_])")
"""Where an `sh` step starts, in code (`code_of`): the word `sh`, or a method `x.sh` (`steps.sh`, `this.sh`),
followed by a call's parenthesis, a string, a list or an argument (a variable or a named argument)."""


@dataclass(frozen=True)
class Invocation:
    """One command found in a CI definition: the file, the program and the words after it."""

    source: str
    program: str
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.source}: {self.program} {' '.join(self.words)}".strip()


def workflow_scripts(path: Path) -> list[str]:
    """The `run:` scripts of every step of every job of a GitHub Actions workflow."""
    workflow = yaml.safe_load(path.read_text())
    return [step["run"] for job in workflow["jobs"].values() for step in job.get("steps", []) if "run" in step]


def code_of(text: str) -> str:
    """Groovy source with its comments blanked and its strings' contents masked, every position kept: what is left
    is code, where a step can start (an `sh` inside a string or a comment is none)."""
    masked = []
    for token in GROOVY_TOKEN.finditer(text):
        part = token.group()
        if token.lastgroup == "string":
            inner = re.sub(r"[^\n]", "x", part[1:-1])
            if part[0] == '"':  # a GString's `${...}` is code: a step inside one runs
                for expression in re.finditer(r"\$\{[^{}]*\}", part[1:-1]):
                    inner = inner[:expression.start()] + expression.group() + inner[expression.end():]
            part = part[0] + inner + part[-1]
        elif token.lastgroup == "comment":
            part = re.sub(r"[^\n]", " ", part)
        masked.append(part)
    return "".join(masked)


def jenkins_literals(path: Path) -> list[str]:
    """The script of every `sh` step of a Jenkinsfile as written, quotes included.

    ValueError, naming the line, for a step whose script this reader cannot read whole: a variable (`sh cmd`),
    a string built by an operator (`+`, `-`, `*`) or a method (`.concat`), or any other form, so no step escapes the
    checks made on these scripts. Not read: slashy strings (`/.../`), escapes inside dollar-slashy ones, and
    method pointers (`this.&sh`); the Jenkinsfile uses none of them.
    """
    text = path.read_text()
    code = code_of(text)
    literals = []
    for step in GROOVY_SH_STEP.finditer(code):
        start = step.start() + step.group().rindex("sh")
        read = GROOVY_SH.match(text, start)
        line = text.count("\n", 0, start) + 1
        if read is None:
            raise ValueError(f"{path.name}:{line}: an sh step whose script is not a string literal")
        if re.match(r"\s*[-+*/%.]", code[read.end():]):  # an operator or a method: the script is not the literal
            raise ValueError(f"{path.name}:{line}: an sh step whose script is built from its string")
        literals.append(read.group(1))
    return literals


def jenkins_scripts(path: Path) -> list[str]:
    """The strings handed to `sh` in a Jenkinsfile (single, double or triple quoted)."""
    return [literal.strip("'\"") for literal in jenkins_literals(path)]


def shell_words(line: str) -> list[str]:
    """A command line's words, quotes dropped, with `;`, `&&`, `|`, `(`, `)` and backticks as words of their own.

    Dropping quotes keeps a command substitution inside a quoted string, such as
    `echo "retrain=$(uv run retail changed --since "$BEFORE")"`, visible as words.
    """
    return WORD.findall(line.replace('"', " ").replace("'", " "))


def invocations(source: str, script: str) -> list[Invocation]:
    """Every `retail ...` and `make ...` command in a script, with the words up to the end of its command."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        words = shell_words(line)
        for start, word in enumerate(words):
            if word in ("retail", "make"):
                rest = itertools.takewhile(lambda w: not PUNCTUATION.fullmatch(w), words[start + 1:])
                found.append(Invocation(source, word, tuple(rest)))
    return found


def ci_invocations() -> list[Invocation]:
    """Every command of every workflow and of the Jenkinsfile."""
    found = [inv for path in WORKFLOWS for script in workflow_scripts(path) for inv in invocations(path.name, script)]
    if JENKINSFILE.exists():
        found += [inv for script in jenkins_scripts(JENKINSFILE) for inv in invocations(JENKINSFILE.name, script)]
    return found


def resolve(words: tuple[str, ...]) -> tuple[list[str], Any]:
    """The sub-command path of `retail WORDS` and its command; ValueError saying what the CLI would reject."""
    command = typer.main.get_command(app)
    path: list[str] = []
    remaining = list(words)
    while hasattr(command, "commands"):  # a group
        if not remaining or remaining[0].startswith("-"):
            raise ValueError(f"`retail {' '.join(path)}` needs a sub-command")
        name = remaining.pop(0)
        sub = command.commands.get(name)
        if sub is None:
            raise ValueError(f"`retail {' '.join([*path, name])}`: no such command")
        command, path = sub, [*path, name]
    check_arguments(command, path, remaining)
    return path, command


def check_arguments(command: Any, path: list[str], words: list[str]) -> None:
    """ValueError when the command's own parser rejects `words` or a literal value does not convert."""
    where = f"`retail {' '.join(path)}`"
    context = command.context_class(command, info_name=path[-1])
    try:
        values, extra, _ = command.make_parser(context).parse_args(list(words))
    except typer.exceptions.TyperException as error:
        raise ValueError(f"{where}: {error.format_message()}") from None
    if extra:
        raise ValueError(f"{where} takes no argument {extra[0]!r}")
    for param in command.params:
        value = values.get(param.name)
        if value is None:
            if param.required:
                raise ValueError(f"{where} needs {(param.opts or [param.name])[0]}")
            continue
        if _from_the_shell(value):
            continue
        try:
            param.process_value(context, value)
        except typer.exceptions.TyperException as error:
            raise ValueError(f"{where}: {error.format_message()}") from None


def _from_the_shell(value: Any) -> bool:
    """A value holding a shell variable or substitution, known only when the runner expands it."""
    values = value if isinstance(value, (list, tuple)) else [value]
    return any(isinstance(item, str) and "$" in item for item in values)


def make_targets() -> set[str]:
    """Targets defined in the Makefile."""
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+):", text, re.M))
