"""Fuzzing: mutated prototxts and caffemodels must fail with a ProtodefError and nothing else, quickly.

Seeds are real nets: samples/ and ../shared/corpus (its cases are left out when it is not there), and a
caffemodel our writer makes for samples/tiny. Mutations work on the text (numbers, names, lines, bytes), on
the schema (parse into caffe_pb2, change random fields, write it back) and on the binary (bit flips,
truncation, field-level edits of blobs and layers). Whatever comes out of reading goes on through the
lowering passes, both backends and the drawing, when it is small enough to be quick.

CI runs a fixed, derandomized set of cases (the whole file in well under a minute). For a long run:

    PROTODEF_FUZZ_EXAMPLES=100000 python -m pytest tests/test_fuzz.py -x

which runs that many cases per test, with fresh randomness each run.
"""
from __future__ import annotations

import math
import os
import random
import re
import signal
import subprocess
import sys
import time
import warnings
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import REPO, SAMPLES, corpus_files

from caffe_proto import caffe_pb2
from protodef.api import read_net
from protodef.attach import expected_weight_shapes, fill_weights
from protodef.errors import ProtodefError
from protodef.weights import read_caffemodel, write_caffemodel

LONG_RUN = int(os.environ.get("PROTODEF_FUZZ_EXAMPLES", "0") or 0)
CASE_SECONDS = 20          # hard bound on one case, hang or not (SIGALRM)
SMALL_NET = 2_000_000      # parameters: nets up to this size also go through the backends

TINY = SAMPLES / "tiny" / "tiny.prototxt"
# Small corpus nets that go through the backends; the rest are only read (larger, or forks' layers).
CONVERTIBLE = ["bvlc_caffe/mnist_lenet.prototxt", "bvlc_caffe/cifar10_cifar10_quick.prototxt",
               "mtcnn/det1.prototxt", "mtcnn/det3.prototxt", "age_gender/age_deploy.prototxt",
               "bvlc_caffe_v0_2014/imagenet_imagenet_deploy.prototxt"]


