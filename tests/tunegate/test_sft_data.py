import pandas as pd
import torch
from transformers import AutoTokenizer, DataCollatorForSeq2Seq

from tests.conftest import REPO
from tunegate.prompting import PromptFormat
from tunegate.sft_data import IGNORE_INDEX, encode_rows

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
    # <|user|> \n R ef und ? <|end|> \n <|assistant|> \n | b ill ing <|end|>
    assert encoded.input_ids == [[4, 204, 55, 1416, 463, 36, 2, 204, 5, 204, 71, 345, 289, 2], [674, 479, 2]]
    assert encoded.labels == [[M, M, M, M, M, M, M, M, M, M, 71, 345, 289, 2], [674, 479, 2]]
    assert TOKENIZER.decode(encoded.input_ids[0]) == FORMAT.format_row(ROWS.iloc[0].to_dict()).prompt + "billing<|end|>"
    assert (encoded.target_tokens, encoded.total_tokens, encoded.overlength_rows) == (7, 17, 0)


def test_overlength_rows_are_left_out_and_counted_never_truncated():
    encoded = encode_rows(ROWS, TOKENIZER, FORMAT, max_tokens=10)
    assert encoded.input_ids == [[674, 479, 2]]
    assert (encoded.overlength_rows, encoded.longest_left_out) == (1, 14)


def test_dataset_carries_lengths_and_batches_pad_only_to_the_longest():
    dataset = encode_rows(ROWS, TOKENIZER, FORMAT, max_tokens=64).to_dataset()
    assert dataset["length"] == [14, 3]
    collator = DataCollatorForSeq2Seq(TOKENIZER, padding=True, label_pad_token_id=IGNORE_INDEX)
    batch = collator([dataset[1]])
    assert batch["input_ids"].tolist() == [[674, 479, 2]]
    batch = collator([dataset[0], dataset[1]])
    assert batch["input_ids"].shape == torch.Size([2, 14])
    assert batch["labels"][1].tolist() == [674, 479, 2] + [M] * 11
    assert batch["attention_mask"][1].tolist() == [1, 1, 1] + [0] * 11
