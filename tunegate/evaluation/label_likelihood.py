"""Label-likelihood scoring: the label whose tokens the model finds most likely after the prompt.

Greedy exact match asks whether a model *answers* with the label; a real instruct base before tuning never does
(SmolLM2 answers "The customer message is: ..."), so its greedy accuracy is 0 whatever it knows. Scoring each label
as a continuation of the prompt, the way lm-eval scores multiple choice, asks what the model knows regardless of
its answer format, and scores base and tuned alike. A label's score is the summed log-probability of its tokens
and the end-of-sequence token after them (the same target tokens training teaches: `label<eos>`), so a label that
is a prefix of another is not favoured for being short.

The prompt runs once per row; after it, the labels' tokens run as one prefix tree (`label_tree`: shared prefixes
such as `billing-` fed once, each node attending to its prompt and its own ancestors through a custom attention
mask): rows x (prompt + tree nodes) instead of rows x labels x (prompt + label). On the 42 support intents
(SmolLM2, 32 prompts, 2 CPU cores) that is 155 tokens a prompt, and 12.9 s a batch against 43.1 s for the previous
way, the prompt's cache repeated for each label (`batch_repeat_interleave`: 420 padded tokens a prompt, 42 copies
of the cache), which stays for attention implementations that take no custom mask (flash attention). Models whose
sequence the cache cannot continue (PEFT's virtual-token methods) score the full (prompt, label) rows instead.
Evaluation needs the greedy answers too: `generations_and_label_logprobs` scores the labels on the cache `generate`
leaves behind, so each prompt runs once for both (the same answers and the same scores to the last bit as apart).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tunegate.evaluation.scoring import by_length, generate
from tunegate.lm.prompting import PromptFormat
from tunegate.lm.sft_data import takes_target_mask, target_logprobs, token_ids

if TYPE_CHECKING:
    import torch


def label_choices(
    model: Any, tokenizer: Any, prompt_format: PromptFormat, rows: pd.DataFrame, labels: list[str], batch_size: int
) -> list[str]:
    """The most likely label for each row (its prompt as training and generation format it)."""
    if not len(rows):
        return []
    scores = label_logprobs(model, tokenizer, prompt_format, rows, labels, batch_size)
    return [labels[i] for i in scores.argmax(axis=1)]


def label_target_ids(tokenizer: Any, prompt_format: PromptFormat, labels: list[str]) -> list[list[int]]:
    """Each label's target tokens as training teaches them: the label, then the eos."""
    return token_ids(tokenizer, [prompt_format.format_row(label_row(x)).target for x in labels], False)


def label_token_counts(tokenizer: Any, prompt_format: PromptFormat, labels: list[str]) -> list[int]:
    """How many target tokens each label is scored on (its tokens and the eos)."""
    return [len(ids) for ids in label_target_ids(tokenizer, prompt_format, labels)]


def label_logprobs(
    model: Any, tokenizer: Any, prompt_format: PromptFormat, rows: pd.DataFrame, labels: list[str], batch_size: int
) -> np.ndarray:
    """(rows, labels) summed log-probability of each label's target tokens (label + eos) after each row's prompt."""
    if not takes_target_mask(model):
        return expanded_row_logprobs(model, tokenizer, prompt_format, rows, labels, batch_size)
    import torch

    prompts = [prompt_format.format_row(row).prompt for row in rows.to_dict("records")]
    label_ids = label_target_ids(tokenizer, prompt_format, labels)
    order = by_length(token_ids(tokenizer, prompts, True))
    scores = torch.zeros(len(prompts), len(labels))
    model.eval()
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            chosen = order[start : start + batch_size]
            scores[chosen] = batch_label_logprobs(model, tokenizer, [prompts[i] for i in chosen], label_ids)
    return scores.numpy()


def label_row(label: str) -> dict[str, Any]:
    return {"shape": "prompt_completion", "prompt": "", "completion": label}


def generations_and_label_logprobs(
    model: Any,
    tokenizer: Any,
    prompt_format: PromptFormat,
    rows: pd.DataFrame,
    labels: list[str],
    max_new_tokens: int,
    batch_size: int,
) -> tuple[list[str], np.ndarray]:
    """Greedy answers (`scoring.generate`, unchanged) and the (rows, labels) label scores of `label_logprobs`, from
    one pass over each prompt: the labels are scored on the cache and first-step logits `generate` leaves behind.
    Evaluating a labelled task needs both; apart they run every prompt through the model twice (200 demo
    tickets on SmolLM2: ~25 s a pass on 2 CPU cores)."""
    import torch

    prompts = [prompt_format.format_row(row).prompt for row in rows.to_dict("records")]
    if not takes_target_mask(model):
        generations = generate(model, tokenizer, prompts, max_new_tokens, batch_size)
        return generations, expanded_row_logprobs(model, tokenizer, prompt_format, rows, labels, batch_size)
    label_ids = label_target_ids(tokenizer, prompt_format, labels)
    scores = torch.zeros(len(prompts), len(labels))

    def score_labels(chosen: list[int], batch: Any, generated: Any) -> None:
        cache, width = generated.cache, batch["input_ids"].shape[1]
        try:
            if cache.get_seq_length() > width:
                cache.crop(width - cache.get_seq_length())  # the prompts only: the answers' tokens go
        except (ValueError, RuntimeError):  # a sliding-window layer past its window cannot roll back: score apart
            scores[chosen] = batch_label_logprobs(model, tokenizer, [prompts[i] for i in chosen], label_ids)
            return
        first = torch.log_softmax(generated.logits[0].float(), dim=-1)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        scores[chosen] = labels_after_prompts(model, first, cache, batch["attention_mask"], label_ids, pad)

    model.eval()
    generations = generate(model, tokenizer, prompts, max_new_tokens, batch_size, after_prompts=score_labels)
    return generations, scores.numpy()


