"""`tunegate serve-model`: a registered version over REST on 127.0.0.1, from a fresh terminal (no venv activated).

    tunegate serve-model [--config deployments/demo.yaml] [--alias champion] [--port 5001] [--set KEY=VALUE ...]
    tunegate serve-model --model support-demo --tracking-uri sqlite:///.tunegate/mlflow.db   (no config needed)

It runs `mlflow models serve -m models:/<name>@<alias> --env-manager local` with the tracking URI the config names
(or $MLFLOW_TRACKING_URI, else the home's SQLite store) and this environment's bin directory first on the child's
PATH: MLflow's local env manager starts its scoring server as `bash -c 'exec uvicorn …'`, found through PATH, which
the README's bare `.venv/bin/mlflow models serve` did not give it (exit 127 in a fresh terminal). Prints the URL and
a sample request, and stops the server's whole process group on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tunegate.config.loading import load_config
from tunegate.core.errors import InputError, one_line
from tunegate.core.secrets import redact
from tunegate.runtime.tracking import tracking_uri

HOST = "127.0.0.1"  # never 0.0.0.0: the scoring server has no authentication
SAMPLE = {"dataframe_records": [{"prompt": "I was charged twice for the same order on my credit card."}]}


def serve_command(model_uri: str, port: int) -> list[str]:
    """MLflow's scoring server for the model on 127.0.0.1:`port`, in this environment (no new one built)."""
    mlflow = Path(sys.executable).parent / "mlflow"
    return [str(mlflow), "models", "serve", "-m", model_uri, "--env-manager", "local", "-h", HOST, "-p", str(port)]


def serving_environment(uri: str) -> dict[str, str]:
    """This environment with its bin directory first on PATH (uvicorn, mlflow) and the tracking URI set."""
    bin_dir = str(Path(sys.executable).parent)
    path = os.pathsep.join([bin_dir, *(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != bin_dir)])
    return {**os.environ, "PATH": path, "MLFLOW_TRACKING_URI": uri}


def sample_request(port: int) -> str:
    return (
        f"curl -s -X POST http://{HOST}:{port}/invocations -H 'Content-Type: application/json' "
        f"-d '{json.dumps(SAMPLE)}'"
    )


def model_location(args: argparse.Namespace) -> tuple[str, str]:
    """(tracking URI, registered model name): as given, else from the config."""
    if args.model and args.tracking_uri:
        return args.tracking_uri, args.model
    config = load_config(args.config, args.overrides)
    return args.tracking_uri or tracking_uri(config), args.model or config.registered_model_name()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tunegate serve-model", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="deployments/demo.yaml", help="the pipeline config that registered it")
    parser.add_argument("--alias", default="champion", help="the version to serve, by alias (champion, challenger)")
    parser.add_argument("--port", type=int, default=5001, help="port on 127.0.0.1")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--model", help="registered model name (default: the config's)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: the config's)")
    args = parser.parse_args(argv)
    try:
        uri, name = model_location(args)
    except InputError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    model_uri = f"models:/{name}@{args.alias}"
    print(f"serving {model_uri} from {redact(uri)} at http://{HOST}:{args.port}/invocations (Ctrl-C stops it)")
    print(f"try: {sample_request(args.port)}", flush=True)
    server = subprocess.Popen(serve_command(model_uri, args.port), env=serving_environment(uri), start_new_session=True)

    def stop(signum: int, _frame: object) -> None:
        os.killpg(server.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    try:
        return server.wait()
    except KeyboardInterrupt:
        os.killpg(server.pid, signal.SIGTERM)
        return server.wait()
