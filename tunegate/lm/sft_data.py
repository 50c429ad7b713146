"""Token sequences for supervised fine-tuning: loss on target tokens only, nothing truncated silently.

Prompt and target are tokenized separately and concatenated, so the boundary is exact and inference
(which tokenizes the prompt alone and generates) sees the same tokens as training. Prompt positions get
label -100 (ignored by the loss). Rows longer than `max_tokens` are left out and counted, so the report
can say how many; they are never cut.

The output layer runs only where the loss is (`next_token_targets`): a real base's vocabulary makes full logits the
biggest tensor of a step (SmolLM2: 16 rows x 384 tokens x 49,152 x 4 bytes = 1.2 GB per copy, and the loss, its
gradient and the softmax each make one; its output layer is 21% of the model's linear FLOPs, Gemma 3's 63%).
transformers' `logits_to_keep` takes a boolean (batch, sequence) mask and projects only those positions.

Padding is dynamic (to the longest sequence of a batch, `DataCollatorForSeq2Seq`) and batches are grouped
by length (`length` column, the Trainer's `group_by_length`), so almost no compute goes to padding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from tunegate.lm.prompting import PromptFormat

if TYPE_CHECKING:
    import torch

IGNORE_INDEX = -100  # the label torch's cross-entropy skips


@dataclass
class EncodedRows:
    """Tokenized rows ready for a causal-LM trainer, and what was left out."""

    input_ids: list[list[int]] = field(default_factory=list)
    labels: list[list[int]] = field(default_factory=list)
    overlength_rows: int = 0
    longest_left_out: int = 0

    @property
    def target_tokens(self) -> int:
        return sum(sum(1 for label in row if label != IGNORE_INDEX) for row in self.labels)

    @property
    def total_tokens(self) -> int:
        return sum(len(row) for row in self.input_ids)

    def to_dataset(self) -> Any:
        from datasets import Dataset

        return Dataset.from_dict(
            {"input_ids": self.input_ids, "labels": self.labels, "length": [len(ids) for ids in self.input_ids]}
        )


def encode_rows(rows: pd.DataFrame, tokenizer: Any, prompt_format: PromptFormat, max_tokens: int) -> EncodedRows:
    """Encode canonical rows as (input_ids, labels) with the prompt masked out of the loss."""
    pairs = [prompt_format.format_row(row) for row in rows.to_dict("records")]
    prompt_ids = token_ids(tokenizer, [pair.prompt for pair in pairs], with_special_tokens=True)
    target_ids = token_ids(tokenizer, [pair.target for pair in pairs], with_special_tokens=False)
    encoded = EncodedRows()
    for prompt, target in zip(prompt_ids, target_ids, strict=True):
        if len(prompt) + len(target) > max_tokens:
            encoded.overlength_rows += 1
            encoded.longest_left_out = max(encoded.longest_left_out, len(prompt) + len(target))
            continue
        encoded.input_ids.append(prompt + target)
        encoded.labels.append([IGNORE_INDEX] * len(prompt) + target)
    return encoded


def token_ids(tokenizer: Any, texts: list[str], with_special_tokens: bool) -> list[list[int]]:
    """Token ids of each text; special tokens (a BOS, where the tokenizer adds one) only when asked."""
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=with_special_tokens)["input_ids"]


def batches_of(
    input_ids: list[list[int]], labels: list[list[int]], batch_size: int, pad_id: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Right-padded (input_ids, attention_mask, labels) batches; padded positions are ignored by the loss."""
    import torch

    for start in range(0, len(input_ids), batch_size):
        ids, labs = input_ids[start : start + batch_size], labels[start : start + batch_size]
        width = max(len(x) for x in ids)
        yield (
            torch.tensor([x + [pad_id] * (width - len(x)) for x in ids]),
            torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids]),
            torch.tensor([y + [IGNORE_INDEX] * (width - len(y)) for y in labs]),
        )


def next_token_targets(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask of the positions whose next token carries loss, those next tokens in row-major order).

    >>> import torch
    >>> mask, targets = next_token_targets(torch.tensor([[-100, -100, 7, 8], [-100, 5, 6, -100]]))
    >>> mask.tolist(), targets.tolist()
    ([[False, True, True, False], [True, True, False, False]], [7, 8, 5, 6])
    """
    import torch

    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return mask, labels[:, 1:][mask[:, :-1]]


def takes_target_mask(model: Any) -> bool:
    """The model projects only masked positions when given `logits_to_keep` as a boolean mask: transformers 5 causal
    LMs do; PEFT's virtual-token methods prepend positions to the sequence, so a mask of the input's length misses."""
    import inspect

    peft_config = getattr(model, "peft_config", None)
    if peft_config and any(getattr(c, "is_prompt_learning", False) for c in peft_config.values()):
        return False
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(inner.forward).parameters


def target_token_cross_entropy(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
    """The causal-LM loss from logits at the target positions only (a model given `logits_to_keep`=the mask returns
    them flattened) or at every position (then the targets' are picked): summed over target tokens and divided by
    the Trainer's count of them across the accumulated batch (`num_items_in_batch`), else their mean, as the
    model's own loss does. The Trainer's `compute_loss_func`."""
    import torch

    mask, targets = next_token_targets(labels)
    logits = outputs["logits"]
    if logits.dim() == 3:  # every position; a virtual-token method prepends its own positions
        logits = logits[:, logits.size(1) - labels.size(1) :][mask]
    loss = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    if num_items_in_batch is None:
        return loss / max(len(targets), 1)
    return loss / (num_items_in_batch.to(loss.device) if torch.is_tensor(num_items_in_batch) else num_items_in_batch)


def target_token_logprobs(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probability of each target token, the row it belongs to), with the output layer run only at target
    positions where the model allows it."""
    import torch

    mask, targets = next_token_targets(labels)
    if takes_target_mask(model):
        logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=mask).logits
    else:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        # Prompt tuning and P-tuning prepend their virtual tokens' positions to the logits: score the input's.
        logits = logits[:, logits.size(1) - input_ids.size(1) :][mask]
    picked = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked, mask.nonzero()[:, 0]


def target_logprobs(
    model: Any, tokenizer: Any, prompt_format: PromptFormat, rows: pd.DataFrame, batch_size: int
) -> tuple[Any, Any]:
    """(summed log-probability of each row's target tokens given its prompt, its number of target tokens): teacher
    forcing, nothing truncated. The one scorer behind evaluation's loss and the preference pairs' log-probabilities."""
    import numpy as np
    import torch

    encoded = encode_rows(rows, tokenizer, prompt_format, max_tokens=10**9)
    sums: list[float] = []
    counts: list[int] = []
    model.eval()
    with torch.no_grad():
        for input_ids, attention_mask, labels in batches_of(
            encoded.input_ids, encoded.labels, batch_size, tokenizer.pad_token_id
        ):
            picked, rows_of = target_token_logprobs(model, input_ids, attention_mask, labels)
            sums.extend(torch.zeros(len(input_ids), dtype=picked.dtype).index_add_(0, rows_of, picked).tolist())
            counts.extend(torch.bincount(rows_of, minlength=len(input_ids)).tolist())
    return np.array(sums, dtype=float), np.array(counts, dtype=int)