def batch_label_logprobs(model: Any, tokenizer: Any, prompts: list[str], label_ids: list[list[int]]) -> torch.Tensor:
    """(prompts, labels) log-probabilities for one batch: the prompts left-padded through the model once, every
    label's tokens scored in one more forward."""
    first, cache, prompt_mask, pad = prompts_through_model(model, tokenizer, prompts)
    return labels_after_prompts(model, first, cache, prompt_mask, label_ids, pad)


def prompts_through_model(
    model: Any, tokenizer: Any, prompts: list[str]
) -> tuple[torch.Tensor, Any, torch.Tensor, int]:
    """One left-padded forward of the prompts: the (prompts, vocab) log-distribution after each, their key/value
    cache, the padding mask and the pad id."""
    import torch

    device = next(model.parameters()).device
    encoded = token_ids(tokenizer, prompts, True)
    width = max(len(ids) for ids in encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in encoded], device=device)
    prompt_mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in encoded], device=device)
    # Positions count real tokens only: a left-padded row sees the positions it would see alone.
    positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=input_ids, attention_mask=prompt_mask, position_ids=positions, use_cache=True, logits_to_keep=1
    )
    first = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V): the distribution of each label's 1st token
    cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    return first, cache, prompt_mask, pad


def labels_after_prompts(
    model: Any, first: torch.Tensor, cache: Any, prompt_mask: torch.Tensor, label_ids: list[list[int]], pad: int
) -> torch.Tensor:
    """(prompts, labels) log-probabilities given the prompts' cache (left-padded, `prompt_mask`) and `first`, the
    (prompts, vocab) log-distribution after each prompt: every label's tokens scored in one more forward, as a token
    tree where the attention implementation takes a custom mask and the cache keeps every prompt token, else on
    the cache repeated per label."""
    mask_kind, tree = tree_mask_kind(model), label_tree(label_ids)
    if mask_kind is None or not windows_hold(cache, prompt_mask.shape[1] + len(tree.tokens)):
        return labels_on_repeated_cache(model, first, cache, prompt_mask, label_ids, pad)
    return labels_on_token_tree(model, first, cache, prompt_mask, tree, mask_kind)


def windows_hold(cache: Any, length: int) -> bool:
    """Whether every sliding-window layer of the cache (Gemma 3: 512 tokens on 5 layers of 6) still sees the first of
    `length` tokens from the last: a layer past its window keeps only its last tokens, and a mask over all of them
    would not fit it."""
    windows = [getattr(layer, "sliding_window", None) for layer in getattr(cache, "layers", [])]
    return all(length < window for window in windows if window)


@dataclass(frozen=True)
class LabelTree:
    """The labels' target tokens as a prefix tree: each shared prefix is fed to the model once.

    A node is a prefix of at least one label that is not a whole label; the model reads its last token and
    predicts the next one of every label below it. The 42 support intents (`billing-…`, 7 to a family) are 281
    target tokens, padded to 420 in a labels x longest grid, and 155 tree nodes."""

    tokens: list[int]  # the token each node feeds
    depths: list[int]  # how many tokens after the prompt each node sits (0: a label's first token)
    sees: list[list[bool]]  # sees[i][j]: node j is node i or above it, so i attends to j
    first_tokens: list[int]  # each label's first token, scored on the distribution after the prompt
    scored: list[tuple[int, int, int]]  # (label, node, token): each later token of a label, predicted at a node


def label_tree(label_ids: list[list[int]]) -> LabelTree:
    """The prefix tree of `label_ids`; nodes sorted, so a node's ancestors come before it.

    >>> tree = label_tree([[5, 7, 2], [5, 8, 2], [6, 2]])
    >>> tree.tokens, tree.depths, tree.scored
    ([5, 7, 8, 6], [0, 1, 1, 0], [(0, 0, 7), (0, 1, 2), (1, 0, 8), (1, 2, 2), (2, 3, 2)])
    >>> tree.sees[1], tree.sees[3]
    ([True, True, False, False], [False, False, False, True])
    """
    prefixes = sorted({tuple(ids[:k]) for ids in label_ids for k in range(1, len(ids))})
    node = {prefix: i for i, prefix in enumerate(prefixes)}
    return LabelTree(
        tokens=[prefix[-1] for prefix in prefixes],
        depths=[len(prefix) - 1 for prefix in prefixes],
        sees=[[prefix[: len(other)] == other for other in prefixes] for prefix in prefixes],
        first_tokens=[ids[0] for ids in label_ids],
        scored=[
            (label, node[tuple(ids[:k])], ids[k]) for label, ids in enumerate(label_ids) for k in range(1, len(ids))
        ],
    )


