"""A LIMIT-style study end to end: spec, stages, runner (`python -m limit_foundry.study`)."""
