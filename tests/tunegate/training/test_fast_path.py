import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.fixtures.training import BASE_MODEL, ticket_rows
from tunegate.config.train import ModelConfig, TrainConfig
from tunegate.lm.prompting import PromptFormat
from tunegate.lm.sft_data import IGNORE_INDEX, encode_rows
from tunegate.training.budget import fixed_plan
from tunegate.training.fast_path import fast_path_for
from tunegate.training.job import run_training
from tunegate.training.sft import sft_collator

# fp32 on CPU: the packed row and the padded batch run the same matmuls in another order and blocking; their
# per-sequence losses agree to ~1e-6 here, so 1e-5 (absolute and relative) is tight and still order-insensitive.
TOLERANCE = {"atol": 1e-5, "rtol": 1e-5}


def test_on_cpu_every_fast_path_piece_is_off_and_says_why():
    plan = fast_path_for(TrainConfig(), cuda=False, bf16_supported=False, liger_installed=True)
    assert (plan.packing, plan.kernels, plan.compile, plan.precision) == (False, False, False, "fp32")
    assert plan.describe() == (
        "fast path: packing off (CPU: a block mask over the packed row costs more than the padding it saves); "
        "kernels off (CPU: Liger's kernels are Triton, CUDA only); precision fp32 (CPU: autocast gains little)"
    )


def test_on_a_gpu_auto_switches_on_what_the_machine_supports():
    plan = fast_path_for(TrainConfig(compile=True), cuda=True, bf16_supported=True, liger_installed=True)
    assert (plan.packing, plan.kernels, plan.compile, plan.precision) == (True, True, True, "bf16")
    without_liger = fast_path_for(TrainConfig(), cuda=True, bf16_supported=False, liger_installed=False)
    assert (without_liger.kernels, without_liger.precision) == (False, "fp16")
    assert "kernels off (liger-kernel is not installed: pip install liger-kernel)" in without_liger.reasons
    opted_out = fast_path_for(
        TrainConfig(packing="off", kernels="none"), cuda=True, bf16_supported=True, liger_installed=True
    )
    assert (opted_out.packing, opted_out.kernels) == (False, False)


def per_sequence_losses(logits: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Mean target-token loss of each row of (logits, labels), next-token shifted."""
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2).float(), labels[:, 1:], ignore_index=IGNORE_INDEX, reduction="none"
    )
    counted = (labels[:, 1:] != IGNORE_INDEX).float()
    return ((losses * counted).sum(1) / counted.sum(1)).tolist()


def boundaries(lengths: list[int]) -> list[tuple[int, int]]:
    """(start, end) of each sequence in the packed row."""
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    return [(start, start + length) for start, length in zip(starts, lengths, strict=True)]


@pytest.fixture(scope="module")
def batch():
    tokenizer = AutoTokenizer.from_pretrained(BASE_MODEL)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    rows = pd.concat(
        [ticket_rows(5), pd.DataFrame({"shape": ["text"], "prompt": [""], "completion": ["Thanks for waiting."]})]
    )
    encoded = encode_rows(rows, tokenizer, PromptFormat.from_tokenizer(tokenizer), max_tokens=512)
    features = [{"input_ids": i, "labels": y} for i, y in zip(encoded.input_ids, encoded.labels, strict=True)]
    model = AutoModelForCausalLM.from_pretrained(BASE_MODEL).eval()
    return tokenizer, features, model


def test_a_packed_batch_gives_each_sequence_the_loss_it_has_alone_in_a_padded_batch(batch):
    tokenizer, features, model = batch
    padded, packed = sft_collator(tokenizer, False)(features), sft_collator(tokenizer, True)(features)
    lengths = [len(f["input_ids"]) for f in features]
    assert len(set(lengths)) > 1 and packed["input_ids"].shape == (1, sum(lengths))  # no padding at all
    assert "attention_mask" not in packed and packed["position_ids"][0, lengths[0]] == 0  # positions restart
    with torch.no_grad():
        padded_out = model(**padded)
        packed_out = model(**packed)
    alone = per_sequence_losses(padded_out.logits, padded["labels"])
    pieces = [
        per_sequence_losses(packed_out.logits[:, a:b], packed["labels"][:, a:b])[0] for a, b in boundaries(lengths)
    ]
    torch.testing.assert_close(torch.tensor(pieces), torch.tensor(alone), **TOLERANCE)
    # The batch loss (mean over every target token) is the same number too.
    torch.testing.assert_close(packed_out.loss, padded_out.loss, **TOLERANCE)


def test_without_position_ids_the_packed_row_attends_across_sequences_and_the_check_fails(batch):
    tokenizer, features, model = batch
    packed = sft_collator(tokenizer, True)(features)
    padded = sft_collator(tokenizer, False)(features)
    with torch.no_grad():
        leaking = model(input_ids=packed["input_ids"], labels=packed["labels"]).loss
        padded_loss = model(**padded).loss
    assert abs(leaking.item() - padded_loss.item()) > 1e-2  # what the equivalence test would catch


def test_training_on_packed_batches_follows_the_padded_runs_loss_curve(tmp_path):
    # No LoRA dropout: its random masks are drawn per tensor shape, and a packed row has another shape than the
    # padded batch, so with dropout the two runs see different noise (val loss 0.05 apart after 6 steps).
    recipe = TrainConfig(save_steps=100, batch_size=8, learning_rate=5e-3, warmup_ratio=0.0, lora_dropout=0.0)
    runs = [
        run_training(
            ticket_rows(48),
            ticket_rows(16, skip=48),
            ModelConfig(base=BASE_MODEL),
            recipe.model_copy(update={"packing": packing}),
            fixed_plan(6, [3, 6]),
            tmp_path / packing,
        )
        for packing in ("off", "on")
    ]
    padded, packed = ([loss for _, loss in run.val_loss_history] for run in runs)
    torch.testing.assert_close(torch.tensor(packed), torch.tensor(padded), atol=1e-4, rtol=1e-4)
    assert runs[1].train_tokens_seen == runs[0].train_tokens_seen  # packing counts every real token, no padding
