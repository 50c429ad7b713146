import json

import great_expectations as gx
import pandas as pd

from data_checks.contract import SUITES_DIR, columns_checked, row_suite_names, run_suites


def test_suite_files_are_valid_gx_suites_with_unique_check_names():
    names = []
    for path in sorted(SUITES_DIR.glob("*.json")):
        document = json.loads(path.read_text())
        suite = gx.ExpectationSuite(**document)
        assert suite.name == path.stem
        names += [e["meta"]["check"] for e in document["expectations"]]
    assert len(names) == len(set(names)) == 19


def test_chat_role_rule_accepts_system_then_alternating_turns_only(tmp_path):
    sequences = [
        "user,assistant",
        "system,user,assistant",
        "user,assistant,user,assistant",
        "assistant,user",
        "user,user,assistant",
        "system,user",
        "user,agent",
        "user,assistant,system,user,assistant",
    ]
    frame = pd.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(len(sequences))],
            "shape": "chat",
            "prompt": "p",
            "completion": "c",
            "chat_roles": sequences,
        }
    )
    parameters = {"min_prompt_chars": 0, "max_prompt_chars": 10, "min_completion_chars": 0, "max_completion_chars": 10}
    outcome = run_suites(frame, ["canonical_rows"], parameters, tmp_path, "roles", build_docs=False)
    failing = sorted(r for r, checks in outcome.failed_checks_by_row.items() if "chat_roles_and_turn_order" in checks)
    assert failing == ["r3", "r4", "r5", "r6", "r7"]


def test_row_suites_read_only_the_columns_they_check_and_their_row_conditions():
    # raw and messages (the bulk of a row) are never handed to GX's row checks.
    assert columns_checked(row_suite_names(False, False)) == [
        "chat_roles",
        "completion",
        "prompt",
        "rejected",
        "replies_differ",
        "row_id",
        "shape",
    ]
    assert columns_checked(row_suite_names(True, True)) == [
        "chat_roles",
        "completion",
        "labelled",
        "prompt",
        "rejected",
        "replies_differ",
        "row_id",
        "shape",
        "total_tokens",
    ]
