"""`gemma-toolcall`: the project's command line.

    gemma-toolcall recipe quality [--queue] [--name NAME] [--print]    run a recipe as a DVC experiment
    gemma-toolcall call --tools tools.json "What's the weather in Paris?"   the tuned model on your tools
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

from gemma_toolcall import call, recipes


def recipe(args) -> int:
    argv = recipes.command(args.recipe, queue=args.queue, exp_name=args.name)
    print(shlex.join(argv), flush=True)
    if args.print:
        return 0
    return subprocess.call(argv)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="gemma-toolcall", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    r = sub.add_parser("recipe", help="run recipes/NAME.yaml as `dvc exp run -n NAME -S ...`")
    r.add_argument("recipe", help=f"a name in recipes/ ({', '.join(recipes.available()) or 'none here'}) or a path")
    r.add_argument("--queue", action="store_true", help="queue it; `dvc exp run --run-all` runs the queue")
    r.add_argument("--name", help="the experiment's name (default: the recipe's)")
    r.add_argument("--print", action="store_true", help="print the command, run nothing")
    r.set_defaults(run=recipe)
    call.add_parser(sub)
    args = ap.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
