"""Packing is refused where packed samples would see each other, and with MPT it changes no sample's logits."""

from __future__ import annotations

from pathlib import Path

import pytest

from limit_foundry.config import compose_config, resolved_dict
from limit_foundry.data.packing import fit_packing_ratio, padding_tokens, validate_packing
from limit_foundry.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def config(model: dict, packing_ratio, where: str = "train_loader") -> dict:
    loader = {
        "name": "limit_finetuning",
        "dataset": {"packing_ratio": packing_ratio, "decoder_only_format": True},
    }
    cfg: dict = {"model": model, "train_loader": {"name": "finetuning", "dataset": {}}}
    if where == "eval_loaders":
        cfg["eval_loaders"] = [loader]
    else:
        cfg[where] = loader
    return cfg


MPT_OK = {"name": "mpt_causal_lm", "attn_config": {"attn_impl": "torch", "attn_uses_sequence_id": True}}


@pytest.mark.parametrize(
    "model, ratio, where, message",
    [
        ({"name": "hf_causal_lm"}, 4.0, "train_loader", "ignores sequence_id"),
        (
            {"name": "hf_causal_lm"},
            "auto",
            "eval_loaders",
            r"eval_loaders\[0\]\.dataset\.packing_ratio='auto'",
        ),
        (
            {"name": "mpt_causal_lm", "attn_config": {"attn_impl": "torch"}},
            2.0,
            "train_loader",
            "attn_uses_sequence_id: true",
        ),
        (
            {"name": "limit_hf_mpt", "attn_uses_sequence_id": False},
            2.0,
            "train_loader",
            "model.attn_uses_sequence_id",
        ),
    ],
)
def test_packing_is_refused_when_samples_would_attend_to_each_other(model, ratio, where, message) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_packing(config(model, ratio, where))


def test_packing_is_allowed_with_sequence_id_masking_and_irrelevant_without_packing() -> None:
    validate_packing(config(MPT_OK, "auto"))
    validate_packing(config({"name": "limit_hf_mpt", "attn_uses_sequence_id": True}, 3.0))
    validate_packing(config({"name": "hf_causal_lm"}, None))
    validate_packing(config({"name": "hf_causal_lm"}, 1.0))
    unpacked_decoder = config(MPT_OK, 2.0)
    unpacked_decoder["train_loader"]["dataset"]["decoder_only_format"] = False
    with pytest.raises(ConfigError, match="decoder_only_format"):
        validate_packing(unpacked_decoder)


@pytest.mark.parametrize(
    "run, override",
    [
        ("yamls/tiny/mix.yaml", "yamls/overrides/packing_mpt.yaml"),
        ("yamls/mpt7b_mix.yaml", "yamls/overrides/packing.yaml"),
    ],
)
def test_packing_overrides_make_a_valid_packed_config(tmp_path: Path, run: str, override: str) -> None:
    packed = tmp_path / "packed.yaml"
    packed.write_text(f"inherit: [{REPO / run}, {REPO / override}]\n")
    cfg = resolved_dict(compose_config(packed))
    validate_packing(cfg)
    dataset = cfg["train_loader"]["dataset"]
    assert dataset["packing_ratio"] is not None and dataset["allow_pad_trimming"] is True
    plain = resolved_dict(compose_config(REPO / run, ["train_loader.dataset.packing_ratio=2.0"]))
    with pytest.raises(ConfigError):
        validate_packing(plain)


def padding_share(batches: list) -> float:
    counts = [padding_tokens(b) for b in batches]
    return sum(p for p, _ in counts) / sum(t for _, t in counts)


def _model(attn_uses_sequence_id: bool):
    from limit_foundry.models.tiny import build_tiny_mpt

    return build_tiny_mpt(seed=0, attn_config={"attn_uses_sequence_id": attn_uses_sequence_id})


