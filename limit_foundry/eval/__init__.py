"""Paradigm 1 of the LIMIT study (Jha et al. 2023): the MosaicML Eval Gauntlet through LLM Foundry's eval.

config (Gauntlet + tasks files, shipped in yamls/), data (pinned download; the pin is
gauntlet_data_manifest.json), benchmark_files (checks, smoke-run copies), runner (LLM Foundry eval per
model), scoring, report, gauntlet (`run_gauntlet`, `score_gauntlet`; the command line is
limit_foundry.cli.gauntlet), and the custom ICL tasks (icl, metrics) with their progress callback
(progress).
"""
