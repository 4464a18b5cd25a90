"""The model card: what was trained, on which data, how well, and whether it may ship."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import markdown


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return lines


def render_markdown(summary: dict[str, Any], leaderboard: list[dict[str, Any]]) -> str:
    metrics = summary["metrics"]
    lineage = summary["lineage"]
    data = summary["data"]
    gate = summary["gate"]
    lines = [
        f"# Model card: basket price sensitivity ({summary['winner']})",
        "",
        "Predicts the price sensitivity of a shopping basket (LA less affluent, MM mid market,",
        "UM up market) from its products, prices, size, store and time. Baskets labelled XX",
        "(unclassified) are kept in the lake but not used for training or evaluation.",
        "",
        "## Evaluation (held-out latest weeks)",
        "",
        f"Accuracy **{metrics['accuracy']:.4f}**, macro-F1 **{metrics['macro_f1']:.4f}** on "
        f"{data['holdout_baskets']} baskets of weeks {data['holdout_weeks'][0]}-{data['holdout_weeks'][1]}; "
        f"trained on {data.get('train_baskets_used', data['train_baskets'])} baskets of weeks "
        f"{data['train_weeks'][0]}-{data['train_weeks'][1]}.",
        *_sample_note(data.get("train_sample")),
        "",
        *_table(
            ["class", "precision", "recall", "F1", "support"],
            [
                [c, f"{v['precision']:.4f}", f"{v['recall']:.4f}", f"{v['f1']:.4f}", v["support"]]
                for c, v in metrics["per_class"].items()
            ],
        ),
        "",
        f"![confusion matrix](confusion_{summary['winner']}.png)",
        "",
        *_tier_section(summary.get("tiers")),
        "## Leaderboard",
        "",
        "Ranked on the last training weeks (validation macro-F1, then accuracy); the holdout columns",
        "only evaluate, so the winner's holdout score is not the best of several draws.",
        "",
        *_table(
            ["rank", "family", "validation macro-F1", "holdout accuracy", "holdout macro-F1", "fit seconds"],
            [
                [i + 1, r["family"], f"{r['validation']['macro_f1']:.4f}", f"{r['metrics']['accuracy']:.4f}",
                 f"{r['metrics']['macro_f1']:.4f}", r["fit_seconds"]]
                for i, r in enumerate(leaderboard)
            ],
        ),
        "",
        f"## Promotion gate: {'PASSED' if gate['passed'] else 'FAILED'}",
        "",
        *_table(
            ["check", "value", "threshold", "result"],
            [[c["name"], f"{c['value']:.4f}", c["threshold"], "pass" if c["passed"] else "FAIL"]
             for c in gate["checks"]],
        ),
        "",
        "## Data lineage",
        "",
        *_table(["item", "value"], [[k, v] for k, v in lineage.items()]),
        "",
        f"{data['unclassified_baskets_excluded']} XX baskets were excluded from training and evaluation.",
        "",
        "## Hyperparameters",
        "",
        *_table(["parameter", "value"], [[k, v] for k, v in summary["params"].items()]),
        "",
        "## Intended use and limits",
        "",
        "- Scores one basket at a time or in batches, from the basket's lines (products with their",
        "  hierarchy, quantity and spend) and its header (size, type, mission, store, time).",
        "- Product-tier evidence is learned from training weeks only; products never seen fall back",
        "  to their class, department, group and division. A large share of unseen products lowers",
        "  accuracy: watch the input-drift metrics of the service.",
        "- The customer segment is a weak signal; the basket, not the customer, is the unit scored.",
    ]
    return "\n".join(lines) + "\n"


def _tier_section(tiers: dict[str, Any] | None) -> list[str]:
    """Where the errors are: baskets whose every product's tier training revealed, and the others."""
    if not tiers:
        return []
    rows = []
    for name, title in (("all_exact", "every product's tier known exactly from training"),
                        ("some_not_exact", "some lines of estimated or unseen tier")):
        group = tiers[name]
        if group["baskets"]:
            rows.append([title, group["baskets"], f"{group['accuracy']:.4f}", f"{group['macro_f1']:.4f}"])
        else:
            rows.append([title, 0, "-", "-"])
    shares = tiers["holdout_line_shares"]
    coverage = tiers["training_coverage"]
    rule = tiers["rule"]
    return [
        "### By what training revealed of the products' tiers",
        "",
        *_table(["holdout baskets", "baskets", "accuracy", "macro-F1"], rows),
        "",
        f"Lines of the LA/MM/UM holdout baskets: {shares['exact']:.1%} of exact tier, {shares['estimated']:.1%} "
        f"estimated, {shares['unseen']:.1%} of products training never saw. Training: {coverage['exact']} of "
        f"{coverage['products']} products bought alone at least once (exact tier), {coverage['estimated']} "
        f"estimated through the label rule (LA above d = {rule['la_above']}, UM below {rule['um_below']}, "
        f"XX above an XX line share of {rule['xx_share']}).",
        "",
    ]


def write_model_card(summary: dict[str, Any], leaderboard: list[dict[str, Any]], folder: Path) -> Path:
    text = render_markdown(summary, leaderboard)
    (folder / "model_card.md").write_text(text)
    body = markdown.markdown(text, extensions=["tables"])
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Model card</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25em .6em}</style>"
        f"</head><body>{body}</body></html>\n"
    )
    path = folder / "model_card.html"
    path.write_text(html)
    return path


def _sample_note(sample: dict[str, Any] | None) -> list[str]:
    """A sentence when training used a sample of the training baskets (ml/channel.py), none otherwise."""
    if not sample or not sample["sampled"]:
        return []
    return ["", f"Those {sample['used']} baskets are a seeded uniform sample of the {sample['available']} baskets "
                f"of the training weeks (seed {sample['seed']}), the most "
                f"RETAIL_MAX_MEMORY_GB={sample['max_memory_gb']:g} holds; the holdout was scored whole."]
