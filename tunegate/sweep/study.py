"""The Optuna study a sweep lives in: its name (same data, search and trial code → the same study, so a rerun
continues it), its storage (a journal file under home, or any RDB URL), opening it with retries, and repairing a
journal a killed writer left torn."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from tunegate.config.sweep import SweepConfig
from tunegate.config.train import ModelConfig, TrainConfig
from tunegate.core.errors import ServiceUnavailable, one_line
from tunegate.core.fingerprint import combine, fingerprint_value
from tunegate.core.secrets import redact
from tunegate.runtime.stages import run_logger
from tunegate.training.budget import TrainingPlan

# A locked SQLite file or a restarting database: 1 + 2 + 4 s covers a busy writer or a failover, not an outage.
STORAGE_RETRY_SECONDS = (1, 2, 4)


def study_name(
    pipeline_name: str,
    data_fingerprint: str,
    model: ModelConfig,
    train: TrainConfig,
    sweep: SweepConfig,
    plan: Any,
    trial_code: str,
) -> str:
    """Same data, same search and same trial code → same study (a rerun continues it); n_trials, the runner and
    the time budget do not count. `trial_code` is the code fingerprint of the trials (this module's closure):
    without it a changed trainer left the old study's finished trials, and the adapter the old code trained,
    standing for the new code (the DPO tokenization fix only took effect once the study was deleted)."""
    search = sweep.model_dump(
        include={
            "lora_ranks",
            "virtual_tokens",
            "trial_max_steps",
            "rungs",
            "pruner",
            "startup_trials",
            "reduction_factor",
            "seed",
            "objective_rows",
        }
    )
    # The range as searched, so a config that spells out a method's default range names the same study.
    search["learning_rate_min"], search["learning_rate_max"] = sweep.learning_rate_range(train.method, train.objective)
    # Searched params and the refit's process layout do not name the study (trials train in one process).
    recipe = train.model_dump(exclude={"lora_r", "num_virtual_tokens", "learning_rate", "processes", "sharding"})
    key = combine(data_fingerprint, trial_code, fingerprint_value([search, recipe, model, plan]))
    return f"{pipeline_name}-{key[:12]}"


def storage_url(sweep: SweepConfig, home: Path) -> str:
    return sweep.storage or f"journal:{home / 'optuna' / 'journal.log'}"


def open_study(name: str, storage: str, sweep: SweepConfig, plan: TrainingPlan) -> Any:
    """Create or load the study: seeded TPE, the configured pruner with rungs below the plan's budget,
    maximising the task metric or minimising val loss."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruners = {
        "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(
            min_resource=plan.first_rung, reduction_factor=sweep.reduction_factor
        ),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(
            min_resource=plan.first_rung, max_resource=plan.max_steps, reduction_factor=sweep.reduction_factor
        ),
        "none": optuna.pruners.NopPruner,
    }
    study = with_storage_retries(
        storage,
        lambda: optuna.create_study(
            study_name=name,
            storage=optuna_storage(storage),
            pruner=pruners[sweep.pruner](),
            direction=study_direction(plan),
            load_if_exists=True,
        ),
    )
    # Seeded by the trials the study already has: a sampler re-seeded with `seed` alone on every resume would
    # replay its first random draws, and a resumed or topped-up sweep would train the points it already has.
    existing = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=sweep.seed + existing, n_startup_trials=sweep.startup_trials)
    return study


def with_storage_retries(storage: str, open_storage: Any) -> Any:
    """Open the study, retrying a storage that is locked or does not answer (STORAGE_RETRY_SECONDS apart);
    then fail with one line naming it (password redacted)."""
    from sqlalchemy.exc import OperationalError

    for delay in STORAGE_RETRY_SECONDS:
        try:
            return open_storage()
        except OperationalError as exc:
            run_logger().warning("Optuna storage %s: %s; retrying in %s s", redact(storage), one_line(exc), delay)
            time.sleep(delay)
    try:
        return open_storage()
    except OperationalError as exc:
        tries = len(STORAGE_RETRY_SECONDS) + 1
        raise ServiceUnavailable(
            f"Optuna storage {redact(storage)} unreachable after {tries} tries ({one_line(exc.orig or exc)})"
        ) from exc


def study_direction(plan: TrainingPlan) -> str:
    return "maximize" if plan.greater_is_better else "minimize"


def optuna_storage(url: str) -> Any:
    """`journal:<path>` is a journal file (safe for several processes on one host); anything else an RDB URL."""
    if not url.startswith("journal:"):
        return url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = Path(url.removeprefix("journal:"))
    path.parent.mkdir(parents=True, exist_ok=True)
    repair_journal(path)
    return JournalStorage(JournalFileBackend(str(path)))


def repair_journal(path: Path) -> int:
    """Cut a journal back to its last intact line, under Optuna's own journal lock; returns the bytes cut.

    A writer killed mid-append leaves a line without its newline; the next append would glue onto it and every
    later read fails ("Invalid log format"). The journal is replayed in order, so everything from the first bad
    line on is cut (and kept next to it as `<name>.cut-<time>` for inspection): the rest stays consistent."""
    from optuna.storages.journal import JournalFileSymlinkLock

    if not path.is_file() or path.stat().st_size == 0:
        return 0
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        data = path.read_bytes()
        intact = intact_journal_prefix(data)
        if intact == len(data):
            return 0
        (path.parent / f"{path.name}.cut-{time.strftime('%Y%m%d-%H%M%S')}").write_bytes(data[intact:])
        with open(path, "r+b") as handle:
            handle.truncate(intact)
    finally:
        lock.release()
    logging.getLogger("tunegate").warning(
        "Optuna journal %s: cut %d bytes from its first torn or unreadable line on (a writer was killed)",
        path,
        len(data) - intact,
    )
    return len(data) - intact


def intact_journal_prefix(data: bytes) -> int:
    """Length of the longest prefix of whole lines that are each valid JSON."""
    offset = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            json.loads(line)
        except ValueError:
            break
        offset += len(line)
    return offset
