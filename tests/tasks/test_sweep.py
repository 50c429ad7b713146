import tasks.sweep as sweep_module
from tasks.sweep import study_for
from tests.fixtures.sweep import PLAN
from tunegate.config.pipeline import PipelineConfig
from tunegate.runtime.code_version import code_fingerprint
from tunegate.sweep.study import study_name


def test_the_pipelines_study_is_named_by_the_sweep_modules_code(tmp_path):
    config = PipelineConfig(name="demo", home=str(tmp_path), data={"sources": [{"path": "x.jsonl"}]})
    code = code_fingerprint(sweep_module.__file__)
    expected = study_name("demo", "fp1", config.model, config.train, config.sweep, PLAN, code)
    assert study_for(config, "fp1", PLAN).name == expected


def test_a_trial_is_keyed_on_its_study_but_not_on_its_number_or_run():
    from types import SimpleNamespace

    from tasks.sweep import run_trial

    def key(trial_number: int, study_key: str, parent_run: str) -> str:
        inputs = {
            "params": {"lora_r": 8, "learning_rate": 1e-3},
            "trial_number": trial_number,
            "study": {"name": study_key},
            "tracking": {"parent_run_id": parent_run},
            "study_key": study_key,
        }
        return run_trial.cache_policy.compute_key(SimpleNamespace(task=run_trial), inputs, {})

    assert key(0, "demo-pruned", "run-a") == key(5, "demo-pruned", "run-b")
    assert key(0, "demo-pruned", "run-a") != key(0, "demo-unpruned", "run-a")
