import json

from tasks.ingest import fingerprint_sources, ingest_sources
from tasks.validate import validate_rows
from tests.conftest import write_text
from tunegate.config.data import SourceConfig, TaskConfig, ValidationConfig

GOOD = [{"prompt": f"ticket number {i} about my order", "completion": "billing"} for i in range(8)]


def run_validation(tmp_path, records, validation=None, task=None, labelled=True, extra_lines=""):
    lines = "\n".join(json.dumps(r) for r in records) + "\n" + extra_lines
    source = SourceConfig(path=write_text(tmp_path / "d.jsonl", lines), labelled=labelled)
    home = str(tmp_path / "home")
    ingested = ingest_sources.fn([source], fingerprint_sources.fn([source]), home)
    return validate_rows.fn(
        ingested,
        validation or ValidationConfig(min_rows=5, max_quarantine_fraction=0.5),
        task or TaskConfig(labels=["billing", "shipping"]),
        home,
    )


def quarantine(result) -> dict[int, list[str]]:
    with open(result.quarantine_path) as handle:
        return {r["source_line"]: r["checks"] for r in map(json.loads, handle)}


def test_failing_rows_are_quarantined_with_every_failed_check(tmp_path):
    bad = [
        {"prompt": "   ", "completion": "billing"},
        {"prompt": "x" * 300, "completion": "refunds"},
        {"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "hello"}]},
        {
            "messages": [
                {"role": "system", "content": "s"},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "shipping"},
            ]
        },
    ]
    result = run_validation(
        tmp_path,
        GOOD + bad,
        ValidationConfig(min_rows=5, max_quarantine_fraction=0.5, max_prompt_chars=200),
        extra_lines='{"prompt": "not closed\n',
    )
    assert quarantine(result) == {
        9: ["prompt_not_blank"],
        10: ["prompt_length_chars", "label_in_label_set"],
        11: ["completion_present", "chat_roles_and_turn_order"],
        13: ["invalid JSON at column 12: Unterminated string starting at"],
    }
    assert (result.valid.rows, result.quarantined, result.rejected_at_ingest) == (9, 4, 1)
    assert result.success and result.failure_reason is None
    assert result.failures_by_check["label_in_label_set"] == 1
    assert result.data_docs.endswith("gx/uncommitted/data_docs/local_site/index.html")


def test_unlabelled_rows_skip_the_label_check(tmp_path):
    records = GOOD + [{"prompt": "free", "completion": "any reply at all"}]
    result = run_validation(tmp_path, records, labelled=False)
    assert quarantine(result) == {}
    assert result.valid.rows == 9


def test_too_few_valid_rows_fails_with_one_line(tmp_path):
    result = run_validation(tmp_path, GOOD[:3], ValidationConfig(min_rows=5, max_quarantine_fraction=0.5))
    assert not result.success
    assert result.failure_reason == "only 3 valid rows, data.validation.min_rows expects at least 5"


def test_quarantine_fraction_above_threshold_names_first_offending_lines(tmp_path):
    records = GOOD[:6] + [{"prompt": "", "completion": "billing"}] * 2 + [{"prompt": "p", "completion": "nope"}]
    result = run_validation(tmp_path, records, ValidationConfig(min_rows=1, max_quarantine_fraction=0.2))
    assert not result.success
    path = str(tmp_path / "d.jsonl")
    assert result.failure_reason == (
        "quarantined 3 of 9 rows (33.3%), above data.validation.max_quarantine_fraction=20.0%; first: "
        f"{path} line 7: prompt_not_blank, prompt_length_chars; {path} line 8: prompt_not_blank, "
        f"prompt_length_chars; {path} line 9: label_in_label_set"
    )


def tiny_tokenizer(directory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    model = Tokenizer(models.WordLevel(vocab={"[UNK]": 0, "order": 1}, unk_token="[UNK]"))
    model.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=model, unk_token="[UNK]").save_pretrained(directory)
    return str(directory)


def test_token_length_is_checked_when_a_tokenizer_is_configured(tmp_path):
    tokenizer = tiny_tokenizer(tmp_path / "tok")
    long_one = {"prompt": "word " * 30, "completion": "billing"}  # 31 tokens; GOOD rows have 7
    validation = ValidationConfig(min_rows=5, max_quarantine_fraction=0.5, tokenizer=tokenizer, max_tokens=20)
    result = run_validation(tmp_path, GOOD + [long_one], validation)
    assert quarantine(result) == {9: ["total_tokens_within_limit"]}


def test_preference_pairs_need_two_different_non_empty_replies(tmp_path):
    pair = {"prompt": "Where is my parcel?", "chosen": "billing", "rejected": "shipping"}
    bad = [
        {**pair, "rejected": "  BILLING "},  # the same reply after trimming and lower-casing
        {**pair, "rejected": "   "},
        {key: value for key, value in pair.items() if key != "rejected"},
        {**pair, "rejected": "r" * 300},
    ]
    result = run_validation(
        tmp_path,
        GOOD + [pair] * 2 + bad,
        ValidationConfig(min_rows=5, max_quarantine_fraction=0.5, max_completion_chars=200),
    )
    assert quarantine(result) == {
        11: ["chosen_differs_from_rejected"],
        12: ["rejected_not_blank"],
        13: ["rejected_present"],
        14: ["rejected_length_chars"],
    }
    assert result.valid.rows == 10 and result.success


def test_a_chat_shaped_pair_must_end_its_conversation_with_the_users_turn(tmp_path):
    system = {"role": "system", "content": "Be kind."}
    asks = [system, {"role": "user", "content": "Where is my parcel?"}]
    pair = {"messages": asks, "chosen": {"role": "assistant", "content": "On its way."}, "rejected": "No idea."}
    answered = [*asks, {"role": "assistant", "content": "Let me check."}]
    result = run_validation(
        tmp_path,
        GOOD + [pair, {**pair, "messages": answered}],
        ValidationConfig(min_rows=5, max_quarantine_fraction=0.5),
        labelled=False,
    )
    assert quarantine(result) == {10: ["pair_roles_and_turn_order"]}
    valid = result.valid.read()
    assert valid.iloc[-1][["shape", "completion", "rejected", "chat_roles"]].tolist() == [
        "preference",
        "On its way.",
        "No idea.",
        "system,user",
    ]
