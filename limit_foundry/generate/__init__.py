"""Answers for the judge: seeded decoding, batched generation, resumable AlpacaEval-format output.

`limit-foundry generate --help` (or `python -m limit_foundry.generate`) is the command line
(`limit_foundry/cli/generate.py`); `run.py` drives runs (one model x prompt set, or comma lists of both),
`engine.py` batches, `decoding.py` draws tokens, `output.py` writes records. Prompt sets are read by
`limit_foundry.data.prompt_sets`.
"""
