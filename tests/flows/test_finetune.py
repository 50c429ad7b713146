"""The whole DAG on the demo data with tiny budgets: real Prefect, GX, Optuna, training, MLflow (SQLite)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows.finetune import finetune
from tests.conftest import DEMO_DATA, REPO
from tests.fixtures.runs import FULL_KEYS, TINY, lookup
from tunegate.config.loading import load_config
from tunegate.reporting.report import finetune_summary
from tunegate.runtime.tracking import fluent_tracking, mlflow_client

# Whole-DAG runs (training, MLflow, registry): `make test` runs them, `make test-fast` does not.
pytestmark = pytest.mark.slow


ALL_STAGES = [
    "ingest",
    "validate",
    "dedup",
    "split",
    "sweep",
    "train",
    "retention",
    "evaluate",
    "baseline",
    "export",
    "register",
    "register_exports",
]


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    home = tmp_path_factory.mktemp("finetune-home")
    return load_config(
        REPO / "deployments" / "demo_tiny.yaml",
        [
            f"home={home}",
            f"data.sources.0.path={DEMO_DATA / 'tickets.csv'}",
            f"data.sources.1.path={DEMO_DATA / 'replies.jsonl'}",
            *TINY,
            "export.merged=true",
            "export.int8=true",
            "export.latency_rows=2",
        ],
    )


@pytest.fixture(scope="module")
def tiny_runs(tiny_config):
    return finetune_summary(finetune(tiny_config)), finetune_summary(finetune(tiny_config))


def test_summary_has_every_contract_key(tiny_runs):
    first, _ = tiny_runs
    assert [key for key in FULL_KEYS if not isinstance(lookup(first, key), int | float | str | list | bool)] == []
    assert first["sweep"]["n_trials"] == 3 and first["sweep"]["objective"] == "accuracy"
    assert first["eval"]["task_metric"] == "accuracy" and "accuracy" in first["eval"]["base"]
    assert first["train"]["steps"] == 6 and first["train"]["resumed_from_step"] == 0
    assert first["train"]["source"] == f"trial {first['sweep']['chosen_trial']}"
    assert first["train"]["health"]["healthy"] is True
    assert sorted(first["eval"]["per_label_f1"]) == sorted(
        ["billing", "shipping", "returns", "technical", "account", "product"]
    )
    assert first["registry"]["version"] == "1" and first["registry"]["promoted"] is True
    assert first["registry"]["aliases"] == ["champion"]
    # The merged build answers as the adapter does, so it is registered next to it; int8 only within 0.01.
    adapter, merged, int8 = (first["exports"][name] for name in ("adapter", "merged", "int8"))
    assert adapter["task_metric"] == merged["task_metric"] == first["eval"]["finetuned"]["accuracy"]
    assert (merged["version"], merged["alias"], int8["quantization"]) == ("2", "champion-merged", "int8_dynamic")
    assert int8["registered"] == (int8["metric_drop"] <= 0.01)
    # Drift from the base on 16 shipped retention prompts, with its interval, gated by registry.max_drift.
    drift = first["eval"]["drift"]
    assert (drift["rows"], drift["match_tokens"]) == (16, 8)
    low, high = drift["nats_per_token_ci95"]
    assert low <= drift["nats_per_token"] <= high and 0.0 <= drift["first_tokens_match"] <= 1.0
    assert f"drift {drift['nats_per_token']:.3f} nats/token" in first["registry"]["reason"]


def test_mlflow_has_one_parent_run_with_nested_trials_and_final_training(tiny_runs):
    first, _ = tiny_runs
    client = mlflow_client(first["mlflow"]["tracking_uri"])
    children = client.search_runs(
        [first["mlflow"]["experiment_id"]], filter_string=f"tags.mlflow.parentRunId = '{first['mlflow']['run_id']}'"
    )
    by_name = {run.info.run_name.split(" ")[0]: run for run in children}
    # The best trial's checkpoint is the candidate: no second training run.
    assert sorted(by_name) == ["trial-0", "trial-1", "trial-2"]
    trial = by_name["trial-0"]
    assert trial.info.run_name == (
        f"trial-0 r={trial.data.params['lora_r']} lr={float(trial.data.params['learning_rate']):.1e}"
    )
    assert set(trial.data.params) == {"lora_r", "learning_rate"}
    # Both the val loss and the objective at every rung.
    for metric in ("val_loss", "accuracy"):
        assert [m.step for m in client.get_metric_history(trial.info.run_id, metric)] == [2, 6]
    parent = client.get_run(first["mlflow"]["run_id"])
    chosen = by_name[f"trial-{first['sweep']['chosen_trial']}"]
    assert parent.data.tags["chosen_trial_run_id"] == chosen.info.run_id == first["mlflow"]["candidate_run_id"]
    assert parent.info.run_name.startswith("support-demo 20") and parent.info.status == "FINISHED"
    assert parent.data.tags["prefect.flow_run_id"] and parent.data.tags["prefect.flow_run_name"]
    # The names the compare view lines up across pipeline runs, with the chosen params' values.
    best = first["sweep"]["best_params"]
    assert {k: parent.data.params[k] for k in ("lora_r", "learning_rate")} == {k: str(v) for k, v in best.items()}
    assert sorted(parent.data.metrics) == [
        "accuracy",
        "base_accuracy",
        "base_likelihood_accuracy",
        "base_likelihood_macro_f1",
        "baseline_accuracy",
        "baseline_macro_f1",
        "delta_accuracy",
        "delta_over_baseline",
        "delta_over_baseline_ci95_high",
        "delta_over_baseline_ci95_low",
        "drift_first_tokens_match",
        "drift_nats_per_token",
        "drift_nats_per_token_ci95_high",
        "drift_nats_per_token_ci95_low",
        "likelihood_accuracy",
        "likelihood_macro_f1",
        "tokens_per_second",
        "trainable_parameters",
        "val_loss",
    ]
    assert parent.data.metrics["accuracy"] == first["eval"]["finetuned"]["accuracy"]
    assert parent.data.metrics["base_likelihood_accuracy"] == first["eval"]["base"]["likelihood_accuracy"]
    assert parent.data.metrics["drift_nats_per_token"] == first["eval"]["drift"]["nats_per_token"]
    assert "sweep/sweep_report.html" in [a.path for a in client.list_artifacts(parent.info.run_id, "sweep")]


# Tests that run pipelines of their own in tiny_config's home ask for tiny_runs first: its first run must be the
# home's first registration whatever order the tests run in (pytest-xdist may start a module at any test).
def test_a_failed_run_ends_its_mlflow_runs_as_failed(tiny_runs, tiny_config):
    broken = tiny_config.model_copy(
        update={"train": tiny_config.train.model_copy(update={"target_modules": ["no_such_module"]})}
    )
    state = finetune(broken, return_state=True)
    assert state.is_failed()
    client = mlflow_client(f"sqlite:///{tiny_config.home_path() / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("support-demo").experiment_id],
        filter_string="attributes.status = 'RUNNING'",
    )
    assert runs == []


def test_the_registered_adapter_is_the_chosen_trials_checkpoint(tiny_runs):
    from tunegate.core.fingerprint import fingerprint_directory

    first, _ = tiny_runs
    adapter = first["train"]["adapter_dir"]
    assert "/trials/" in adapter
    client = mlflow_client(first["mlflow"]["tracking_uri"])
    version = client.get_model_version(first["registry"]["model_name"], first["registry"]["version"])
    assert (
        version.tags["adapter_fingerprint"] == first["train"]["adapter_fingerprint"] == fingerprint_directory(adapter)
    )


def test_rerun_is_served_from_cache_reuses_every_trial_and_moves_no_alias(tiny_runs):
    first, again = tiny_runs
    assert again["cache_hits"] == ALL_STAGES
    assert (first["sweep"]["trials_run"], again["sweep"]["trials_run"]) == (3, 0)
    assert again["sweep"]["chosen_trial"] == first["sweep"]["chosen_trial"]
    assert again["registry"]["version"] == first["registry"]["version"]
    client = mlflow_client(first["mlflow"]["tracking_uri"])
    versions = client.search_model_versions(f"name = '{first['registry']['model_name']}'")
    registered_exports = [build["version"] for build in first["exports"].values() if build["registered"]]
    assert sorted(str(v.version) for v in versions) == ["1", *registered_exports]
    assert [build["version"] for build in again["exports"].values()] == [
        build["version"] for build in first["exports"].values()
    ]


def test_champion_loads_in_a_fresh_process_and_generates(tiny_runs):
    first, _ = tiny_runs
    script = (
        "import json, sys, mlflow, pandas as pd\n"
        f"mlflow.set_tracking_uri({first['mlflow']['tracking_uri']!r})\n"
        "rows = pd.DataFrame({'prompt': ['My parcel never arrived.', 'I was charged twice.']})\n"
        "aliases = ['champion', 'champion-merged']\n"
        f"models = [mlflow.pyfunc.load_model('models:/{first['registry']['model_name']}@' + a) for a in aliases]\n"
        "print(json.dumps([list(model.predict(rows)) for model in models]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd="/",
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    generations, merged_generations = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(generations) == 2 and all(isinstance(g, str) for g in generations)
    assert merged_generations == generations


def flow_run_name(state) -> str:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id).name


def test_retrain_skips_when_the_champion_saw_these_data_and_this_config(tiny_runs, tiny_config):
    from flows.retrain import SKIPPED, retrain

    state = retrain(tiny_config, return_state=True)
    assert state.message == SKIPPED
    assert state.result() == {"status": "skipped", "reason": SKIPPED, "champion_version": "1"}
    assert flow_run_name(state) == "retrain: skipped: data unchanged"


def test_retrain_with_force_runs_the_dag_again_served_from_cache(tiny_runs, tiny_config):
    from flows.retrain import retrain

    state = retrain(tiny_config, force=True, return_state=True)
    summary = finetune_summary(state.result())
    assert summary["status"] == "ok"
    assert summary["cache_hits"] == ALL_STAGES
    assert summary["registry"]["version"] == "1"
    assert flow_run_name(state) == "retrain: forced"


def test_task_runs_are_named_by_what_tells_them_apart(tiny_runs):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    first = tiny_runs[0]
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[first_flow_run_id(first)])))
    names = sorted(run.name for run in runs)
    best = first["sweep"]["best_params"]
    assert f"train r={best['lora_r']} lr={best['learning_rate']:.1e}" in names
    trials = [name for name in names if name.startswith("trial-")]
    assert [name.split()[0] for name in trials] == ["trial-0", "trial-1", "trial-2"]
    assert all(re.fullmatch(r"trial-\d r=\d+ lr=\d\.\de-\d\d", name) for name in trials)
    assert sum(bool(re.fullmatch(r"evaluate [0-9a-f]{8}", name)) for name in names) == 1


def first_flow_run_id(first: dict) -> str:
    """The Prefect flow run of the first tiny run (its parent MLflow run is tagged with it)."""
    run = mlflow_client(first["mlflow"]["tracking_uri"]).get_run(first["mlflow"]["run_id"])
    return run.data.tags["prefect.flow_run_id"]


def test_the_run_publishes_a_markdown_report_artifact(tiny_runs):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    # This run's report: the session's Prefect server also holds the reports of other tests' runs.
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=["finetune-report"]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[first_flow_run_id(tiny_runs[0])]),
            )
        )
    report = artifacts[-1].data
    assert report.startswith("# Fine-tuning run")
    assert "| rows_read | 3766 |" in report
    assert "| base | " in report and "| fine-tuned | " in report
    assert "support-demo v1 → **champion**" in report
    assert "| merged | " in report and "v2 (champion-merged) |" in report


def test_sweep_and_training_progress_artifacts_end_at_100_percent(tiny_runs):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    first, _ = tiny_runs
    flow_run_id = first_flow_run_id(first)
    with get_client(sync_client=True) as client:
        latest = {
            key: client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )[-1]
            for key in ("sweep-progress",)
        }
    sweep = latest["sweep-progress"]
    assert sweep.data == 100.0
    best = first["sweep"]["best_params"]
    summary = first["sweep"]
    assert sweep.description == (
        f"Sweep: 3/3 trials finished ({summary['n_pruned']} pruned); best accuracy {summary['best_value']:.4f}"
        f" at lora_r={best['lora_r']}, learning_rate={best['learning_rate']:.2e}"
    )


def test_refit_retrains_the_chosen_params_as_final_training(tiny_runs, tiny_config):
    refit = tiny_config.model_copy(
        update={"sweep": tiny_config.sweep.model_copy(update={"final": "refit", "n_trials": 1})}
    )
    summary = finetune_summary(finetune(refit))
    assert summary["train"]["source"] == "refit" and "/train/" in summary["train"]["adapter_dir"]
    client = mlflow_client(summary["mlflow"]["tracking_uri"])
    children = client.search_runs(
        [summary["mlflow"]["experiment_id"]],
        filter_string=f"tags.mlflow.parentRunId = '{summary['mlflow']['run_id']}'",
    )
    final = [run for run in children if run.info.run_name.startswith("final-training")]
    assert len(final) == 1 and final[0].info.run_id == summary["mlflow"]["candidate_run_id"]
    assert {"lora_r", "learning_rate", "max_steps"} <= set(final[0].data.params)
    assert [m.step for m in client.get_metric_history(final[0].info.run_id, "accuracy")] == [2, 6]


def test_mlflow_shows_the_splits_as_datasets_and_the_version_carries_a_model_card(tiny_runs):
    first, _ = tiny_runs
    client = mlflow_client(first["mlflow"]["tracking_uri"])
    experiment = client.get_experiment(first["mlflow"]["experiment_id"])
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    files, fingerprints = first["data"]["files"], first["data"]["fingerprints"]
    for run_id in (first["mlflow"]["run_id"], first["mlflow"]["candidate_run_id"]):
        inputs = client.get_run(run_id).inputs.dataset_inputs
        assert sorted(
            (i.dataset.name, i.dataset.digest, json.loads(i.dataset.source)["uri"], i.tags[0].value) for i in inputs
        ) == sorted(
            (split, fingerprints[split][:32], files[split], context)
            for split, context in (("train", "training"), ("val", "validation"), ("test", "evaluation"))
        )
    card = client.get_model_version("support-demo", "1").description
    assert card.startswith("# support-demo v1\n\n## Data\n")
    assert first["registry"]["reason"] in card and "| rows_read | 3766 |" in card
    assert 'mlflow.pyfunc.load_model("models:/support-demo/1")' in card


def fresh_environment(path):
    """A venv where the project is not installed, and nothing is downloaded: the packages come from .venv's
    site-packages through a path in a .pth file (Python does not process the .pth files of a directory added that
    way, so the project's editable-install finder stays off), plus a `uvicorn` launcher in its bin (MLflow's
    server starts `uvicorn` from PATH). The closest offline equivalent of a venv with only the model's
    requirements installed."""
    import stat
    import sysconfig
    from pathlib import Path

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    site = next((path / "lib").glob("python3*/site-packages"))
    (site / "project_venv_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    launcher = path / "bin" / "uvicorn"
    launcher.write_text(f'#!/bin/sh\nexec "{path / "bin" / "python"}" -m uvicorn "$@"\n')
    launcher.chmod(launcher.stat().st_mode | stat.S_IEXEC)
    return Path(path / "bin" / "python")


def test_the_champion_is_served_over_rest_from_an_environment_without_the_project(tiny_runs, tmp_path):
    import socket
    import time
    import urllib.request

    import mlflow.artifacts
    import pandas as pd

    from tunegate.registry.serving import registered_model_answers

    uri = tiny_runs[0]["mlflow"]["tracking_uri"]
    python = fresh_environment(tmp_path / "fresh")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env |= {"MLFLOW_TRACKING_URI": uri, "PATH": f"{python.parent}:{env['PATH']}"}
    probe = subprocess.run([str(python), "-c", "import tunegate"], cwd=tmp_path, env=env, capture_output=True)
    assert b"No module named 'tunegate'" in probe.stderr
    with fluent_tracking(uri):
        mlflow.artifacts.download_artifacts("models:/support-demo@champion", dst_path=str(tmp_path / "m"))
    requirements = (tmp_path / "m" / "requirements.txt").read_text().split()
    pinned = [r.split("==")[0] for r in requirements if "==" in r]
    assert pinned == ["mlflow", "torch", "transformers", "peft", "pandas"]
    assert not [r for r in requirements if "tunegate" in r] and (tmp_path / "m" / "code" / "tunegate").is_dir()
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    command = [str(python), "-m", "mlflow", "models", "serve", "-m", "models:/support-demo@champion"]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "-p", str(port)]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if urllib.request.urlopen(f"{base}/ping", timeout=5).status == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server never answered /ping"
                time.sleep(1)
        prompts = ["My parcel never arrived.", "I was charged twice for one order."]
        request = urllib.request.Request(
            f"{base}/invocations",
            data=json.dumps({"dataframe_records": [{"prompt": p} for p in prompts]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        answered = json.loads(urllib.request.urlopen(request, timeout=120).read())
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    expected = registered_model_answers("models:/support-demo@champion", pd.DataFrame({"prompt": prompts}), False, uri)
    assert answered == {"predictions": expected}


def test_serve_model_answers_from_a_fresh_terminal_without_the_venv_on_path(tiny_runs, tmp_path):
    """`tunegate serve-model`, started the way the report's hint says (by its path) in a shell whose PATH has no
    venv bin and whose environment has none of the suite's variables: it answers /invocations and stops on
    SIGTERM (the bare `.venv/bin/mlflow models serve` exited 127 here: uvicorn is found through PATH)."""
    import signal
    import socket
    import time
    import urllib.request

    summary = tiny_runs[0]
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    tunegate = Path(sys.executable).parent / "tunegate"
    command = [str(tunegate), "serve-model", "--model", "support-demo", "--port", str(port)]
    command += ["--tracking-uri", summary["mlflow"]["tracking_uri"]]
    fresh_terminal = {"PATH": "/usr/bin:/bin", "HOME": os.environ["HOME"], "LANG": "C.UTF-8"}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(command, cwd=tmp_path, env=fresh_terminal, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5).status == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server never answered /ping"
                time.sleep(1)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"dataframe_records": [{"prompt": "My parcel never arrived."}]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        answered = json.loads(urllib.request.urlopen(request, timeout=120).read())
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()
    assert list(answered) == ["predictions"] and len(answered["predictions"]) == 1
    printed = (tmp_path / "serve.log").read_text().splitlines()
    assert printed[0] == f"serving models:/support-demo@champion from {summary['mlflow']['tracking_uri']} at " + (
        f"http://127.0.0.1:{port}/invocations (Ctrl-C stops it)"
    )


def test_the_baseline_is_scored_on_the_same_rows_and_its_bar_leaves_a_weaker_candidate_challenger(
    tiny_runs, tiny_config
):
    first, _ = tiny_runs
    evaluation, baseline = first["eval"], first["eval"]["baseline"]
    assert (baseline["model"], baseline["rows"]) == ("tfidf-logreg", evaluation["rows"])
    assert baseline["delta"] == evaluation["finetuned"]["accuracy"] - baseline["accuracy"]
    assert first["mlflow"]["metrics"]["baseline_accuracy"] == baseline["accuracy"]
    assert "baseline" not in first["registry"]["reason"]  # reported, not gated, by default
    # The toy base with a 6-step budget learns less than a classifier fitted in a second on the same train split.
    assert baseline["accuracy"] > evaluation["finetuned"]["accuracy"]
    gated = tiny_config.model_copy(
        update={"registry": tiny_config.registry.model_copy(update={"min_gain_over_baseline": 0.0})}
    )
    summary = finetune_summary(finetune(gated))
    assert summary["cache_hits"] == [stage for stage in ALL_STAGES if not stage.startswith("register")]
    assert summary["registry"]["aliases"] == ["challenger"] and not summary["registry"]["promoted"]
    assert ", but vs the classical baseline tfidf-logreg " in summary["registry"]["reason"]
    assert "lower bound needed +0.000: registry.min_gain_over_baseline)" in summary["registry"]["reason"]


def test_a_champion_whose_model_files_are_gone_is_retrained_and_registered_again(tiny_runs, tiny_config):
    from flows.retrain import SKIPPED, retrain

    first, _ = tiny_runs
    client = mlflow_client(first["mlflow"]["tracking_uri"])
    champion = client.get_model_version_by_alias(first["registry"]["model_name"], "champion")
    assert champion.tags["prefect_flow_run_id"] == first_flow_run_id(first)  # still the first run's version
    champion = champion.version
    shutil.rmtree(Path(tiny_config.home) / "mlartifacts")  # the registry database stays, the files are gone
    state = retrain(tiny_config, return_state=True)
    assert flow_run_name(state) == "retrain: champion does not load"
    summary = finetune_summary(state.result())
    # Every stage is cached but registration, whose cached version no longer loads.
    assert [stage for stage in ALL_STAGES if stage not in summary["cache_hits"]] == ["register", "register_exports"]
    registry = summary["registry"]
    assert int(registry["version"]) > int(champion) and registry["aliases"] == ["champion"]
    assert f"champion v{champion} unavailable (" in registry["reason"]
    assert retrain(tiny_config, return_state=True).message == SKIPPED  # the new champion loads
