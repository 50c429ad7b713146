"""prefect.yaml: the deployments users run, their parameters, schedule and hygiene."""

import importlib
import re

import yaml

from tests.conftest import REPO
from tunegate.config.loading import load_config
from tunegate.config.pipeline import PipelineConfig

PROJECT = yaml.safe_load((REPO / "prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in PROJECT["deployments"]}


def strings_and_keys(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings_and_keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings_and_keys(item)
    elif isinstance(node, str):
        yield node


def test_three_deployments_share_one_process_work_pool():
    assert sorted(DEPLOYMENTS) == ["dpo", "nightly", "on-demand"]
    pools = {d["work_pool"]["name"] for d in DEPLOYMENTS.values()}
    assert pools == {"tunegate-local"}
    assert "schedules" not in DEPLOYMENTS["on-demand"] and "schedules" not in DEPLOYMENTS["dpo"]


def test_entrypoints_are_the_flows():
    names = {}
    for deployment in DEPLOYMENTS.values():
        path, attribute = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        names[deployment["name"]] = getattr(module, attribute).name
    assert names == {"on-demand": "finetune", "nightly": "retrain", "dpo": "finetune"}


def test_parameters_are_the_demo_configs():
    demo = load_config(REPO / "deployments" / "demo.yaml")
    for name in ("on-demand", "nightly"):
        assert PipelineConfig.model_validate(DEPLOYMENTS[name]["parameters"]["config"]) == demo
    demo_dpo = load_config(REPO / "deployments" / "demo_dpo.yaml")
    assert PipelineConfig.model_validate(DEPLOYMENTS["dpo"]["parameters"]["config"]) == demo_dpo


def test_nightly_retraining_has_a_cron_schedule_with_a_timezone():
    (schedule,) = DEPLOYMENTS["nightly"]["schedules"]
    assert (schedule["cron"], schedule["timezone"], schedule["active"]) == ("0 2 * * *", "Europe/Berlin", True)


def test_no_machine_paths_and_no_credentials():
    values = list(strings_and_keys(PROJECT))
    assert [v for v in values if v.startswith(("/", "~")) or ":\\" in v] == []
    credential = re.compile(r"(^|_)(password|secret|token|access_token|api_key)$", re.IGNORECASE)
    assert [v for v in values if credential.search(v)] == []
    assert "pull" not in PROJECT


def test_finetune_parameter_schema_exposes_config_fields_with_descriptions():
    from flows.finetune import finetune

    schema = finetune.parameters.model_dump()
    assert list(schema["properties"]) == ["config", "warm_start"]
    sweep = schema["definitions"]["SweepConfig"]["properties"]["n_trials"]
    assert sweep["description"] == "Trials the study should have finished (a rerun tops it up)."
    assert sweep["default"] == 8
