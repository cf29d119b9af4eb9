"""Prompt templates of the LIMIT study (Jha et al. 2023), in one place.

Instruct-v1 rows are stored already wrapped in the Alpaca-style template with blank lines;
the LIMA test prompts LIMIT fed to every model use the same words with single newlines;
Instruct-v3 writes `### Instruction` without a colon. Prompts already wrapped are never
wrapped twice, and the judge sees only the bare question, so `strip_template` undoes any of them.
"""

from __future__ import annotations

import re

PREAMBLE = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)

# Instruct-v1 (mosaicml/dolly_hhrlhf) stores prompts in this layout.
INSTRUCT_V1_TEMPLATE = PREAMBLE + "\n\n### Instruction:\n{instruction}\n\n### Response:\n"

# The layout of the LIMA test prompts LIMIT sent to every model; default for LIMA training rows.
LIMA_TEST_TEMPLATE = PREAMBLE + "\n### Instruction:\n{instruction}\n### Response:\n"

TEMPLATES: dict[str, str] = {
    "lima_test": LIMA_TEST_TEMPLATE,
    "instruct_v1": INSTRUCT_V1_TEMPLATE,
    "none": "{instruction}",
}

# Matches every layout above and Instruct-v3's (colon optional, one or more newlines).
_WRAPPED = re.compile(
    r"^\s*" + re.escape(PREAMBLE) + r"\s*### Instruction:?\s*\n(?P<instruction>.*?)\n\s*### Response:?\s*$",
    re.DOTALL,
)


def resolve_template(name_or_text: str) -> str:
    """A named template, or a literal template that contains `{instruction}`."""
    if name_or_text in TEMPLATES:
        return TEMPLATES[name_or_text]
    if "{instruction}" not in name_or_text:
        raise ValueError(
            f"unknown template {name_or_text!r}: use one of {sorted(TEMPLATES)} "
            "or a literal template containing '{instruction}'"
        )
    return name_or_text


def is_wrapped(prompt: str) -> bool:
    return _WRAPPED.match(prompt) is not None


def wrap(instruction: str, template: str = LIMA_TEST_TEMPLATE) -> str:
    """Apply `template` to a bare instruction; a prompt that is already wrapped is returned as is."""
    if is_wrapped(instruction):
        return instruction
    return resolve_template(template).replace("{instruction}", instruction)


def strip_template(prompt: str) -> str:
    """The bare instruction inside a wrapped prompt (the prompt itself when it is not wrapped)."""
    match = _WRAPPED.match(prompt)
    return match.group("instruction").strip() if match else prompt.strip()
