"""Build the demo base model: a small Llama-architecture causal LM, pretrained on generated support text.

    python demo/make_base_model.py            # writes demo/base_model/ (seeded; ~10 minutes on 2 CPU cores)

The corpus comes from the demo dataset's generator with other seeds: support tickets, agent replies and
chat conversations rendered with the model's chat template. It never sees a category label attached to
a ticket, so the label task is something fine-tuning has to teach. Outputs (safetensors weights, a
byte-level BPE tokenizer with a chat template, a model card with the held-out perplexity) load with
`AutoModelForCausalLM.from_pretrained` / `AutoTokenizer.from_pretrained` like any Hub model.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import make_support_dataset as support  # noqa: E402

OUT_DIR = Path(__file__).parent / "base_model"
CORPUS_SEED, HELDOUT_SEED, TRAIN_SEED = 1, 2, 3
# Byte-level BPE with a prefix space (GPT-2 style): a word at the start of an answer tokenizes like the same
# word mid-sentence. With 2,048 tokens and no prefix space, answers were shredded into 3-6 fragments each and
# LoRA learned them ~4x slower (val loss 4.6 vs 2.5 after 100 steps on the demo labels).
VOCAB_SIZE = 4096
SEQUENCE_TOKENS = 128
BATCH_SEQUENCES = 32  # 4,096 tokens a step
STEPS = 700
PEAK_LR, WARMUP_STEPS = 3e-3, 50
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def short_answer_conversation(rng: random.Random) -> str:
    """A ticket with a factual question whose answer is a few words (never its category)."""
    product, carrier, order = (
        rng.choice(support.PRODUCTS),
        rng.choice(support.CARRIERS),
        str(rng.randint(100000, 999999)),
    )
    ticket = support.make_ticket(rng.choice(support.LABELS), rng)
    question, answer = rng.choice(
        [
            (f"{ticket} The {product} is the item in question. Which product is this about?", product),
            (f"{ticket} It was sent with {carrier}. Which carrier shipped it?", carrier),
            (f"{ticket} My order number is #{order}. What is the order number?", order),
            (f"{ticket} Is this message written in English?", "yes"),
        ]
    )
    return f"<|user|>\n{question}<|end|>\n<|assistant|>\n{answer}<|end|>\n"


def corpus(seed: int, documents: int) -> list[str]:
    """Tickets, replies, rendered conversations and short-answer conversations; no category labels."""
    rng = random.Random(seed)
    texts = []
    for _ in range(documents):
        kind = rng.random()
        if kind < 0.15:
            texts.append(short_answer_conversation(rng))
        elif kind < 0.45:
            texts.append(support.make_ticket(rng.choice(support.LABELS), rng))
        elif kind < 0.6:
            texts.append(" ".join(support.fill(s, rng) for s in rng.sample(support.REPLY_SENTENCES, rng.randint(2, 4))))
        else:
            messages = support.make_conversation(rng)
            texts.append("".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages))
    return texts


def train_tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    model = Tokenizer(models.BPE())
    model.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    model.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    model.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=model, bos_token="<|bos|>", eos_token="<|end|>", pad_token="<|pad|>", unk_token=None
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_model(tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=192,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=6,  # head_dim 32
        num_key_value_heads=2,  # grouped-query attention, as in current Llama/Qwen models
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(TRAIN_SEED)
    return LlamaForCausalLM(config)


def packed_blocks(tokenizer, texts: list[str]) -> torch.Tensor:
    """All documents, each followed by <|end|>, concatenated and cut into SEQUENCE_TOKENS blocks."""
    ids = []
    for encoded in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(encoded + [tokenizer.eos_token_id])
    usable = len(ids) // SEQUENCE_TOKENS * SEQUENCE_TOKENS
    return torch.tensor(ids[:usable]).view(-1, SEQUENCE_TOKENS)


def learning_rate(step: int) -> float:
    if step < WARMUP_STEPS:
        return PEAK_LR * (step + 1) / WARMUP_STEPS
    progress = (step - WARMUP_STEPS) / max(STEPS - WARMUP_STEPS, 1)
    return PEAK_LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def pretrain(model, blocks: torch.Tensor) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=PEAK_LR, weight_decay=0.1, betas=(0.9, 0.95))
    generator = torch.Generator().manual_seed(TRAIN_SEED)
    losses, started = [], time.perf_counter()
    model.train()
    for step in range(STEPS):
        batch = blocks[torch.randint(len(blocks), (BATCH_SEQUENCES,), generator=generator)]
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step)
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 50 == 0 or step == STEPS - 1:
            rate = (step + 1) * BATCH_SEQUENCES * SEQUENCE_TOKENS / (time.perf_counter() - started)
            print(f"step {step:4d}  loss {loss.item():.3f}  {rate:,.0f} tokens/s", flush=True)
    return losses


@torch.no_grad()
def perplexity(model, blocks: torch.Tensor) -> float:
    model.eval()
    losses = [
        model(input_ids=blocks[i : i + 64], labels=blocks[i : i + 64]).loss.item() for i in range(0, len(blocks), 64)
    ]
    return math.exp(sum(losses) / len(losses))


def main() -> None:
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    train_texts, heldout_texts = corpus(CORPUS_SEED, 30_000), corpus(HELDOUT_SEED, 1_000)
    tokenizer = train_tokenizer(train_texts)
    model = build_model(tokenizer)
    train_blocks, heldout_blocks = packed_blocks(tokenizer, train_texts), packed_blocks(tokenizer, heldout_texts)
    untrained = perplexity(model, heldout_blocks)
    losses = pretrain(model, train_blocks)
    heldout = perplexity(model, heldout_blocks)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(OUT_DIR, safe_serialization=True)
    tokenizer.save_pretrained(OUT_DIR)
    stats = {
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_tokens": int(train_blocks.numel()),
        "tokens_seen": STEPS * BATCH_SEQUENCES * SEQUENCE_TOKENS,
        "final_train_loss": round(sum(losses[-20:]) / 20, 4),
        "heldout_perplexity": round(heldout, 3),
        "heldout_perplexity_untrained": round(untrained, 1),
    }
    (OUT_DIR / "training_stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    (OUT_DIR / "README.md").write_text(model_card(stats))
    print(json.dumps(stats))


def model_card(stats: dict) -> str:
    return f"""# tunegate demo base model

