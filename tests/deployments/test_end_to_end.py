"""As users run it: a real Prefect server and process worker (`tunegate.ops.services`, what `make serve` starts),
`prefect deploy --all` from prefect.yaml, two `prefect deployment run 'finetune/on-demand'` at once, then
`prefect deployment run 'retrain/nightly'`. Every process started here is ended, also when a step fails."""

from __future__ import annotations

import json
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest

from tests.conftest import DEMO_DATA, REPO
from tests.fixtures.runs import TINY
from tunegate.config.loading import load_config
from tunegate.core.errors import InputError
from tunegate.ops.processes import free_port, running
from tunegate.ops.services import Ports, executable, prefect_env, start, stop
from tunegate.runtime.tracking import mlflow_client

pytestmark = pytest.mark.slow
# Two tiny pipelines at once on 2 cores (each a fresh process importing torch, GX and MLflow) take ~2 min.
RUN_TIMEOUT_SECONDS = 540
# The worker polls every 2 s instead of 10: the test waits on it three times.
EXTRA_ENV = {"HF_HUB_OFFLINE": "1", "PREFECT_LOGGING_LEVEL": "INFO", "PREFECT_WORKER_QUERY_SECONDS": "2"}


def params_for(home, *overrides: str) -> str:
    config = load_config(
        REPO / "deployments" / "demo_tiny.yaml",
        [
            f"home={home}",
            f"data.sources.0.path={DEMO_DATA / 'tickets.csv'}",
            f"data.sources.1.path={DEMO_DATA / 'replies.jsonl'}",
            *TINY,
            *overrides,
        ],
    )
    return json.dumps({"config": config.model_dump(mode="json")})


def prefect_cli(env: dict[str, str], *args: str, timeout: float = RUN_TIMEOUT_SECONDS) -> str:
    done = subprocess.run(
        [executable("prefect"), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"prefect {' '.join(args[:3])} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def run_deployment(env: dict[str, str], name: str, params: str) -> str:
    """`prefect deployment run NAME --params ... --watch`; returns the flow run id."""
    output = prefect_cli(
        env, "deployment", "run", name, "--params", params, "--watch", "--watch-timeout", str(RUN_TIMEOUT_SECONDS)
    )
    assert "finished successfully" in output, output[-3000:]
    return re.search(r"UUID: ([0-9a-f-]{36})", output).group(1)


def flow_run(api_url: str, flow_run_id: str) -> dict:
    return httpx.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=10).raise_for_status().json()


@pytest.fixture
def services(tmp_path):
    """Server + worker + MLflow UI on free loopback ports; afterwards, no process of theirs is left."""
    state_dir, home = tmp_path / "services", tmp_path / "home"
    ports = Ports(free_port(), free_port())
    started = start(state_dir, ports, mlflow_store=home / "mlflow.db", extra_env=EXTRA_ENV)
    family = [psutil.Process(s.pid) for s in started]
    try:
        yield {
            "home": home,
            "state_dir": state_dir,
            "env": {**prefect_env(state_dir, ports, EXTRA_ENV), "PREFECT_HOME": str(tmp_path)},
        }
    finally:
        family += [child for s in running(state_dir) for child in psutil.Process(s.pid).children(recursive=True)]
        assert sorted(stop(state_dir)) == ["mlflow-ui", "prefect-server", "prefect-worker"]
        assert [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []


def test_deploy_run_twice_at_once_then_retrain_skips(services):
    env, home = services["env"], services["home"]
    api_url = env["PREFECT_API_URL"]
    with pytest.raises(InputError, match="services already running; run `make stop` first"):
        start(services["state_dir"], Ports(free_port(), free_port()))
    # CSRF on, CORS limited to the server's own UI origin (the UI is served by the API server itself).
    ui_origin = api_url.removesuffix("/api")
    no_token = httpx.post(f"{api_url}/flows/filter", json={}, timeout=10)
    assert (no_token.status_code, no_token.json()) == (403, {"detail": "Missing CSRF token."})
    preflight = {"Access-Control-Request-Method": "POST"}
    own = httpx.options(f"{api_url}/flows/filter", headers={**preflight, "Origin": ui_origin}, timeout=10)
    foreign = httpx.options(f"{api_url}/flows/filter", headers={**preflight, "Origin": "http://evil.test"}, timeout=10)
    assert (own.status_code, own.headers["access-control-allow-origin"], foreign.status_code) == (200, ui_origin, 400)
    deployed = prefect_cli(env, "--no-prompt", "deploy", "--all")
    assert "finetune/on-demand" in deployed and "retrain/nightly" in deployed

    # Two runs at once against one MLflow store, one Optuna storage and one registry (two budgets: two studies).
    # Two trials each: this test is about deployments, the sweep has its own tests.
    with ThreadPoolExecutor(2) as pool:
        runs = [
            pool.submit(
                run_deployment,
                env,
                "finetune/on-demand",
                params_for(home, f"train.max_steps={steps}", "sweep.n_trials=2"),
            )
            for steps in (6, 9)
        ]
        run_ids = [run.result() for run in runs]
    assert [flow_run(api_url, run_id)["state"]["type"] for run_id in run_ids] == ["COMPLETED", "COMPLETED"]

    client = mlflow_client(f"sqlite:///{home / 'mlflow.db'}")
    versions = client.search_model_versions("name = 'support-demo'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert sorted(v.tags["prefect_flow_run_id"] for v in versions) == sorted(run_ids)
    champion = client.get_model_version_by_alias("support-demo", "champion")
    # The registry lock serialises the decisions: version 2 was judged against version 1 as the champion.
    second = client.get_model_version("support-demo", "2")
    assert "champion v1" in second.tags["promotion_reason"]
    assert str(champion.version) == ("2" if second.tags["promotion_reason"].startswith("promoted") else "1")
    parents = client.search_runs(
        [client.get_experiment_by_name("support-demo").experiment_id], filter_string="tags.prefect.flow_run_id != ''"
    )
    assert sorted(run.data.tags["prefect.flow_run_id"] for run in parents) == sorted(run_ids)

    # The nightly deployment with the champion's own config: nothing changed, so it ends quickly as skipped.
    champion_params = flow_run(api_url, champion.tags["prefect_flow_run_id"])["parameters"]
    retrain_id = run_deployment(env, "retrain/nightly", json.dumps(champion_params))
    state = flow_run(api_url, retrain_id)["state"]
    assert (state["type"], state["message"]) == ("COMPLETED", "skipped: data unchanged")
    assert len(client.search_model_versions("name = 'support-demo'")) == 2
