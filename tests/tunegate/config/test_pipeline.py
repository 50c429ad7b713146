import pytest

from tests.conftest import REPO
from tunegate.config.loading import load_config
from tunegate.config.pipeline import PipelineConfig
from tunegate.core.errors import InputError

DEMO_CONFIG = REPO / "deployments" / "demo.yaml"


def test_demo_config_loads_with_its_values():
    config = load_config(DEMO_CONFIG)
    assert config.name == "support-demo"
    assert [s.path for s in config.data.sources] == ["demo/data/tickets.csv", "demo/data/replies.jsonl"]
    assert config.data.sources[0].columns == {"text": "prompt", "category": "completion"}
    assert config.data.dedup.threshold == 0.85
    assert config.task.labels == ["billing", "shipping", "returns", "technical", "account", "product"]


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