A small Llama-architecture causal language model, pretrained from scratch on CPU by
`demo/make_base_model.py` (seeded) so the demo pipeline has a real base model without downloading one.

- Architecture: `LlamaForCausalLM`, 4 layers, hidden size 192, 6 attention heads with 2 key/value heads
  (grouped-query attention), SwiGLU MLP of 512, tied input/output embeddings;
  {stats["parameters"]:,} parameters, fp32.
- Tokenizer: byte-level BPE with a prefix space, {VOCAB_SIZE} tokens plus {len(SPECIAL_TOKENS)} special tokens;
  chat template
  `<|role|>\\ncontent<|end|>\\n`, generation prompt `<|assistant|>\\n`; `<|end|>` is end-of-sequence.
- Training data: {stats["train_tokens"]:,} tokens of generated customer-support text (tickets, agent
  replies, chat conversations) from `demo/make_support_dataset.py` with seed {CORPUS_SEED} (the demo dataset
  uses another seed). No ticket is paired with its category label.
- Training: {STEPS} steps of {BATCH_SEQUENCES} x {SEQUENCE_TOKENS} tokens ({stats["tokens_seen"]:,} tokens seen),
  AdamW (peak lr {PEAK_LR}, {WARMUP_STEPS} warm-up steps, cosine to 10%), weight decay 0.1, gradient clipping 1.0.
- Held-out perplexity (1,000 documents generated with seed {HELDOUT_SEED}): **{stats["heldout_perplexity"]}**
  (untrained: {stats["heldout_perplexity_untrained"]}); final training loss {stats["final_train_loss"]}.

Load it like any model: `AutoModelForCausalLM.from_pretrained("demo/base_model")`,
`AutoTokenizer.from_pretrained("demo/base_model")`. It is a demo model: it writes plausible support text
and knows nothing else.
"""


if __name__ == "__main__":
    main()
