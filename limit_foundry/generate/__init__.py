"""Answers for the judge: prompt sets, seeded decoding, batched generation, resumable AlpacaEval-format output.

`python -m limit_foundry.generate --help` is the command line (`cli.py`); `run.py` drives one run, `engine.py`
batches, `decoding.py` draws tokens, `prompts.py` reads prompt sets, `output.py` writes records.
"""
