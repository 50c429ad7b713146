"""The README's configuration table is the one the config model writes: every field, its default, its description."""

from tests.conftest import REPO
from tunegate.config.pipeline import PipelineConfig
from tunegate.config.reference import TABLE_HEADER, field_rows, reference_table


def readme_configuration_table() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index(TABLE_HEADER)
    return readme[start : readme.index("\n\n", start)]


def test_the_readme_holds_the_table_the_config_model_writes():
    # After a config change: python -m tunegate.config.reference, and paste its output over the README's table.
    assert readme_configuration_table() == reference_table()


def test_sections_lists_and_required_fields_read_as_such():
    rows = {path: (default, description) for path, default, description in field_rows(PipelineConfig)}
    assert rows["data"][0] == "section" and rows["data.sources"][0] == "list of section"
    assert rows["data.sources[].path"][0] == "required"
    assert rows["sweep.lora_ranks"][0] == "[4, 8, 16, 32]" and rows["sweep.learning_rate_min"][0] == "None"
    assert rows["eval.retention.rows"] == ("100", "Retention prompts used (the first N); 0 turns drift off.")
    assert all(description for _, description in rows.values())
