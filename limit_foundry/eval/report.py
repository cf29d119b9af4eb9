"""Human-readable Gauntlet reports: a markdown table in the paper's layout and a grouped bar chart.

Rows are models; columns are the five categories and the average (LIMIT's Gauntlet figure). A cell
of an incomplete category carries a `*` and a `partial k/n` note, and the benchmarks behind it are
listed under the table, so a partial score is never mistaken for a complete one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from limit_foundry.io import atomic_write_bytes, atomic_write_text, figure_png


def _title(name: str) -> str:
    return name.replace("_", " ").title()


def _cell(score: float | None, complete: bool, note: str) -> str:
    text = "n/a" if score is None else f"{score:.3f}"
    return text if complete else f"{text}* ({note})"


def _columns(results: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Categories and averages in the Gauntlet config's order (a results.json read back has sorted keys)."""
    gauntlet, first = results["gauntlet"], results["models"][0]
    categories = gauntlet.get("categories") or list(first["categories"])  # results without the order
    return categories, gauntlet.get("averages") or list(first["averages"])


def _reason(missing: dict[str, Any]) -> str:
    if "found_at_shots" in missing:
        found = ", ".join(f"{n}-shot" for n in missing["found_at_shots"])
        return f"metrics at {found}, scored at {missing['num_fewshot']}-shot"
    return missing["reason"].replace("_", " ")


def markdown_table(results: dict[str, Any]) -> str:
    """The paper-layout table plus the missing benchmarks and the per-benchmark detail."""
    categories, averages = _columns(results)
    header = ["Model", *(_title(c) for c in categories), *(_title(a) for a in averages)]
    lines = [
        f"# Eval Gauntlet {results['gauntlet']['version']}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for model in results["models"]:
        cells = [model["model_id"]]
        for c in categories:
            cat = model["categories"][c]
            cells.append(
                _cell(
                    cat["score"],
                    cat["complete"],
                    f"partial {cat['benchmarks_scored']}/{cat['benchmarks_total']}",
                )
            )
        for a in averages:
            avg = model["averages"][a]
            cells.append(_cell(avg["score"], avg["complete"], "partial"))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Scores: (accuracy - random baseline) / (1 - random baseline), averaged per category "
        "(the Eval Gauntlet's scoring, as in LIMIT).",
    ]
    missing = [
        (m["model_id"], c, x)
        for m in results["models"]
        for c, cat in m["categories"].items()
        for x in cat["missing"]
    ]
    if missing:
        lines += ["", "\\* incomplete category; not scored:", ""]
        lines += [f"- {model}: {cat} / {x['name']} ({_reason(x)})" for model, cat, x in missing]
    if results.get("data", {}).get("missing"):
        files = ", ".join(f"`{m['path']}`" for m in results["data"]["missing"])
        lines += ["", f"Missing benchmark files: {files}"]
    lines += ["", "## Benchmarks", "", _benchmark_table(results)]
    beside = [
        (m["model_id"], label, r)
        for m in results["models"]
        for label, r in m.get("beside_gauntlet", {}).items()
    ]
    if beside:
        lines += [
            "",
            "## Beside the Gauntlet (not in its average)",
            "",
            "| Model | Task | Metric | Value | Examples |",
        ]
        lines.append("|---|---|---|---:|---:|")
        for model, label, r in beside:
            lines.append(
                f"| {model} | {label} | {r['metric']} | {r['value']:.4g} | {r.get('n_examples', '')} |"
            )
    return "\n".join(lines) + "\n"


def _benchmark_table(results: dict[str, Any]) -> str:
    models = results["models"]
    header = ["Category", "Benchmark", "Shots", *(f"{m['model_id']} acc / score (n)" for m in models)]
    rows = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * len(models)) + "|"]
    for index, bench in enumerate(models[0]["benchmarks"]):
        cells = [bench["category"], bench["name"], str(bench["num_fewshot"])]
        for model in models:
            b = model["benchmarks"][index]
            if b["status"] == "scored":
                n = "" if b["n_examples"] is None else f" ({b['n_examples']})"
                cells.append(f"{b['accuracy']:.3f} / {b['score']:.3f}{n}")
            else:
                cells.append(b["status"].replace("_", " "))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def bar_chart_png(results: dict[str, Any], path: str | Path) -> None:
    """Grouped bars: one group per category (and average), one bar per model; partial bars hatched."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    categories, averages = _columns(results)
    groups = categories + averages
    models = results["models"]
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(groups)), 4.5))
    for i, model in enumerate(models):
        entries = [model["categories"][g] for g in categories] + [model["averages"][g] for g in averages]
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(groups))]
        heights = [e["score"] or 0.0 for e in entries]
        bars = ax.bar(xs, heights, width, label=model["model_id"])
        for bar, entry in zip(bars, entries, strict=True):
            if not entry["complete"]:
                bar.set_hatch("//")
                top = max(bar.get_height(), 0.0)
                ax.annotate(
                    "partial", (bar.get_x() + bar.get_width() / 2, top), ha="center", va="bottom", fontsize=7
                )
    ax.set_xticks(range(len(groups)), [_title(g) for g in groups], rotation=20, ha="right")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_ylabel("score (baseline-subtracted, rescaled)")
    ax.set_title(f"Eval Gauntlet {results['gauntlet']['version']} (hatched: incomplete category)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write_bytes(path, figure_png(fig))


def report_paths(out_dir: str | Path) -> dict[str, Path]:
    """Where `write_reports` puts results.md and gauntlet.png."""
    return {"markdown": Path(out_dir) / "results.md", "chart": Path(out_dir) / "gauntlet.png"}


def write_reports(results: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """results.md and gauntlet.png in `out_dir` (each written atomically)."""
    paths = report_paths(out_dir)
    atomic_write_text(paths["markdown"], markdown_table(results))
    bar_chart_png(results, paths["chart"])
    return paths
