import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer, DataCollatorForSeq2Seq

from tests.conftest import REPO
from tunegate.lm.base_fetch import fetched_base
from tunegate.lm.prompting import PromptFormat
from tunegate.lm.sft_data import IGNORE_INDEX, encode_rows

TOKENIZER = AutoTokenizer.from_pretrained(REPO / "demo" / "base_model")
FORMAT = PromptFormat.from_tokenizer(TOKENIZER)
ROWS = pd.DataFrame(
    [
        {"shape": "prompt_completion", "prompt": "Refund?", "completion": "billing", "messages": None},
        {"shape": "text", "prompt": "", "completion": "Hi there", "messages": None},
    ]
)
M = IGNORE_INDEX


def test_prompt_tokens_are_masked_and_target_ends_with_eos():
    encoded = encode_rows(ROWS, TOKENIZER, FORMAT, max_tokens=64)
    assert [TOKENIZER.convert_ids_to_tokens(ids) for ids in encoded.input_ids] == [
        [
            "<|user|>",
            "Ġ",
            "Ċ",
            "R",
            "ef",
            "und",
            "?",
            "<|end|>",
            "Ġ",
            "Ċ",
            "<|assistant|>",
            "Ġ",
            "Ċ",
            "Ġbilling",
            "<|end|>",
        ],
        ["ĠHi", "Ġthere", "<|end|>"],
    ]
    assert encoded.input_ids == [[4, 226, 204, 55, 1459, 470, 36, 2, 226, 204, 5, 226, 204, 983, 2], [1207, 468, 2]]
    assert encoded.labels == [[M] * 13 + [983, 2], [1207, 468, 2]]
    assert (encoded.target_tokens, encoded.total_tokens, encoded.overlength_rows) == (5, 18, 0)


def test_overlength_rows_are_left_out_and_counted_never_truncated():
    encoded = encode_rows(ROWS, TOKENIZER, FORMAT, max_tokens=10)
    assert encoded.input_ids == [[1207, 468, 2]]
    assert (encoded.overlength_rows, encoded.longest_left_out) == (1, 15)


def test_dataset_carries_lengths_and_batches_pad_only_to_the_longest():
    dataset = encode_rows(ROWS, TOKENIZER, FORMAT, max_tokens=64).to_dataset()
    assert dataset["length"] == [15, 3]
    collator = DataCollatorForSeq2Seq(TOKENIZER, padding=True, label_pad_token_id=IGNORE_INDEX)
    batch = collator([dataset[1]])
    assert batch["input_ids"].tolist() == [[1207, 468, 2]]
    batch = collator([dataset[0], dataset[1]])
    assert batch["input_ids"].shape == torch.Size([2, 15])
    assert batch["labels"][1].tolist() == [1207, 468, 2] + [M] * 12
    assert batch["attention_mask"][1].tolist() == [1, 1, 1] + [0] * 12


@pytest.mark.slow
def test_a_base_whose_pad_is_its_eos_still_learns_to_end_its_answers():
    """SmolLM2 pads with <|im_end|>, its eos: labels are masked by prompt length and padding by position, never by
    token id, so the eos that ends an answer keeps its label."""
    tokenizer = AutoTokenizer.from_pretrained(fetched_base("smollm2-135m-instruct"))
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == 2
    smollm2_format = PromptFormat.from_tokenizer(tokenizer, system_prompt="")
    encoded = encode_rows(ROWS, tokenizer, smollm2_format, max_tokens=64)
    assert smollm2_format.format_row(ROWS.iloc[0].to_dict()).prompt == (
        "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nRefund?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert [row[-1] for row in encoded.labels] == [2, 2]
    collate = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)
    batch = collate([{"input_ids": i, "labels": lab} for i, lab in zip(encoded.input_ids, encoded.labels, strict=True)])
    short = len(encoded.input_ids[1])
    assert batch["labels"][1, short - 1].item() == 2  # the short row's eos label survives
    assert batch["input_ids"][1, short:].tolist() == [2] * (batch["input_ids"].shape[1] - short)  # padded with eos
    assert (batch["labels"][1, short:] == IGNORE_INDEX).all()  # ... whose labels are ignored by position
