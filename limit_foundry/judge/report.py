"""`report`: win rates with confidence intervals from result directories or AlpacaEval annotation files.

Writes report.md, report.csv, report.json and report.png (stacked bars in the paper's style) and
exits non-zero when a comparison's failed pairs exceed --max-failure-rate, so a study cannot quote
a win rate whose denominator quietly lost judgments.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from limit_foundry.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from limit_foundry.judge.alpaca_eval_io import GROUPINGS, load_alpaca_eval
from limit_foundry.judge.results import load_result_dir
from limit_foundry.judge.summary import CI_METRICS, POOLED, summarize

EXIT_OK, EXIT_TOO_MANY_FAILURES, EXIT_BAD_INPUT = 0, 1, 2
POLICIES = ("ours", "limit")
CSV_FIELDS = (
    "comparison",
    "generator_a",
    "generator_b",
    "combination",
    "seed",
    "n_pairs",
    "failed_pairs",
    "failure_rate",
    "failures",
    "judged",
    "a_wins",
    "ties",
    "b_wins",
    *(f for name in CI_METRICS for f in (name, f"{name}_ci_low", f"{name}_ci_high")),
    "sign_test_prompts_b",
    "sign_test_prompts_a",
    "sign_test_p",
    "position_pairs",
    "position_consistency",
    "first_slot_decisive",
    "first_slot_win_rate",
    "mean_len_a",
    "mean_len_b",
    "longer_wins",
    "longer_decisive_votes",
    "limit_win_rate",
)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _with_ci(row: dict[str, Any], name: str) -> str:
    ci = row.get(f"{name}_ci")
    return _fmt(row[name]) + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "")


def _count(value: float | None) -> str:
    return "n/a" if value is None else (f"{value:g}")


def render_markdown(summaries: list[dict], params: dict[str, Any]) -> str:
    level = round(params["ci_level"] * 100)
    lines = [
        "# Judge report",
        "",
        "Win rates are B's (output_2 in AlpacaEval terms, the paper's wins_B / (wins_A + wins_B)). "
        f"Intervals: {level}% percentile bootstrap over prompts (all seeds and orders of a prompt resampled "
        f"together; {params['n_resamples']} resamples, RNG seed {params['rng_seed']}). Sign test: exact, "
        "two-sided, over prompts (a prompt counts for the side with more of its votes). "
        "Failed pairs are excluded from win rates and counted under failures.",
    ]
    for s in summaries:
        lines += ["", f"## {s['name']}: B = {s['generator_b']} vs A = {s['generator_a']}", ""]
        meta = ", ".join(f"{k} {v}" for k, v in s["meta"].items() if k != "annotators")
        lines.append(
            f"- order policy: {s['order_policy']}; {s['n_prompts']} prompts; seeds: {', '.join(s['seeds'])}"
        )
        if meta:
            lines.append(f"- {meta}")
        if s["meta"].get("annotators"):
            lines.append(f"- annotators: {s['meta']['annotators']}")
        lines += [f"- source: {src['path']} (sha256 {src['sha256'][:12]})" for src in s["sources"]]
        if s["partial"]:
            lines.append("- **PARTIAL RUN**: dispatching stopped early or failures remain (see run.json)")
        first = next(iter(s["combinations"].values()))["rows"][-1]
        causes = ", ".join(f"{k} {v}" for k, v in first["failures"].items()) or "none"
        lines.append(
            f"- failed pairs: {first['failed_pairs']} of {first['n_pairs']} "
            f"({_fmt((first['failure_rate'] or 0) * 100, 2)}%): {causes}"
        )
        unit_causes = ", ".join(f"{k} {v}" for k, v in s["unit_failures"].items()) or "none"
        lines.append(f"- failed units: {unit_causes} (of {s['n_units']} units)")
        if first["position_pairs"] or first["first_slot_decisive"]:
            lines.append(
                f"- position consistency: {_fmt(first['position_consistency'])} "
                f"(of {first['position_pairs']} pairs judged in both orders); first-slot win rate: "
                f"{_fmt(first['first_slot_win_rate'])} (of {first['first_slot_decisive']} decisive judgments)"
            )
        elif s["order_policy"] == "alpaca_eval":
            lines.append(
                "- position bias: not measurable (AlpacaEval annotations do not record the order shown)"
            )
        lines += [f"- note: {note}" for note in s["notes"]]
        if params["policy"] == "limit":
            for combo, data in s["combinations"].items():
                ci = data["limit_win_rate_ci"]
                lines.append(
                    f"- **LIMIT win rate** ({combo}; per seed B/(A+B) over decisive verdicts, mean over "
                    f"{len(s['seeds'])} seeds; draws {_count(data['rows'][-1]['ties'])} and failed pairs "
                    f"{data['rows'][-1]['failed_pairs']} dropped): {_fmt(data['limit_win_rate'])}"
                    + (f" [{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "")
                )
        if s["anomalies"]:
            lines += ["", "| anomaly | count | examples | meaning |", "|---|---:|---|---|"]
            for name, a in s["anomalies"].items():
                lines.append(f"| {name} | {a['count']} | {', '.join(a['examples'])} | {a['meaning']} |")
        lines += [
            "",
            "| combination | seed | pairs | failed | A wins | ties | B wins | B win rate (ties excl.) "
            "| ties as half | B equiv. or better | sign p | len A | len B | longer wins |",
            "|---|---|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|---:|",
        ]
        for combo, data in s["combinations"].items():
            for r in data["rows"]:
                lines.append(
                    f"| {combo} | {r['seed']} | {r['n_pairs']} | {r['failed_pairs']} | {_count(r['a_wins'])} "
                    f"| {_count(r['ties'])} | {_count(r['b_wins'])} | {_with_ci(r, 'win_rate')} "
                    f"| {_with_ci(r, 'win_rate_ties_half')} | {_with_ci(r, 'equivalent_or_better')} "
                    f"| {_fmt(r['sign_test_p'], 4)} | {_fmt(r['mean_len_a'], 0)} | {_fmt(r['mean_len_b'], 0)} "
                    f"| {_fmt(r['longer_wins'])} |"
                )
    return "\n".join(lines) + "\n"


def render_csv(summaries: list[dict], policy: str) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for s in summaries:
        for combo, data in s["combinations"].items():
            for r in data["rows"]:
                flat = {k: v for k, v in r.items() if k in CSV_FIELDS}
                for name in CI_METRICS:
                    ci = r[f"{name}_ci"] or [None, None]
                    flat[f"{name}_ci_low"], flat[f"{name}_ci_high"] = ci
                flat["failures"] = ";".join(f"{k}:{v}" for k, v in r["failures"].items())
                if policy == "limit" and r["seed"] == POOLED:
                    flat["limit_win_rate"] = data["limit_win_rate"]
                writer.writerow(
                    {
                        "comparison": s["name"],
                        "generator_a": s["generator_a"],
                        "generator_b": s["generator_b"],
                    }
                    | {"combination": combo}
                    | flat
                )
    return buffer.getvalue()


def render_png(summaries: list[dict]) -> bytes:
    """Horizontal stacked bars (A wins / ties / B wins, pooled) with the bootstrap CI as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [
        (
            f"A {s['generator_a']} vs B {s['generator_b']}" + ("" if combo == "single" else f" ({combo})"),
            data["rows"][-1],
        )
        for s in summaries
        for combo, data in s["combinations"].items()
    ]
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(bars) + 1.4))
    colors = {"share_a": "#4c72b0", "share_tie": "#bbbbbb", "share_b": "#dd8452"}
    labels = {"share_a": "A wins", "share_tie": "tie", "share_b": "B wins"}
    for y, (_, row) in enumerate(bars):
        left = 0.0
        for name in ("share_a", "share_tie", "share_b"):
            width = row[name] or 0.0
            ax.barh(y, width, left=left, color=colors[name], label=labels[name] if y == 0 else None)
            if width >= 0.06:
                ax.text(left + width / 2, y, f"{width:.0%}", ha="center", va="center", fontsize=8)
            left += width
        for name, edge in (("share_a", row["share_a"]), ("share_b", 1 - (row["share_b"] or 0.0))):
            ci = row[f"{name}_ci"]
            if ci and edge is not None:
                low, high = ci if name == "share_a" else (1 - ci[1], 1 - ci[0])
                # drawn in the bar's lower half so it never covers the share label at its centre
                ax.errorbar(
                    edge, y + 0.22, xerr=[[edge - low], [high - edge]], color="black", capsize=3, lw=1
                )
    ax.set_yticks(range(len(bars)), [label for label, _ in bars], fontsize=8)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("share of judged pairs")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, frameon=False)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def add_bootstrap_arguments(parser: argparse.ArgumentParser) -> None:
    """The interval options shared by `report` and `calibrate`."""
    parser.add_argument(
        "--n-resamples",
        type=int,
        default=2000,
        metavar="N",
        help="bootstrap resamples (default: %(default)s)",
    )
    parser.add_argument(
        "--rng-seed",
        type=int,
        default=0,
        metavar="SEED",
        help="bootstrap RNG seed; fixed, so the same inputs give the same intervals (default: %(default)s)",
    )
    parser.add_argument(
        "--ci-level",
        type=float,
        default=0.95,
        metavar="LEVEL",
        help="confidence level of the percentile intervals (default: %(default)s)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dirs",
        nargs="*",
        metavar="DIR",
        help="result directories written by `run` (each one comparison); put them before --alpaca-eval",
    )
    parser.add_argument(
        "--alpaca-eval",
        nargs="+",
        default=[],
        metavar="FILE",
        help="AlpacaEval annotation files (JSON array or JSONL), e.g. LIMIT's released GPT-4 verdicts "
        "(default: none)",
    )
    parser.add_argument(
        "--alpaca-eval-grouping",
        choices=GROUPINGS,
        default="together",
        help="together: the files are the seeds of one comparison; per-file: one comparison per file. "
        "Concatenated runs inside a file are always split into seeds (default: %(default)s)",
    )
    parser.add_argument(
        "--policy",
        choices=POLICIES,
        default="ours",
        help="limit: also quote the paper's win rate (per seed B/(A+B), draws and non-verdicts dropped but "
        "counted, then the mean over seeds); ours: our tables only (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="where report.{md,csv,json,png} go (default: the first result directory; required with only "
        "--alpaca-eval files)",
    )
    add_bootstrap_arguments(parser)
    parser.add_argument(
        "--max-failure-rate",
        type=float,
        default=0.01,
        metavar="RATE",
        help="exit 1 when a comparison's failed pairs exceed this share of its pairs (default: %(default)s)",
    )
    parser.add_argument("--no-plot", action="store_true", help="skip report.png (default: draw it)")


def run_report(args: argparse.Namespace) -> int:
    """Build and write the report; the exit code says whether failures stayed under the threshold."""
    if not args.dirs and not args.alpaca_eval:
        print("report: give result directories and/or --alpaca-eval FILE...", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = args.out or (Path(args.dirs[0]) if args.dirs else None)
    if out is None:
        print("report: --out DIR is required when only --alpaca-eval files are given", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        comparisons = [load_result_dir(d) for d in args.dirs]
        names = Counter(c.name for c in comparisons)
        for comparison, directory in zip(comparisons, args.dirs, strict=True):
            if names[comparison.name] > 1:  # two `out` dirs under different parents: use the paths
                comparison.name = str(directory)
        if args.alpaca_eval:
            comparisons += load_alpaca_eval(args.alpaca_eval, args.alpaca_eval_grouping)
    except (OSError, ValueError) as err:
        print(f"report: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    params = {
        "n_resamples": args.n_resamples,
        "rng_seed": args.rng_seed,
        "ci_level": args.ci_level,
        "policy": args.policy,
        "max_failure_rate": args.max_failure_rate,
    }
    summaries = [summarize(c, args.n_resamples, args.rng_seed, args.ci_level) for c in comparisons]
    markdown = render_markdown(summaries, params)
    atomic_write_text(out / "report.md", markdown)
    atomic_write_text(out / "report.csv", render_csv(summaries, args.policy))
    atomic_write_json(out / "report.json", {"parameters": params, "comparisons": summaries})
    if not args.no_plot:
        atomic_write_bytes(out / "report.png", render_png(summaries))
    print(markdown)
    over = [
        (s["name"], row)
        for s in summaries
        if (row := next(iter(s["combinations"].values()))["rows"][-1])["failure_rate"]
        and row["failure_rate"] > args.max_failure_rate
    ]
    for name, row in over:
        print(
            f"report: {name}: {row['failed_pairs']} of {row['n_pairs']} pairs failed "
            f"({row['failure_rate']:.2%} > --max-failure-rate {args.max_failure_rate:.2%}): {row['failures']}",
            file=sys.stderr,
        )
    print(f"report: wrote {out}/report.{{md,csv,json{'' if args.no_plot else ',png'}}}", file=sys.stderr)
    return EXIT_TOO_MANY_FAILURES if over else EXIT_OK


DESCRIPTION = (
    "Report win rates, failures, position bias and length effects with bootstrap confidence intervals "
    "for judge result directories and/or AlpacaEval annotation files. Exit codes: 0 ok, 1 failures above "
    "--max-failure-rate (the report is still written), 2 bad input."
)


HELP = "win rates with CIs from result directories or AlpacaEval files"


def main(argv: list[str] | None = None) -> int:
    """Run `report` as `python -m limit_foundry.judge report` would (tests, scripts)."""
    from limit_foundry.judge.__main__ import main as judge_main

    return judge_main(["report", *(sys.argv[1:] if argv is None else argv)])
