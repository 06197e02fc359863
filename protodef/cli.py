"""Command line: `protodef info|convert|draw|upgrade|check ...`. Errors are one line on stderr, no traceback."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import warnings
from typing import Callable, Sequence

from .errors import ERROR_KINDS, DependencyError, ProtodefError, UsageError

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str):
    def register(function):
        COMMANDS[name] = function
        return function
    return register


def parse_input_shape(text: str) -> tuple[str, tuple[int | str, ...]]:
    """`data=1,3,224,224` -> ("data", (1, 3, 224, 224)); a name is a symbolic size: `data=N,3,H,W` ->
    ("data", ("N", 3, "H", "W")), a net for any batch and image size."""
    name, sep, dims = text.rpartition("=")
    parts = [d.strip() for d in dims.split(",")] if "," in dims else [d.strip() for d in dims.split("x")]
    shape = tuple(int(d) if d.isdigit() else d for d in parts if d)
    # A size name starts with a capital letter (N, H, W, Height), so that a mistyped number is not one.
    named = all(isinstance(d, int) and d > 0 or d[:1].isupper() and d.isidentifier() and d.isascii() for d in shape)
    if not sep or not name or not shape or not named:
        raise argparse.ArgumentTypeError(f"expected NAME=N,C,H,W with positive sizes or size names (N, H, W), "
                                         f"found {text!r}")
    return name, shape


def _net_options(parser: argparse.ArgumentParser, *, weights: bool = True, several: bool = False) -> None:
    if several:
        parser.add_argument("prototxt", nargs="+", help="one or more net definitions (.prototxt)")
    else:
        parser.add_argument("prototxt", help="the net definition (.prototxt)")
    if weights:
        parser.add_argument("--weights", "-w", metavar="CAFFEMODEL", help="trained weights (.caffemodel)")
        parser.add_argument("--allow-missing-weights", action="store_true",
                            help="initialise layers the caffemodel lacks from their fillers instead of failing")
    parser.add_argument("--input-shape", metavar="NAME=N,C,H,W", action="append", type=parse_input_shape,
                        default=[], help="give or override an input's shape (repeatable); a capitalised name is "
                        "a symbolic size: data=N,3,H,W converts for any batch and image size")
    parser.add_argument("--phase", default="TEST", type=str.upper, choices=("TEST", "TRAIN"),
                        help="which phase's include/exclude rules apply (default TEST)")
    parser.add_argument("--stage", action="append", default=[], help="a NetState stage (repeatable)")
    parser.add_argument("--level", type=int, default=0, help="the NetState level (default 0)")
    parser.add_argument("--proto", metavar="CAFFE_PROTO", help="a fork's caffe.proto to parse the net with")
    # also after the subcommand (`protodef convert x.prototxt --debug`); SUPPRESS keeps `protodef --debug convert`
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error")


def read_from_args(args: argparse.Namespace, *, init: str = "fillers", prototxt: str | None = None,
                   seed: int = 0, lenient: bool = False):
    from .api import read_net
    return read_net(prototxt or args.prototxt, getattr(args, "weights", None), phase=args.phase, stages=args.stage,
                    level=args.level, input_shape=dict(args.input_shape),
                    allow_missing_weights=getattr(args, "allow_missing_weights", False), proto=args.proto,
                    init=init, seed=seed, lenient=lenient)


def _subcommand(sub, name: str, help_text: str, examples: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                          epilog="examples:\n" + examples, formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    parser = argparse.ArgumentParser(
        prog="protodef", description="Read, convert and draw Caffe networks.",
        epilog="Run `protodef COMMAND --help` for a command's options and examples. Exit codes: 0 success, 1 some "
               "files of a batch failed or outputs differ, 2 usage, 3-11 the kind of error (see the README).")
    parser.add_argument("--version", action="version", version=f"protodef {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = _subcommand(sub, "info", "table of layers, shapes, parameters and multiply-accumulates", """\
  protodef info deploy.prototxt
  protodef info deploy.prototxt --json > layers.json
  protodef info deploy.prototxt --passes --input-shape data=1,3,300,300""")
    _net_options(info)
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.add_argument("--passes", action="store_true", help="also run the lowering passes and show what each changed")

    convert = _subcommand(sub, "convert", "convert to ONNX or PyTorch (or an ONNX model to Caffe)", """\
  protodef convert deploy.prototxt -w weights.caffemodel                 # -> deploy.onnx beside it
  protodef convert deploy.prototxt -w weights.caffemodel -o model.onnx --verify
  protodef convert ResNet-50.prototxt -w r50.caffemodel --to pytorch    # -> ResNet_50.py + ResNet_50.pt
  protodef convert nets/*.prototxt --output-dir out/                      # a batch, without weights
  protodef convert deploy.prototxt -w weights.caffemodel -o model.pt2 --fp16
  protodef convert model.onnx                                             # -> model.prototxt + model.caffemodel""")
    _net_options(convert, several=True)
    convert.add_argument("--to", choices=("onnx", "pytorch", "caffe"),
                         help="target (default: what -o's suffix names, .onnx, .py, .pt2 or .prototxt; else onnx, "
                              "and caffe for an .onnx input)")
    convert.add_argument("--target", default="bvlc",
                         help="caffe: the Caffe to write for: bvlc (Caffe 1.0, the default), bvlc-master, opencv, "
                              "ssd, mobilenet-yolo, deeplab")
    convert.add_argument("-o", "--output", metavar="FILE", help="output file (default: beside the prototxt)")
    convert.add_argument("--output-dir", metavar="DIR", help="write each output into DIR (created if missing)")
    convert.add_argument("--opset", type=_opset, help="ONNX opset (default 18, which today's deployment runtimes "
                                                       "accept)")
    convert.add_argument("--dynamic-batch", action="store_true",
                         help="make the first dimension symbolic (as N in --input-shape does)")
    convert.add_argument("--no-fold", action="store_true", help="keep BatchNorm/Scale instead of folding them")
    convert.add_argument("--format", dest="torch_format", choices=("source", "export"),
                         help="pytorch: a .py module + weights (source, the default) or a torch.export program "
                              "(export, .pt2)")
    convert.add_argument("--fp16", action="store_true",
                         help="weights and arithmetic in float16; prints the largest difference from float32")
    convert.add_argument("--verify", action="store_true",
                         help="check an ONNX model with onnx's full checker before writing it, run what was "
                              "written on random inputs against a second backend and print the largest "
                              "difference (exit 1 beyond the tolerance)")
    convert.add_argument("--seed", type=int, default=0,
                         help="seed of the made-up weights without --weights, and of --verify's inputs (default 0)")

    draw = _subcommand(sub, "draw", "draw the net as a block diagram (graphviz)", """\
  protodef draw deploy.prototxt                        # -> deploy.svg beside it
  protodef draw deploy.prototxt -o net.png --collapse  # the format from the suffix
  protodef draw deploy.prototxt --format dot           # no graphviz needed""")
    _net_options(draw, weights=False, several=True)
    draw.add_argument("-o", "--output", metavar="FILE",
                      help="output file; its suffix (.svg .png .pdf .dot) sets the format (default: the prototxt's "
                           "stem + the format)")
    draw.add_argument("--output-dir", metavar="DIR", help="write each drawing into DIR (created if missing)")
    draw.add_argument("--format", choices=("svg", "png", "pdf", "dot"),
                      help="svg, png, pdf (these need graphviz's dot program) or dot (default: from -o, else svg)")
    draw.add_argument("--rankdir", choices=("TB", "LR", "BT", "RL"), default="TB",
                      help="layout direction: top to bottom (default), left to right, ...")
    draw.add_argument("--collapse", action="store_true", help="fold repeated blocks into one node each")
    draw.add_argument("--shapes", dest="shapes", action="store_true", default=True,
                      help="label edges with blob shapes (the default)")
    draw.add_argument("--no-shapes", dest="shapes", action="store_false", help="leave edge labels off")
    draw.add_argument("--folded", action="store_true", help="draw the net after the lowering passes")

    upgrade = _subcommand(sub, "upgrade", "rewrite a V0/V1 prototxt in today's format", """\
  protodef upgrade old.prototxt -o new.prototxt
  protodef upgrade old.prototxt | less""")
    upgrade.add_argument("prototxt", help="the net definition (.prototxt), in any format")
    upgrade.add_argument("-o", "--output", metavar="FILE", help="output file (default: standard output)")
    upgrade.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help="show the traceback of an error")

    check = _subcommand(sub, "check", "run every backend on the same inputs and compare, blob by blob", """\
  protodef check deploy.prototxt -w weights.caffemodel
  protodef check deploy.prototxt --seed 3              # random weights and inputs""")
    _net_options(check)
    check.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    check.add_argument("--all", dest="every_blob", action="store_true",
                       help="also print every blob compared, with each backend's difference")

    weights = _subcommand(sub, "weights", "write a caffemodel of made-up weights, for testing pipelines", """\
  protodef weights deploy.prototxt -o fillers.caffemodel           # Caffe's fillers, as an untrained net
  protodef weights deploy.prototxt -o random.caffemodel --random --seed 1""")
    _net_options(weights, weights=False)
    weights.add_argument("-o", "--output", metavar="FILE",
                         help="the caffemodel to write (default: the prototxt's stem + .caffemodel)")
    weights.add_argument("--random", action="store_true",
                         help="seeded random values instead of the layers' fillers (every path carries signal; "
                              "BatchNorm variances positive)")
    weights.add_argument("--seed", type=int, default=0, help="seed of the values (default 0)")
    return parser


def _opset(text: str) -> int:
    """--opset: a usage error, before anything is read, when outside what the onnx package knows."""
    try:
        opset = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, found {text!r}") from None
    from converters.onnx.lower import opset_range
    low, high = opset_range()
    if not low <= opset <= high:
        raise argparse.ArgumentTypeError(f"expected {low} to {high}, found {opset}")
    return opset


@command("info")
def run_info(args: argparse.Namespace) -> int:
    from .info import format_table, summary
    # Folding needs weights: without a caffemodel, --passes folds the fillers' values (as Caffe would init).
    net = read_from_args(args, init="fillers" if args.passes else "none", lenient=not args.passes)
    if args.passes:
        from .api import lower
        report = lower(net).pass_report
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
    from .convert import Target, require_torch
    from .outputs import convert_target, make_output_dir, refuse_collisions
    several = len(args.prototxt) > 1
    if several and args.output:
        raise UsageError("-o names one output file; with several prototxts, give --output-dir DIR (or none: "
                         "each output goes beside its prototxt)")
    if several and args.weights:
        raise UsageError("--weights names one caffemodel; convert nets with weights one at a time")
    if args.to is None and all(p.lower().endswith(".onnx") for p in args.prototxt):
        args.to = "caffe"     # an ONNX model goes the other way
    to, torch_format = convert_target(args.to, args.torch_format, args.output)
    if to == "pytorch":
        require_torch()     # before any work: one line saying how to install it
    target = Target(to, torch_format, args.opset, args.dynamic_batch, not args.no_fold, args.fp16,
                    check_onnx=args.verify)
    refuse_collisions(args.prototxt, target.suffix, args.output_dir, importable=target.suffix == ".py")
    make_output_dir(args.output_dir)
    steps = 2 + args.fp16 + args.verify
    return _each(args, "conversions", steps,
                 lambda prototxt, progress: _convert_one(args, prototxt, target, progress))


def _each(args: argparse.Namespace, what: str, steps: int, one: Callable) -> int:
    """Run `one` on every prototxt; with several, go on past a failure and say at the end how many failed."""
    from .progress import Progress
    failed = 0
    with Progress(args.command, nets=len(args.prototxt), steps=steps) as progress:
        for prototxt in args.prototxt:
            progress.net(prototxt)
            try:
                failed += one(prototxt, progress)
            except ProtodefError as error:
                if len(args.prototxt) == 1:
                    raise
                failed += 1
                progress.print(f"protodef: {error}", file=sys.stderr)
    if failed and len(args.prototxt) > 1:
        print(f"protodef: {failed} of {len(args.prototxt)} {what} failed", file=sys.stderr)
    return 1 if failed else 0


def _convert_one(args: argparse.Namespace, prototxt: str, target, progress) -> int:
    """Convert one net; 1 when --verify finds a difference beyond the tolerance, else 0."""
    from .convert import cautions, float16_error, verification, write
    from .outputs import output_path
    output = output_path(prototxt, target.suffix, output=args.output, output_dir=args.output_dir,
                         importable=target.suffix == ".py")
    if target.to == "caffe":
        progress.step("exporting")
        progress.print(f"{prototxt} -> {_export_caffe_one(args, prototxt, output)}")
        return 0
    progress.step("reading")
    from .api import lower
    # PyTorch output of a TRAIN-phase net is Caffe's TRAIN net (labels in, losses out), as protodef.load gives it;
    # ONNX holds the net's inference layers either way (the losses are PyTorch's alone).
    training = args.phase == "TRAIN" and target.to == "pytorch"
    net = lower(read_from_args(args, prototxt=prototxt, seed=args.seed), fold=target.fold and not training,
                training=training)
    for line in cautions(net):
        progress.print(f"protodef: {prototxt}: {line}", file=sys.stderr)
    progress.step("converting")
    written = write(net, output, target)
    progress.print(f"{prototxt} -> {', '.join(written)}")
    failed = 0
    if target.float16:
        progress.step("float16 against float32")
        progress.print(f"float16: {float16_error(net, written, target, args.seed).line()}")
    if args.verify:
        progress.step("verifying")
        comparison = verification(net, written, target, args.seed)
        progress.print(f"verify: {comparison.line()}")
        failed = 0 if comparison.agrees else 1
    return failed


def _export_caffe_one(args: argparse.Namespace, path: str, output: str) -> str:
    """An ONNX model to a prototxt and a caffemodel beside it."""
    if not path.lower().endswith(".onnx"):
        raise UsageError(f"--to caffe converts an ONNX model (.onnx), not {path}")
    if args.weights:
        raise UsageError("an ONNX model carries its weights: --weights goes with a prototxt")
    from converters.caffe import to_caffe
    export = to_caffe(path, target=args.target, input_shape=dict(args.input_shape), fold_batchnorm=not args.no_fold)
    prototxt, caffemodel = export.save(output)
    return f"{prototxt} + {caffemodel}"


@command("draw")
def run_draw(args: argparse.Namespace) -> int:
    from .outputs import draw_format, make_output_dir, refuse_collisions
    if len(args.prototxt) > 1 and args.output:
        raise UsageError("-o names one output file; with several prototxts, give --output-dir DIR")
    fmt = draw_format(args.format, args.output)
    refuse_collisions(args.prototxt, "." + fmt, args.output_dir)
    make_output_dir(args.output_dir)
    return _each(args, "drawings", 2, lambda prototxt, progress: _draw_one(args, prototxt, fmt, progress))


def _draw_one(args: argparse.Namespace, prototxt: str, fmt: str, progress) -> int:
    from converters.graphviz import save_drawing

    from .api import drawn_net
    from .outputs import output_path
    output = output_path(prototxt, "." + fmt, output=args.output, output_dir=args.output_dir)
    progress.step("reading")
    net = drawn_net(read_from_args(args, init="none" if not args.folded else "fillers", prototxt=prototxt,
                                   lenient=not args.folded), folded=args.folded)
    progress.step("drawing")
    missing_dot = save_drawing(net, output, fmt=fmt, rankdir=args.rankdir, collapse=args.collapse,
                               shapes=args.shapes)
    if missing_dot:   # the .dot was written instead of what was asked for: not a success
        raise DependencyError(f"graphviz's dot program is not installed: {missing_dot}", where=prototxt)
    progress.print(f"{prototxt} -> {output}")
    return 0


@command("weights")
def run_weights(args: argparse.Namespace) -> int:
    from .outputs import output_path
    from .weights import write_caffemodel
    output = output_path(args.prototxt, ".caffemodel", output=args.output, output_dir=None)
    net = read_from_args(args, init="random" if args.random else "fillers", seed=args.seed)
    layers = [(layer.caffe_name, layer.type, list(layer.weights)) for layer in net.layers()]
    write_caffemodel(output, layers, name=net.name)
    values = sum(blob.size for _, _, blobs in layers for blob in blobs)
    origin = "seeded random values" if args.random else "the layers' fillers"
    print(f"{args.prototxt} -> {output} ({values} values from {origin}, seed {args.seed})")
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
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help()     # bare `protodef`: the help, and the usage error's exit code (no command ran)
        return 2
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
            "| 1 | error | any other failure: some files of a batch failed; `check` or `convert --verify` found "
            "outputs that differ |",
            "| 2 | usage | bad command-line arguments (and bare `protodef`, which prints the help) |"]
    for kind in ERROR_KINDS:
        rows.append(f"| {kind.exit_code} | {kind.kind} | {kind.__doc__.strip().splitlines()[0]} |")
    return "\n".join(rows)


if __name__ == "__main__":
    raise SystemExit(main())
