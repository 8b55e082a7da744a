"""Command-line interface: `python -m fer_realtime COMMAND` (also installed as `fer-realtime`); one module per
group of commands, each adding its own parsers."""

from __future__ import annotations

import argparse
import shlex
import sys

from ..core.errors import FerError
from . import evaluate, media, rework, serve, streams, train


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fer-realtime", description="Facial-expression recognition.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (media.add_predict, evaluate.add_evaluate, train.add_train, rework.add_quantize, rework.add_calibrate,
                rework.add_average, rework.add_ensemble, rework.add_unpack, rework.add_tta, rework.add_framing,
                evaluate.add_compare_models, evaluate.add_scorecard, train.add_compare,
                media.add_video, media.add_bench, streams.add_bench_streams, serve.add_serve):
        add(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.command_line = "python -m fer_realtime " + shlex.join(argv)  # recorded with the models it makes
    try:
        return args.func(args)
    except FerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder that cannot be read or written (permissions, disk full)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
