"""docs/policy.md lists exactly the pack's rules, with their levels per stack (generated, so it cannot drift)."""

from pathlib import Path

from policies.catalog import RULES
from policies.catalogue import BEGIN, END, block

DOC = Path(__file__).resolve().parents[2] / "docs" / "policy.md"


def test_the_documented_catalogue_is_the_generated_one():
    text = DOC.read_text()
    documented = text[text.index(BEGIN) : text.index(END) + len(END)]
    assert documented == block(), "regenerate it: python -m policies.catalogue"


def test_every_rule_has_a_row():
    table = block()
    assert all(f"| `{rule.name}` |" in table for rule in RULES)
