"""Pairwise LLM judge: run judgments, report win rates with honest uncertainty, calibrate judges."""
