from transformers import AutoTokenizer

from tests.conftest import REPO
from tunegate.lm.prompting import PromptFormat, PromptPair

BASE_MODEL = REPO / "demo" / "base_model"
CHAT_ROW = {
    "shape": "chat",
    "prompt": "system: be brief\nuser: where is my order?",
    "completion": "It ships today.",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "where is my order?"},
        {"role": "assistant", "content": "It ships today."},
    ],
}


def test_plain_template_for_tokenizers_without_a_chat_template():
    plain = PromptFormat(chat_template=None, eos_token="</s>")
    assert plain.format_row({"shape": "alpaca", "prompt": "Summarize\n\nthe text", "completion": "ok"}) == PromptPair(
        prompt="### Instruction:\nSummarize\n\nthe text\n\n### Response:\n", target="ok</s>"
    )
    assert plain.format_row({"shape": "text", "prompt": "", "completion": "all target"}) == PromptPair(
        "", "all target</s>"
    )


def test_chat_template_renders_like_the_tokenizer_itself():
    tokenizer = AutoTokenizer.from_pretrained(BASE_MODEL)
    chat = PromptFormat.from_tokenizer(tokenizer)
    pair = chat.format_row(CHAT_ROW)
    assert pair == PromptPair(
        prompt="<|system|>\nbe brief<|end|>\n<|user|>\nwhere is my order?<|end|>\n<|assistant|>\n",
        target="It ships today.<|end|>",
    )
    expected = tokenizer.apply_chat_template(CHAT_ROW["messages"][:-1], tokenize=False, add_generation_prompt=True)
    assert pair.prompt == expected
    assert chat.format_prompt("refund?") == "<|user|>\nrefund?<|end|>\n<|assistant|>\n"


def test_format_is_saved_with_the_model_and_loads_back(tmp_path):
    chat = PromptFormat.from_tokenizer(AutoTokenizer.from_pretrained(BASE_MODEL))
    chat.save(tmp_path)
    assert PromptFormat.load(tmp_path) == chat


def test_a_chat_shaped_pair_is_prompted_with_its_whole_conversation():
    from tunegate.lm.prompting import conversation_before_answer

    turns = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Parcel?"},
    ]
    pair = {"shape": "preference", "prompt": "user: Hi", "completion": "On its way.", "messages": turns}
    assert conversation_before_answer(pair) == turns
    assert conversation_before_answer({**pair, "shape": "chat"}) == turns[:-1]
    assert conversation_before_answer({**pair, "messages": None}) == [{"role": "user", "content": "user: Hi"}]


def test_a_configured_system_prompt_opens_every_conversation_without_one():
    chat = PromptFormat.from_tokenizer(AutoTokenizer.from_pretrained(BASE_MODEL), system_prompt="Classify tickets.")
    ticket = {"shape": "prompt_completion", "prompt": "refund?", "completion": "billing"}
    assert (
        chat.format_row(ticket).prompt
        == "<|system|>\nClassify tickets.<|end|>\n<|user|>\nrefund?<|end|>\n<|assistant|>\n"
    )
    assert chat.format_row(CHAT_ROW).prompt.startswith("<|system|>\nbe brief<|end|>\n<|user|>")  # its own stays
    empty = PromptFormat.from_tokenizer(AutoTokenizer.from_pretrained(BASE_MODEL), system_prompt="")
    assert empty.format_prompt("refund?") == "<|system|>\n<|end|>\n<|user|>\nrefund?<|end|>\n<|assistant|>\n"
    plain = PromptFormat(chat_template=None, eos_token="</s>", system_prompt="Be brief.")
    assert plain.format_prompt("refund?") == "Be brief.\n\n### Instruction:\nrefund?\n\n### Response:\n"


def test_the_system_prompt_is_saved_with_the_model(tmp_path):
    saved = PromptFormat(chat_template=None, eos_token="</s>", system_prompt="")
    saved.save(tmp_path)
    assert PromptFormat.load(tmp_path) == saved
