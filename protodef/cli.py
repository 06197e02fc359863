"""Command line: `protodef info|convert|draw|upgrade|check ...`. Errors are one line on stderr, no traceback."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import Callable, Sequence

from .errors import ERROR_KINDS, ProtodefError, SchemaError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(function):
        COMMANDS[name] = function
        return function
    return register


def parse_input_shape(text: str) -> tuple[str, tuple[int, ...]]:
    """`data=1,3,224,224` -> ("data", (1, 3, 224, 224))."""
    name, sep, dims = text.rpartition("=")
    try:
        shape = tuple(int(d) for d in dims.replace("x", ",").split(",") if d.strip())
    except ValueError:
        shape = ()
    if not sep or not name or not shape or any(d <= 0 for d in shape):
        raise argparse.ArgumentTypeError(f"expected NAME=N,C,H,W with positive sizes, found {text!r}")
    return name, shape


def _net_options(parser: argparse.ArgumentParser, weights: bool = True) -> None:
    parser.add_argument("prototxt", help="the net definition (.prototxt)")
    if weights:
        parser.add_argument("--weights", "-w", metavar="CAFFEMODEL", help="trained weights (.caffemodel)")
        parser.add_argument("--allow-missing-weights", action="store_true",
                            help="initialise layers the caffemodel lacks from their fillers instead of failing")
    parser.add_argument("--input-shape", metavar="NAME=N,C,H,W", action="append", type=parse_input_shape,
                        default=[], help="give or override an input's shape (repeatable)")
    parser.add_argument("--phase", default="TEST", type=str.upper, choices=("TEST", "TRAIN"),
                        help="which phase's include/exclude rules apply (default TEST)")
    parser.add_argument("--stage", action="append", default=[], help="a NetState stage (repeatable)")
    parser.add_argument("--level", type=int, default=0, help="the NetState level")
    parser.add_argument("--proto", metavar="CAFFE_PROTO", help="a fork's caffe.proto to parse the net with")


def read_from_args(args: argparse.Namespace, *, init: str = "fillers", prototxt: str | None = None):
    from .api import read_net
    return read_net(prototxt or args.prototxt, getattr(args, "weights", None), phase=args.phase, stages=args.stage,
                    level=args.level, input_shape=dict(args.input_shape),
                    allow_missing_weights=getattr(args, "allow_missing_weights", False), proto=args.proto,
                    init=init)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(prog="protodef", description="Read, convert and draw Caffe networks.")
    parser.add_argument("--version", action="version", version=f"protodef {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = sub.add_parser("info", help="table of layers, shapes, parameters and multiply-accumulates")
    _net_options(info)
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.add_argument("--passes", action="store_true", help="also run the lowering passes and show what each changed")

    convert = sub.add_parser("convert", help="convert to ONNX or PyTorch")
    convert.add_argument("prototxt", nargs="+", help="one or more net definitions")
    convert.add_argument("--weights", "-w", metavar="CAFFEMODEL", help="trained weights (.caffemodel)")
    convert.add_argument("--allow-missing-weights", action="store_true")
    convert.add_argument("--input-shape", metavar="NAME=N,C,H,W", action="append", type=parse_input_shape,
                         default=[])
    convert.add_argument("--phase", default="TEST", type=str.upper, choices=("TEST", "TRAIN"))
    convert.add_argument("--stage", action="append", default=[])
    convert.add_argument("--level", type=int, default=0)
    convert.add_argument("--proto", metavar="CAFFE_PROTO")
    convert.add_argument("--to", choices=("onnx", "pytorch"), default="onnx", help="target (default onnx)")
    convert.add_argument("-o", "--output", help="output file (default: beside the prototxt)")
    convert.add_argument("--opset", type=int, help="ONNX opset (default: the newest onnxruntime supports)")
    convert.add_argument("--dynamic-batch", action="store_true", help="make the first dimension symbolic")
    convert.add_argument("--no-fold", action="store_true", help="keep BatchNorm/Scale instead of folding them")
    convert.add_argument("--format", dest="torch_format", choices=("source", "export"), default="source",
                         help="pytorch: a .py module + weights (source) or a torch.export program (export)")

    draw = sub.add_parser("draw", help="draw the net as a block diagram (graphviz)")
    _net_options(draw, weights=False)
    draw.add_argument("-o", "--output", help="output file (default: the prototxt's stem + format)")
    draw.add_argument("--format", choices=("svg", "png", "pdf", "dot"), default="svg")
    draw.add_argument("--rankdir", choices=("TB", "LR", "BT", "RL"), default="TB")
    draw.add_argument("--collapse", action="store_true", help="fold repeated blocks into one node each")
    draw.add_argument("--shapes", dest="shapes", action="store_true", default=True)
    draw.add_argument("--no-shapes", dest="shapes", action="store_false")
    draw.add_argument("--folded", action="store_true", help="draw the net after the lowering passes")

    upgrade = sub.add_parser("upgrade", help="rewrite a V0/V1 prototxt in today's format")
    upgrade.add_argument("prototxt")
    upgrade.add_argument("-o", "--output", help="output file (default: standard output)")

    check = sub.add_parser("check", help="run every backend on the same inputs and compare, blob by blob")
    _net_options(check)
    check.add_argument("--seed", type=int, default=0)
    check.add_argument("--all", dest="every_blob", action="store_true",
                       help="also print every blob compared, with each backend's difference")
    return parser


@command("info")
def run_info(args: argparse.Namespace) -> int:
    from .info import format_table, summary
    # Folding needs weights: without a caffemodel, --passes folds the fillers' values (as Caffe would init).
    net = read_from_args(args, init="fillers" if args.passes else "none")
    if args.passes:
        from .passes import run_pipeline
        lowered, report = run_pipeline(net)
        if args.json:
            print(json.dumps({**summary(net), "passes": report.as_dicts()}, indent=2))
        else:
            print(format_table(net))
            print()
            print(report.format())
        return 0
    print(json.dumps(summary(net), indent=2) if args.json else format_table(net))
    return 0


@command("upgrade")
def run_upgrade(args: argparse.Namespace) -> int:
    from .source import read_prototxt
    from .upgrade import upgrade_text
    param, _ = read_prototxt(args.prototxt)
    text = upgrade_text(param, path=args.prototxt)
    if args.output:
        from .write import atomic_write
        atomic_write(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


@command("convert")
def run_convert(args: argparse.Namespace) -> int:
    if len(args.prototxt) > 1 and args.output:
        raise SchemaError("-o names one output file; with several prototxts, outputs go beside each one")
    if len(args.prototxt) > 1 and args.weights:
        raise SchemaError("--weights names one caffemodel; convert nets with weights one at a time")
    failed = 0
    for prototxt in args.prototxt:
        try:
            output = _convert_one(args, prototxt)
            print(f"{prototxt} -> {output}")
        except ProtodefError as error:
            if len(args.prototxt) == 1:
                raise
            failed += 1
            print(f"protodef: {error}", file=sys.stderr)
    if failed:
        print(f"protodef: {failed} of {len(args.prototxt)} conversions failed", file=sys.stderr)
        return 1
    return 0


def _convert_one(args: argparse.Namespace, prototxt: str) -> str:
    net = read_from_args(args, prototxt=prototxt)
    if args.to == "onnx":
        from converters.onnx import save_onnx
        output = args.output or str(Path(prototxt).with_suffix(".onnx"))
        save_onnx(net, output, opset=args.opset, dynamic_batch=args.dynamic_batch, fold=not args.no_fold)
        return output
    from converters.pytorch import save_pytorch
    suffix = ".pt2" if args.torch_format == "export" else ".py"
    output = args.output or str(Path(prototxt).with_suffix(suffix))
    save_pytorch(net, output, fold=not args.no_fold, form=args.torch_format)
    return output


@command("draw")
def run_draw(args: argparse.Namespace) -> int:
    from converters.graphviz import save_drawing
    net = read_from_args(args, init="none")
    output = args.output or str(Path(args.prototxt).with_suffix("." + args.format))
    message = save_drawing(net, output, fmt=args.format, rankdir=args.rankdir, collapse=args.collapse,
                           shapes=args.shapes, folded=args.folded)
    print(message or f"{args.prototxt} -> {output}")
    return 0


@command("check")
def run_check(args: argparse.Namespace) -> int:
    from .check import check_net, format_report
    net = read_from_args(args, init="random" if not args.weights else "fillers")
    report = check_net(net, seed=args.seed, prototxt=args.prototxt, weights=args.weights)
    print(format_report(report, every_blob=args.every_blob))
    return 0 if report.ok else 1


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: files being written are abandoned cleanly (protodef/write.py)."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if _main_thread() else None
    try:
        return _run(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _run(args: argparse.Namespace) -> int:
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            code = COMMANDS[args.command](args)
        _report_warnings(caught, shown_by_command=args.command == "info")
        return code
    except ProtodefError as error:
        if args.debug:
            raise
        print(f"protodef: {error}", file=sys.stderr)
        return error.exit_code
    except _Terminated:
        print("protodef: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("protodef: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # `protodef info ... | head`: the reader left; not an error of ours
        sys.stderr.close()
        return 0


def _report_warnings(caught: list, *, shown_by_command: bool) -> None:
    """protodef's own warnings (NaN weights, fillers used, unused weights) as one line each on stderr;
    `info` prints them in its table already. Other libraries' warnings stay quiet."""
    from .attach import ProtodefWarning
    if shown_by_command:
        return
    for warning in caught:
        if issubclass(warning.category, ProtodefWarning):
            print(f"protodef: warning: {warning.message}", file=sys.stderr)


def exit_code_table() -> str:
    """The README's exit-code table, generated from the error classes."""
    rows = ["| code | kind | meaning |", "| --- | --- | --- |", "| 0 | ok | success |",
            "| 1 | error | any other failure (e.g. some files of a batch conversion failed) |",
            "| 2 | usage | bad command-line arguments |"]
    for kind in ERROR_KINDS:
        rows.append(f"| {kind.exit_code} | {kind.kind} | {kind.__doc__.strip().splitlines()[0]} |")
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