def fuzz_settings(ci_examples: int, deadline_s: float = 10.0):
    """Bounded and reproducible in CI; PROTODEF_FUZZ_EXAMPLES makes it long and random."""
    return settings(max_examples=LONG_RUN or ci_examples, derandomize=not LONG_RUN, database=None,
                    deadline=timedelta(seconds=deadline_s), print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


def _seed_texts() -> list[tuple[str, str]]:
    seeds = [TINY, SAMPLES / "ResNet-50.prototxt"] + corpus_files()
    return [(str(p), p.read_text(errors="replace")) for p in seeds if p.exists()]


SEEDS = _seed_texts()
SMALL_SEEDS = [(p, t) for p, t in SEEDS if p == str(TINY) or any(p.endswith(c) for c in CONVERTIBLE)]


# Mutations draw from a Random seeded by hypothesis: every case differs (hypothesis's own random streams start
# from all-zero draws, which would repeat one mutation), and a failure names its seed.
SEEDED = st.integers(0, 2**32 - 1).map(random.Random)


class CaseTimeout(Exception):
    """A case ran past CASE_SECONDS: a hang, whatever hypothesis's deadline would say afterwards."""


@contextmanager
def time_bound(seconds: int = CASE_SECONDS):
    def expire(signum, frame):
        raise CaseTimeout(f"the case ran past {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def only_protodef_errors(function, *args, **kwargs):
    """Run `function`; a ProtodefError is a fine outcome (one line, naming something); anything else fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return function(*args, **kwargs)
        except ProtodefError as error:
            message = str(error)
            assert "\n" not in message and "\r" not in message, f"a multi-line error message: {message!r}"
            assert message, "an empty error message"
            return None


def go_further(net, *, fill: bool) -> None:
    """Put a net that read fine through what users do next: passes, both backends, the drawing."""
    if net is None:
        return
    params = sum(math.prod(s) for layer in net.layers() for s in expected_weight_shapes(net, layer))
    if params > SMALL_NET or len(net) > 400:
        return
    if fill:
        net = only_protodef_errors(fill_weights, net, seed=0)
        if net is None:
            return
    from protodef.api import to_onnx
    only_protodef_errors(to_onnx, net)
    from protodef import load
    only_protodef_errors(load, net)
    from converters.graphviz import draw
    only_protodef_errors(draw, net)


# ------------------------------------------------------------------------------------- prototxt text

_NUMBER = re.compile(r"(?<![\w.\"])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w\"])")
_STRING = re.compile(r'"[^"\n]*"')
_ODD_NUMBERS = ["0", "-1", "-7", "1", "2", "3", "5", "1000000000", "4294967295", "4294967296",
                "9223372036854775807", "99999999999999999999", "1e40", "nan", "inf", "-0", "0.5", "2147483648"]
_ODD_TEXT = ["{", "}", "{{", ":", '"', "'", "#", "\\", "<", ">", "[", "]", "\0", "\r", "\u2028", "\xff", "layer {",
             'type: "Python"', "bottom:", "top:", "include { phase: TRAIN }", "\\x", "\\u"]


def mutate_text(text: str, rng: random.Random) -> str:
    for _ in range(rng.randint(1, 5)):
        choice = rng.random()
        numbers = list(_NUMBER.finditer(text))
        if choice < 0.4 and numbers:
            m = rng.choice(numbers)
            text = text[:m.start()] + rng.choice(_ODD_NUMBERS) + text[m.end():]
        elif choice < 0.55:
            strings = list(_STRING.finditer(text))
            if len(strings) > 1:   # a name where another was: bottoms, tops, types and names mixed up
                a, b = rng.sample(strings, 2)
                text = text[:a.start()] + b.group() + text[a.end():]
        elif choice < 0.7 and text:
            lines = text.split("\n")
            i = rng.randrange(len(lines))
            if rng.random() < 0.5:
                del lines[i]
            else:
                lines.insert(rng.randrange(len(lines) + 1), lines[i])
            text = "\n".join(lines)
        elif choice < 0.85 and text:
            i = rng.randrange(len(text))
            text = text[:i] + text[i + rng.randint(1, 8):]
        else:
            i = rng.randrange(len(text) + 1)
            text = text[:i] + rng.choice(_ODD_TEXT) + text[i:]
    return text


@fuzz_settings(ci_examples=300)
@given(seed=st.sampled_from(range(len(SEEDS))), rng=SEEDED)
def test_mutated_prototxt_text(tmp_path_factory, seed, rng):
    source, text = SEEDS[seed]
    path = tmp_path_factory.mktemp("text") / "net.prototxt"
    path.write_text(mutate_text(text, rng), errors="surrogateescape")
    with time_bound():
        only_protodef_errors(read_net, path, init="none")


@fuzz_settings(ci_examples=200)
@given(seed=st.sampled_from(range(len(SMALL_SEEDS))), rng=SEEDED)
def test_mutated_small_nets_through_the_backends(tmp_path_factory, seed, rng):
    source, text = SMALL_SEEDS[seed]
    path = tmp_path_factory.mktemp("small") / "net.prototxt"
    path.write_text(mutate_text(text, rng), errors="surrogateescape")
    with time_bound():
        net = only_protodef_errors(read_net, path, init="none")
        go_further(net, fill=True)


@fuzz_settings(ci_examples=100)
@given(seed=st.sampled_from(range(len(SEEDS))), data=st.binary(min_size=1, max_size=16), rng=SEEDED)
def test_prototxt_bytes_flipped(tmp_path_factory, seed, data, rng):
    raw = bytearray(SEEDS[seed][1].encode())
    for byte in data:
        raw[rng.randrange(len(raw))] ^= byte or 0x80
    cut = len(raw) if rng.random() < 0.7 else rng.randrange(len(raw))
    path = tmp_path_factory.mktemp("bytes") / "net.prototxt"
    path.write_bytes(bytes(raw[:cut]))
    with time_bound():
        only_protodef_errors(read_net, path, init="none")


# ----------------------------------------------------------------------------- prototxt through the schema

def _scalar_for(field, rng: random.Random):
    if field.enum_type is not None:
        numbers = [v.number for v in field.enum_type.values]
        return rng.choice(numbers)
    kind = field.cpp_type
    if kind == field.CPPTYPE_BOOL:
        return rng.random() < 0.5
    if kind == field.CPPTYPE_STRING:
        return rng.choice(["", "x", "data", "Python", "ReLU", "Convolution", "a b", "é", "{", "'", "\n", "\r\x00"])
    if kind in (field.CPPTYPE_FLOAT, field.CPPTYPE_DOUBLE):
        return rng.choice([0.0, -1.0, 1.0, 0.5, 1e-30, 1e30, float("nan"), float("inf"), -float("inf")])
    unsigned = kind in (field.CPPTYPE_UINT32, field.CPPTYPE_UINT64)
    wide = kind in (field.CPPTYPE_INT64, field.CPPTYPE_UINT64)
    values = [0, 1, 2, 3, 7, 1 << 20, (1 << 31) - 1]
    if not unsigned:
        values += [-1, -2, -(1 << 31)]
    values += [(1 << 32) - 1] if unsigned and not wide else []
    values += [(1 << 62), (1 << 63) - 1] if wide else []
    return rng.choice(values)


def mutate_message(message, rng: random.Random, depth: int = 0) -> None:
    """Set, clear or add one field somewhere in `message` (descending into sub-messages at random)."""
    fields = list(message.DESCRIPTOR.fields)
    set_fields = [f for f, _ in message.ListFields()]
    pool = set_fields if set_fields and rng.random() < 0.6 else fields
    field = rng.choice(pool)
    repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
    if field.message_type is not None:
        if repeated:
            items = getattr(message, field.name)
            if items and rng.random() < 0.2:
                del items[rng.randrange(len(items))]
                return
            child = items[rng.randrange(len(items))] if items and rng.random() < 0.7 else items.add()
        else:
            if message.HasField(field.name) and rng.random() < 0.15:
                message.ClearField(field.name)
                return
            child = getattr(message, field.name)
        if depth < 6:
            mutate_message(child, rng, depth + 1)
        return
    value = _scalar_for(field, rng)
    if repeated:
        items = getattr(message, field.name)
        if items and rng.random() < 0.3:
            del items[rng.randrange(len(items))]
        elif items and rng.random() < 0.5:
            items[rng.randrange(len(items))] = value
        else:
            items.append(value)
    elif rng.random() < 0.1:
        message.ClearField(field.name)
    else:
        setattr(message, field.name, value)


def mutate_net(param, rng: random.Random) -> None:
    layers = param.layer if len(param.layer) else param.layers
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if not len(layers) or choice < 0.1:
            mutate_message(param, rng)
        elif choice < 0.75:
            mutate_message(layers[rng.randrange(len(layers))], rng)
        elif choice < 0.85:
            del layers[rng.randrange(len(layers))]
        elif choice < 0.93:   # a layer again, as a copy (same name, same tops)
            layers.add().CopyFrom(layers[rng.randrange(len(layers))])
        else:                 # rewire a bottom to some other blob
            layer = layers[rng.randrange(len(layers))]
            blobs = [b for other in layers for b in list(other.top)]
            if layer.bottom and blobs:
                layer.bottom[rng.randrange(len(layer.bottom))] = rng.choice(blobs)


def _parsed_seeds(pool) -> list[tuple[str, bytes]]:
    out = []
    for path, text in pool:
        param = caffe_pb2.NetParameter()
        try:
            text_format.Merge(text, param)
        except text_format.ParseError:
            continue   # fork files: their own schema
        out.append((path, param.SerializeToString()))
    return out


SCHEMA_SEEDS = _parsed_seeds(SEEDS)
SMALL_SCHEMA_SEEDS = _parsed_seeds(SMALL_SEEDS)


@fuzz_settings(ci_examples=300)
@given(seed=st.sampled_from(range(len(SCHEMA_SEEDS))), rng=SEEDED)
def test_schema_mutations(tmp_path_factory, seed, rng):
    param = caffe_pb2.NetParameter.FromString(SCHEMA_SEEDS[seed][1])
    mutate_net(param, rng)
    path = tmp_path_factory.mktemp("schema") / "net.prototxt"
    path.write_text(text_format.MessageToString(param))
    with time_bound():
        only_protodef_errors(read_net, path, init="none")


@fuzz_settings(ci_examples=200)
@given(seed=st.sampled_from(range(len(SMALL_SCHEMA_SEEDS))), rng=SEEDED)
def test_schema_mutations_through_the_backends(tmp_path_factory, seed, rng):
    param = caffe_pb2.NetParameter.FromString(SMALL_SCHEMA_SEEDS[seed][1])
    mutate_net(param, rng)
    path = tmp_path_factory.mktemp("schema") / "net.prototxt"
    path.write_text(text_format.MessageToString(param))
    with time_bound():
        net = only_protodef_errors(read_net, path, init="none")
        go_further(net, fill=True)


# -------------------------------------------------------------------------------------------- caffemodels

@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> bytes:
    """A caffemodel for samples/tiny: seeded random weights, written by our writer (with one V1-style blob
    using the legacy 4-D shape fields, so those are fuzzed too)."""
    net = read_net(TINY, init="random", seed=3)
    path = tmp_path_factory.mktemp("weights") / "tiny.caffemodel"
    write_caffemodel(path, [(layer.caffe_name, layer.type, list(layer.weights)) for layer in net.layers()
                            if layer.weights])
    model = caffe_pb2.NetParameter.FromString(path.read_bytes())
    fc = next(layer for layer in model.layer if layer.name == "fc")
    bias = fc.blobs[1]
    size = bias.shape.dim[0]
    bias.ClearField("shape")
    bias.num, bias.channels, bias.height, bias.width = 1, 1, 1, size
    return model.SerializeToString()


def _read_and_use(path: Path) -> None:
    with time_bound():
        model = only_protodef_errors(read_caffemodel, path)
        if model is not None:
            for layer in model.layers:
                assert all(b.dtype == np.float32 for b in layer.blobs)
        net = only_protodef_errors(read_net, TINY, path)
        go_further(net, fill=False)


@fuzz_settings(ci_examples=150)
@given(flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(1, 255)), min_size=1, max_size=6),
       cut=st.one_of(st.none(), st.integers(0, 10**9)))
def test_caffemodel_bit_flips_and_truncation(tmp_path_factory, tiny_weights, flips, cut):
    raw = bytearray(tiny_weights)
    for where, mask in flips:
        raw[where % len(raw)] ^= mask
    if cut is not None:
        raw = raw[:cut % len(raw)]
    path = tmp_path_factory.mktemp("flip") / "tiny.caffemodel"
    path.write_bytes(bytes(raw))
    _read_and_use(path)


def mutate_blobs(model, rng: random.Random) -> None:
    """Edits a stranger's caffemodel could have: shapes against data, odd sizes, names, types, NaN."""
    for _ in range(rng.randint(1, 3)):
        layer = model.layer[rng.randrange(len(model.layer))]
        choice = rng.random()
        if not layer.blobs or choice < 0.1:
            layer.name = rng.choice(["", "nope", layer.name + "_x"] + [other.name for other in model.layer])
            continue
        blob = layer.blobs[rng.randrange(len(layer.blobs))]
        if choice < 0.3:
            dims = blob.shape.dim
            if dims and rng.random() < 0.7:
                dims[rng.randrange(len(dims))] = rng.choice([0, 1, 2, -1, -(1 << 40), 1 << 40, (1 << 63) - 1])
            elif dims and rng.random() < 0.5:
                del dims[rng.randrange(len(dims))]
            else:
                dims.append(rng.choice([1, 2, 0]))
        elif choice < 0.45:
            if blob.data and rng.random() < 0.5:
                del blob.data[rng.randrange(len(blob.data)):]
            else:
                blob.data.extend([1.0] * rng.randint(1, 5))
        elif choice < 0.55:
            if blob.data:
                blob.data[rng.randrange(len(blob.data))] = rng.choice([float("nan"), float("inf"), -float("inf")])
        elif choice < 0.65:   # legacy 4-D fields, which win over the shape
            setattr(blob, rng.choice(["num", "channels", "height", "width"]), rng.choice([0, 1, 2, -1, 1 << 30]))
        elif choice < 0.72:
            blob.double_data.extend(rng.choice([[1.0], list(map(float, blob.data)), [1e300] * 3]))
        elif choice < 0.8:
            del layer.blobs[rng.randrange(len(layer.blobs))]
        elif choice < 0.88:
            layer.blobs.add().CopyFrom(blob)
        elif choice < 0.94:
            layer.type = rng.choice(["", "Convolution", "InnerProduct", "Python"])
        else:
            model.layer.add().CopyFrom(layer)


@fuzz_settings(ci_examples=200)
@given(rng=SEEDED)
def test_caffemodel_field_mutations(tmp_path_factory, tiny_weights, rng):
    model = caffe_pb2.NetParameter.FromString(tiny_weights)
    mutate_blobs(model, rng)
    path = tmp_path_factory.mktemp("fields") / "tiny.caffemodel"
    path.write_bytes(model.SerializeToString())
    _read_and_use(path)


# --------------------------------------------------------------------------------------- pathological files

PATHOLOGICAL = {
    "nested_braces": lambda: "layer " + "{ " * 100_000,
    "nested_closed": lambda: 'layer { name: "a" type: "ReLU" relu_param ' + "{ " * 100_000 + "}" * 100_001,
    "nested_unknown_field": lambda: ('input: "x" input_shape { dim: 1 }\nlayer { name: "a" type: "ReLU" '
                                     'bottom: "x" top: "y" fork_param ' + "{ a " * 100_000 + "}" * 100_001),
    "closing_braces": lambda: "}" * 100_000,
    "fifty_megabytes_of_layers": lambda: 'input: "x" input_shape { dim: 1 dim: 2 }\n' + "".join(
        f'layer {{ name: "r{i}" type: "ReLU" bottom: "x" top: "x" }}\n' for i in range(850_000)),
    "one_huge_line": lambda: 'name: "' + "a" * 50_000_000 + '"',
    "a_megabyte_of_layers": lambda: 'input: "x" input_shape { dim: 1 dim: 2 }\n' + "".join(
        f'layer {{ name: "r{i}" type: "ReLU" bottom: "x" top: "x" }}\n' for i in range(17_000)),
    "many_unknown_fields": lambda: 'input: "x" input_shape { dim: 1 dim: 2 }\n' + "".join(
        f'layer {{ name: "r{i}" type: "ReLU" bottom: "x" top: "x" fork_param {{ a: 1 }} }}\n' for i in range(15_000)),
}


@pytest.mark.parametrize("case", sorted(PATHOLOGICAL))
def test_pathological_prototxt_finishes_in_seconds(tmp_path, case):
    path = tmp_path / f"{case}.prototxt"
    path.write_text(PATHOLOGICAL[case]())
    script = ("import sys, warnings; warnings.simplefilter('ignore')\n"
              "from protodef.api import read_net\nfrom protodef.errors import ProtodefError\n"
              "try:\n    net = read_net(sys.argv[1], init='none')\n"
              "except ProtodefError as error:\n    print('error:', str(error)[:300])\n"
              "else:\n    print('read', len(net), 'layers')\n")
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=60,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-2000:]
    assert elapsed < 15, f"{case} took {elapsed:.1f} s"
    assert result.stdout.startswith(("error: ", "read ")), result.stdout


def test_unknown_fields_of_many_layers_are_looked_up_in_linear_time():
    # build asks the SourceMap for each layer's unknown fork fields; one scan per layer would be quadratic.
    from protodef.errors import Location
    from protodef.forkfields import UnknownField
    from protodef.source import SourceMap
    layers = 30_000     # quadratic: about a minute; linear: a few milliseconds
    source = SourceMap("net.prototxt")
    source.unknown_fields = [UnknownField(i, "fork_param", {"a": 1}, Location("net.prototxt", i + 1, 3))
                             for i in range(layers)]
    start = time.monotonic()
    found = [source.unknown_in_layer(i) for i in range(layers)]
    assert time.monotonic() - start < 2
    assert all(len(f) == 1 and f[0].layer_index == i for i, f in enumerate(found))
    source.unknown_fields = source.unknown_fields[:10]   # replaced: looked up afresh
    assert source.unknown_in_layer(50) == [] and source.unknown_in_layer(5)[0].layer_index == 5
