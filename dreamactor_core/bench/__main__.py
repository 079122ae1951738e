"""``python -m dreamactor_core.bench <command> [options]``."""

from __future__ import annotations

import argparse
import sys

from . import dit, train_step


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["guidance"]:  # the guidance benchmark parses its own options
        from . import guidance

        return guidance.main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m dreamactor_core.bench",
                                     description="DreamActor benchmarks")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("guidance", help="guidance stack stages vs raw MediaPipe at 512x512, fps and RSS",
                        add_help=False)
    dit.add_arguments(commands.add_parser(
        "dit", help="our DiT blocks vs ComfyUI's Wan DiT, attention extras, GFLOP/s, RSS"))
    train_step.add_arguments(commands.add_parser(
        "train", help="one training step per stage, fp32 beside bf16 autocast"))
    dit.add_rss_worker_arguments(commands.add_parser(
        "rss-worker", help="(internal) one generation in this process; prints peak RSS JSON"))
    args = parser.parse_args(argv)
    try:
        if args.command == "dit":
            return dit.run(args)
        if args.command == "train":
            return train_step.run(args)
        return dit.rss_worker(args)
    except ValueError as exc:  # bad options or a missing ComfyUI: a message, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
