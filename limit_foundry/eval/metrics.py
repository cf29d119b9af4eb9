"""Metrics of the two custom ICL tasks (`limit_foundry.eval.icl`), registered into `llmfoundry_metrics`.

`ResponsePerplexity` is corpus-level: exp(total negative log-likelihood of the response tokens /
number of response tokens), each token predicted from its prompt and the response so far.
`OpenEndedGeneration` turns each generated row into the judge's record and reports how many answers
were written (its `length_finished` state counts those cut by the token budget).
"""

from __future__ import annotations

from typing import Any

import torch
from llmfoundry.eval.metrics.nlp import InContextLearningMetric

from limit_foundry.generate.decoding import cut_at_stop
from limit_foundry.generate.output import make_record


class ResponsePerplexity(InContextLearningMetric):
    """Conditional perplexity of reference responses; `total` counts examples, `truncated` cut ones."""

    full_state_update = False

    def __init__(self, dist_sync_on_step: bool = False):
        super().__init__(dist_sync_on_step=dist_sync_on_step)
        self.add_state("nll_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tokens", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("truncated", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, batch: dict[str, Any], outputs: torch.Tensor, labels: torch.Tensor) -> None:
        # `labels` arrive shifted by one (Composer's icl_task eval_forward): labels[i] is token i + 1,
        # so the logits at position i - 1 predict the continuation token at position i.
        for row, positions in enumerate(batch["continuation_indices"]):
            index = positions.to(outputs.device) - 1
            log_probs = torch.log_softmax(outputs[row].index_select(0, index).double(), dim=-1)
            targets = labels[row].index_select(0, index).to(outputs.device)
            self.nll_sum -= log_probs.gather(1, targets.unsqueeze(1)).sum().to(self.nll_sum.device)
            self.tokens += len(positions)
            self.total += 1
        self.truncated += batch["truncated"].sum().to(self.truncated.device)

    def compute(self) -> torch.Tensor:
        return torch.exp(self.nll_sum / self.tokens).float()


class OpenEndedGeneration(InContextLearningMetric):
    """Writes each answer as an AlpacaEval-style record (through the batch's answer sink); counts them."""

    full_state_update = False

    def __init__(self, dist_sync_on_step: bool = False):
        super().__init__(dist_sync_on_step=dist_sync_on_step)
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("length_finished", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, batch: dict[str, Any], outputs: list[str], labels: list[str]) -> None:
        # `outputs` is Composer's decoding of every token after the prompt; the tracker's own copy of
        # the sequences gives each row's exact tokens up to where it stopped, as limit_foundry.generate.engine does.
        tracker, tokenizer = batch["finish_tracker"], batch["finish_tracker"].tokenizer
        width = batch["input_ids"].shape[1]
        records = []
        for row, item in enumerate(batch["work_items"]):
            steps = tracker.steps[row] or batch["budgets"][row]
            reason = tracker.reasons[row] or "length"
            generated = tracker.last_input_ids[row, width : width + steps].tolist()
            if reason == "eos":
                generated = generated[:-1]
            text = tokenizer.decode(generated, skip_special_tokens=True)
            if reason == "stop_string":
                text = cut_at_stop(text, batch["settings"].stop_strings)
            records.append(
                make_record(
                    instruction=item.prompt.instruction,
                    output=text.strip(),
                    generator=batch["generator"],
                    dataset=item.prompt.dataset,
                    datasplit=item.prompt.datasplit,
                    seed=item.seed,
                    prompt_id=item.prompt.prompt_id,
                    finish_reason="length" if reason == "length" else "stop",
                    prompt_tokens=len(item.input_ids),
                    output_tokens=steps,
                )
            )
            self.length_finished += float(reason == "length")
        batch["answer_sink"].add(records)
        self.total += len(records)

    def compute(self) -> torch.Tensor:
        return self.total.clone()
