"""Prefect flows: orchestration only. Quiet, offline-safe defaults are set before Prefect is imported."""

import os

# Prefect's server otherwise logs "Failed to send telemetry" when offline; GX likewise phones home.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
# The first ephemeral-server start in a fresh PREFECT_HOME runs migrations: ~23 s measured, 75 s reported.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
# Weight-loading progress bars and MLflow's INFO lines drown the run report; the Trainer's own progress bar stays.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
# MLflow prints "View run <name> at: <tracking URI>/#/..." to stdout for a server URI, password included;
# the report names the run and the UI already.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
