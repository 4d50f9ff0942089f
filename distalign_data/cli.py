"""The ``distalign`` command line: a thin dispatcher over library functions.

Each module that owns a command exposes ``register_cli(subparsers)``, which adds its
sub-command(s) with ``set_defaults(func=...)``. Those modules import heavy
libraries only inside the command functions, so ``distalign --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from distalign_data.errors import DistalignError

COMMAND_MODULES = (
    "distalign_data.hub",  # build, release
    "distalign_data.paper_import",  # import-paper
    "distalign_data.scoring",  # score
    "distalign_data.reproduce",  # reproduce
    "distalign_data.model_runners.base",  # run
    "distalign_data.reports",  # report
    "distalign_data.coin",  # coin
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distalign", description="Datasets, metrics and runners for distributional alignment of language models."
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register_cli(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DistalignError, ValueError) as error:
        print(f"distalign {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