def tree_mask_kind(model: Any) -> str | None:
    """How this model's attention takes a custom (batch, 1, query, key) mask: SDPA as booleans, eager as additive
    floats; None for the rest (flash attention takes no arbitrary mask), which score on a repeated cache instead."""
    implementation = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return {"sdpa": "bool", "eager": "additive"}.get(implementation)


def labels_on_token_tree(
    model: Any, first: torch.Tensor, cache: Any, prompt_mask: torch.Tensor, tree: LabelTree, mask_kind: str
) -> torch.Tensor:
    """Every label scored in one forward of the tree's nodes after each prompt's cache: a node attends to its
    prompt's real tokens and to its own ancestors, at the position it would hold after the prompt alone.

    Against the cache repeated per label (42 labels, SmolLM2, 32 prompts of ~100 tokens, 2 CPU cores): 155 tokens
    a prompt instead of 420 and no 42 copies of the cache."""
    import torch

    device, batch = prompt_mask.device, len(prompt_mask)
    first_picked = first[:, tree.first_tokens]
    if not tree.tokens:  # every label is a single token
        return first_picked.cpu()
    nodes = len(tree.tokens)
    tokens = torch.tensor(tree.tokens, device=device).expand(batch, nodes)
    positions = prompt_mask.sum(-1, keepdim=True) + torch.tensor(tree.depths, device=device)
    sees = torch.tensor(tree.sees, device=device).expand(batch, 1, nodes, nodes)
    mask = torch.cat([prompt_mask.bool()[:, None, None, :].expand(batch, 1, nodes, -1), sees], dim=-1)
    if mask_kind == "additive":
        dtype = next(model.parameters()).dtype
        mask = torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(~mask, torch.finfo(dtype).min)
    logits = model(input_ids=tokens, attention_mask=mask, position_ids=positions, cache=cache).logits
    labels, at, token = (torch.tensor(column, device=device) for column in zip(*tree.scored, strict=True))
    picked = logits[:, at, token].float() - torch.logsumexp(logits.float(), dim=-1)[:, at]
    return first_picked.index_add(1, labels, picked).cpu()


def labels_on_repeated_cache(
    model: Any, first: torch.Tensor, cache: Any, prompt_mask: torch.Tensor, label_ids: list[list[int]], pad: int
) -> torch.Tensor:
    """The labels scored on the cache repeated per label, each label's tokens a row of one more forward."""
    import torch

    device = prompt_mask.device
    n_labels, longest = len(label_ids), max(len(ids) for ids in label_ids)
    cache.batch_repeat_interleave(n_labels)
    label_tokens = torch.tensor([ids + [pad] * (longest - len(ids)) for ids in label_ids], device=device)
    label_mask = torch.tensor([[1] * len(ids) + [0] * (longest - len(ids)) for ids in label_ids], device=device)
    batch = len(prompt_mask)
    tokens = label_tokens.repeat(batch, 1)  # row-major: prompt 0's labels, then prompt 1's, ...
    mask = torch.cat([prompt_mask.repeat_interleave(n_labels, 0), label_mask.repeat(batch, 1)], dim=1)
    start = prompt_mask.sum(-1).repeat_interleave(n_labels).unsqueeze(1)
    label_positions = start + torch.arange(longest, device=device).unsqueeze(0)
    logits = model(input_ids=tokens, attention_mask=mask, position_ids=label_positions, cache=cache).logits
    following = torch.log_softmax(logits[:, :-1].float(), dim=-1).gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)
    first_picked = first.repeat_interleave(n_labels, 0).gather(-1, tokens[:, :1]).squeeze(-1)
    total = first_picked + (following * label_mask.repeat(batch, 1)[:, 1:]).sum(-1)
    return total.view(batch, n_labels).cpu()


def expanded_row_logprobs(
    model: Any, tokenizer: Any, prompt_format: PromptFormat, rows: pd.DataFrame, labels: list[str], batch_size: int
) -> np.ndarray:
    """The same scores by teacher forcing every (row, label) pair in full: for models the cache path cannot serve."""
    expanded = rows.loc[rows.index.repeat(len(labels))].reset_index(drop=True).copy()
    expanded["completion"] = labels * len(rows)
    sums, _ = target_logprobs(model, tokenizer, prompt_format, expanded, batch_size)
    return sums.reshape(len(rows), len(labels))
