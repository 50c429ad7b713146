from pathlib import Path

import pytest

from tunegate.config import PipelineConfig, load_config
from tunegate.errors import InputError

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "deployments" / "demo.yaml"


def test_demo_config_loads_with_its_values():
    config = load_config(DEMO_CONFIG)
    assert config.name == "support-demo"
    assert [s.path for s in config.data.sources] == ["demo/data/tickets.csv", "demo/data/replies.jsonl"]
    assert config.data.sources[0].columns == {"text": "prompt", "category": "completion"}
    assert config.data.dedup.threshold == 0.85
    assert config.task.labels == ["billing", "shipping", "returns", "technical", "account", "product"]


def test_overrides_parse_as_yaml_and_reach_nested_and_list_fields():
    config = load_config(
        DEMO_CONFIG,
        ["data.dedup.threshold=0.9", "data.sources.1.path=other.jsonl", "task.labels=[a, b]", "home=/tmp/x"],
    )
    assert config.data.dedup.threshold == 0.9
    assert config.data.sources[1].path == "other.jsonl"
    assert config.task.labels == ["a", "b"]
    assert config.home == "/tmp/x"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.dedup.threshold=1.5", "field data.dedup.threshold: Input should be less than or equal to 1"),
        ("data.dedup.treshold=0.9", "field data.dedup.treshold: Extra inputs are not permitted"),
        ("data.sources.7.path=x", "--set data.sources.7: expected an index below 2, got '7'"),
        ("novalue", "--set 'novalue': expected key.path=value"),
        ("task.labels=null", "demo.yaml: task.labels is empty but sources ['demo/data/tickets.csv'] are labelled"),
    ],
)
def test_bad_overrides_are_one_line_errors_naming_the_field(override, message):
    with pytest.raises(InputError) as error:
        load_config(DEMO_CONFIG, [override])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(InputError, match=r"nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata: [unclosed\n")
    with pytest.raises(InputError, match=r"bad.yaml line 3: not valid YAML"):
        load_config(bad)


def every_field(model, prefix=""):
    for name, field in model.model_fields.items():
        yield f"{prefix}{name}", field
        annotation = field.annotation
        for candidate in getattr(annotation, "__args__", ()) + (annotation,):
            if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
                yield from every_field(candidate, f"{prefix}{name}.")


def test_every_config_field_has_a_description():
    fields = dict(every_field(PipelineConfig))
    assert "data.dedup.threshold" in fields and "data.sources.columns" in fields
    assert [name for name, field in fields.items() if not field.description] == []


def test_the_config_json_schema_carries_descriptions_for_the_prefect_form():
    schema = PipelineConfig.model_json_schema()
    dedup = schema["$defs"]["DedupConfig"]["properties"]["threshold"]
    assert dedup["description"].startswith("Jaccard similarity of word shingles")
    assert dedup["default"] == 0.85


def test_a_password_in_a_config_file_is_refused_and_the_environment_named(tmp_path):
    config = tmp_path / "team.yaml"
    config.write_text(DEMO_CONFIG.read_text() + "sweep:\n  storage: postgresql://tunegate:s3cret@db:5433/optuna\n")
    with pytest.raises(InputError) as raised:
        load_config(config)
    assert str(raised.value) == (
        f"{config}: sweep.storage holds a password (postgresql://tunegate:***@db:5433/optuna); keep secrets out of "
        "config files: drop it from the URL and set PGPASSWORD in the environment"
    )
    config.write_text(DEMO_CONFIG.read_text() + "sweep:\n  storage: postgresql://tunegate@db:5433/optuna\n")
    assert load_config(config).sweep.storage == "postgresql://tunegate@db:5433/optuna"


def test_several_training_processes_need_a_refit():
    with pytest.raises(InputError) as raised:
        load_config(DEMO_CONFIG, ["train.processes=2"])
    assert str(raised.value) == (
        f"{DEMO_CONFIG}: train.processes=2 trains the refit; with sweep.final=best_trial the best trial (one "
        "process) is the candidate: set sweep.final: refit"
    )
    config = load_config(DEMO_CONFIG, ["train.processes=2", "sweep.final=refit"])
    assert config.train.processes == 2


DPO_CONFIG = REPO / "deployments" / "demo_dpo.yaml"


def test_the_dpo_demo_config_judges_trials_on_the_dpo_loss_and_reads_its_base_from_the_registry():
    config = load_config(DPO_CONFIG)
    assert (config.train.objective, config.train.dpo_beta, config.objective()) == ("dpo", 0.1, "val_loss")
    assert config.model.base == "models:/support-demo@champion"
    assert config.evaluation().dpo_beta == 0.1
    assert load_config(DEMO_CONFIG).evaluation().dpo_beta is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "train.method=prefix_tuning",
            "train.objective dpo with train.method prefix_tuning: DPO trains lora, qlora or full (its reference is "
            "the base with the adapter disabled)",
        ),
        (
            "sweep.objective=task_metric",
            "sweep.objective task_metric with train.objective dpo: DPO trials are judged on the DPO loss of the "
            "held-out pairs (use auto or val_loss)",
        ),
        ("train.dpo_beta=0", "field train.dpo_beta: Input should be greater than 0"),
    ],
)
def test_a_dpo_recipe_that_cannot_run_is_a_one_line_config_error(override, message):
    with pytest.raises(InputError) as raised:
        load_config(DPO_CONFIG, [override])
    assert message in str(raised.value) and "\n" not in str(raised.value)