def test_packed_logits_equal_unpacked_logits_for_mpt(tiny_loader) -> None:
    import torch

    packed = next(iter(tiny_loader(packing_ratio=3.0, device_batch_size=2).dataloader))
    assert int(packed["sequence_id"].max()) >= 1  # at least two samples share a row
    model = _model(True)
    leaky = _model(False)  # the same weights, no sequence_id masking: the negative control
    leaky.load_state_dict(model.state_dict())
    checked, leaks = 0, 0
    with torch.no_grad():
        full = model(
            input_ids=packed["input_ids"],
            attention_mask=packed["attention_mask"],
            sequence_id=packed["sequence_id"],
        ).logits
        mixed = leaky(input_ids=packed["input_ids"], attention_mask=packed["attention_mask"]).logits
        for row in range(packed["input_ids"].shape[0]):
            for seq in range(int(packed["sequence_id"][row].max()) + 1):
                positions = (packed["sequence_id"][row] == seq).nonzero().flatten()
                alone = model(input_ids=packed["input_ids"][row, positions].unsqueeze(0)).logits[0]
                torch.testing.assert_close(full[row, positions], alone, rtol=1e-4, atol=1e-5)
                checked += 1
                leaks += int(
                    seq > 0 and not torch.allclose(mixed[row, positions], alone, rtol=1e-4, atol=1e-5)
                )
    assert checked >= 3 and leaks >= 1


def test_packing_keeps_response_only_loss_masks_and_cuts_padding(tiny_loader) -> None:
    unpacked = list(tiny_loader(device_batch_size=2).dataloader)
    packed_loader = tiny_loader(packing_ratio=3.0, device_batch_size=2).dataloader
    packed = list(packed_loader)
    # Every packed segment carries exactly the labels of one unpacked sample (response tokens + EOS only).
    single = {}
    for batch in unpacked:
        for row in range(batch["input_ids"].shape[0]):
            n = int(batch["attention_mask"][row].sum())
            single[tuple(batch["input_ids"][row, :n].tolist())] = batch["labels"][row, :n].tolist()
    segments = 0
    for batch in packed:
        for row in range(batch["input_ids"].shape[0]):
            for seq in range(int(batch["sequence_id"][row].max()) + 1):
                mask = batch["sequence_id"][row] == seq
                key = tuple(batch["input_ids"][row][mask].tolist())
                assert single[key] == batch["labels"][row][mask].tolist()
                segments += 1
    # Samples that did not fit this epoch wait in the packer's leftover bins (emitted first next epoch):
    # carried over, not dropped.
    packer = packed_loader.collate_fn.base_collator  # LLM Foundry wraps its BinPackCollator to count tokens
    pending = sum(int(example["sequence_id"].max()) + 1 for _, example in packer._leftover_bins)
    assert segments + pending == len(single) == 52
    assert padding_share(packed) < padding_share(unpacked) / 2


def test_fit_ratio_fills_packed_rows_to_the_target() -> None:
    assert fit_packing_ratio([200] * 10, 2048) == 9.9  # 0.97 * 2048 / 200 = 9.93
    assert fit_packing_ratio([100, 300], 2048) == 9.9
    assert fit_packing_ratio([5000], 2048) == 1.0  # longer than a row: no packing
    with pytest.raises(ValueError, match="no samples"):
        fit_packing_ratio([], 2048)


def test_loader_resolves_packing_ratio_fit_from_the_real_lengths(tiny_loader, tmp_path: Path) -> None:
    from limit_foundry.data.dataloader import check_prompt_lengths, ensure_dataset, parse_dataset_config

    spec = tiny_loader(packing_ratio="fit", device_batch_size=2)
    dataset = parse_dataset_config(
        {"recipe": "instruct_v1:all,lima:all", "data_root": str(tmp_path / "data")}
    )
    ensure_dataset(dataset)
    lengths = check_prompt_lengths(dataset, False, tiny_loader.tokenizer, 256)
    assert spec.dataloader.batch_size == int(2 * fit_packing_ratio(lengths, 256)) > 2
