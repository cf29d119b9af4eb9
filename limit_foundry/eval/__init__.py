"""Paradigm 1 of the LIMIT study: the MosaicML Eval Gauntlet through LLM Foundry's eval (LIMIT_FACTS §2).

config (Gauntlet + tasks files), data (pinned download), benchmark_files (checks, smoke-run copies),
runner (LLM Foundry eval per model), scoring, report, gauntlet (the CLI), and the custom ICL tasks
(icl, metrics) with their progress callback (progress).
"""
