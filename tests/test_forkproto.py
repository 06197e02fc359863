"""Tests for protodef.forkproto: our .proto parser against protoc's output (the generated caffe_pb2, and
protoc itself where grpcio-tools is installed), prototxts parsed with both, a fork's schema end to end,
and located errors."""
from __future__ import annotations

import importlib.util
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, text_format

from caffe_proto import caffe_pb2
from protodef.errors import InputError, ParseError, SchemaError
from protodef.forkproto import MAX_NESTING, build_module, compile_proto, parse_proto
from tests.support import CORPUS

CAFFE_PROTO = Path(__file__).resolve().parents[1] / "caffe_proto" / "caffe.proto"
NET_HEAD = "message NetParameter { repeated LayerParameter layer = 100; }\n" \
           "message LayerParameter { optional string name = 1; }\n"

MINI_FORK = """\
// A fork's schema, as small as protodef needs.
syntax = "proto2";
package caffe;

message NetParameter {
  optional string name = 1;
  repeated LayerParameter layer = 100;
}

message LayerParameter {
  optional string name = 1;
  optional string type = 2;
  repeated string bottom = 3;
  repeated string top = 4;
  optional MyParameter my_param = 5000;   /* the fork's addition */
}

message MyParameter {
  optional float gain = 1 [default = 2.5];
  enum Mode {A=0; B=1;}
  optional Mode mode = 2 [default = B];
}
"""


def _float32(value: float) -> float:
    return struct.unpack("<f", struct.pack("<f", value))[0]


def _normalized(file_proto: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """protoc writes a float default as text in more than one way ("1e-08", "9.99999994e-09"): compare the
    float32 they stand for."""
    copy = descriptor_pb2.FileDescriptorProto()
    copy.CopyFrom(file_proto)
    pending = list(copy.message_type)
    while pending:
        message = pending.pop()
        pending.extend(message.nested_type)
        for f in message.field:
            if f.type == f.TYPE_FLOAT and f.HasField("default_value"):
                f.default_value = repr(_float32(float(f.default_value)))
    return copy


# ----------------------------------------------------------------------------------------------------------
# Our caffe.proto, compiled by us, equals the protoc-generated caffe_pb2


def test_caffe_proto_gives_the_descriptors_protoc_gave():
    ours, notes = parse_proto(CAFFE_PROTO.read_bytes(), path=str(CAFFE_PROTO))
    protoc = descriptor_pb2.FileDescriptorProto.FromString(caffe_pb2.DESCRIPTOR.serialized_pb)
    assert notes == []
    assert len(ours.message_type) == len(protoc.message_type) > 90
    for mine, theirs in zip(_normalized(ours).message_type, _normalized(protoc).message_type):
        assert mine == theirs, mine.name
    assert _normalized(ours) == _normalized(protoc)


def test_compiled_caffe_proto_has_equal_descriptors_and_defaults():
    module = compile_proto(CAFFE_PROTO)
    ours, reference = descriptor_pb2.FileDescriptorProto(), descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(ours)
    caffe_pb2.DESCRIPTOR.CopyToProto(reference)
    assert ours == reference
    # Behaves like the generated module for what protodef uses.
    assert module.NetParameter is not caffe_pb2.NetParameter
    assert module.TEST == caffe_pb2.TEST == 1
    assert module.Phase.Name(0) == "TRAIN"
    assert module.PoolingParameter.MAX == caffe_pb2.PoolingParameter.MAX
    assert module.V1LayerParameter.LayerType.Value("CONVOLUTION") == 4
    layer = module.LayerParameter()
    assert layer.convolution_param.bias_term is True
    assert layer.batch_norm_param.eps == pytest.approx(1e-5, rel=1e-6)
    assert module.BlobShape.DESCRIPTOR.fields_by_name["dim"].is_packed


def _corpus_prototxts():
    return sorted(CORPUS.glob("*/*.prototxt"))


@pytest.mark.corpus
def test_corpus_prototxts_parse_to_equal_messages():
    module = compile_proto(CAFFE_PROTO)
    compared = 0
    for path in _corpus_prototxts():
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            reference = text_format.Parse(text, caffe_pb2.NetParameter())
        except text_format.ParseError:
            with pytest.raises(text_format.ParseError):    # the generated bindings reject it too
                text_format.Parse(text, module.NetParameter())
            continue
        ours = text_format.Parse(text, module.NetParameter())
        assert ours.SerializeToString(deterministic=True) == reference.SerializeToString(deterministic=True), path
        compared += 1
    assert compared >= 5


# ----------------------------------------------------------------------------------------------------------
# The language, checked against protoc itself

EVERYTHING = r"""
syntax = "proto2";
/* block
   comment */ package fork.v1;
option java_package = "org.example";   // kept, as protoc keeps it
import "google/protobuf/descriptor.proto";

message NetParameter { repeated Layer layer = 1; repeated Layer layers = 2; }

message Layer {
  optional float f_exp = 1 [default = 1e-5];
  optional double d_tenth = 2 [default = 0.1];
  optional float f_inf = 3 [default = inf];
  optional float f_neg_inf = 4 [default = -inf];
  optional double d_nan = 5 [default = nan];
  optional int32 i_hex = 6 [default = 0x1F];
  optional int64 i_neg_hex = 7 [default = -0x10];
  optional uint32 u_octal = 8 [default = 017];
  optional string s = 9 [default = "a\n\"b\x41\101\u00e9" 'c'];
  optional bytes b = 10 [default = "\xff\x00a\n"];
  optional double d_digits = 11 [default = 0.30000000000000004];
  optional float f_digits = 12 [default = 0.30000000000000004];
  optional double d_int = 13 [default = 3];
  optional double d_neg_zero = 14 [default = -0];
  optional bool flag = 15 [default = true];
  required sint64 i_min = 16 [default = -9223372036854775808];
  optional uint64 u_max = 17 [default = 18446744073709551615];
  repeated int32 packed_ints = 18 [packed = true, deprecated = true];
  repeated float unpacked = 19 [packed = false];
  oneof choice { int32 one = 20; string other = 21 [default = "x"]; }
  reserved 100, 101 to 105, 300 to 400;
  reserved "old", "older";
  extensions 1000 to 1999, 5000 to max;
  enum Kind { option allow_alias = true; K0 = 0; K1 = 1; K1_ALIAS = 1 [deprecated = true]; K_NEG = -2; K_HEX = 0x10; }
  optional Kind kind = 22 [default = K_NEG];
  message Inner { optional Layer.Kind k = 1; optional .fork.v1.Layer back = 2; optional Inner self = 3; }
  optional Inner inner = 23;
  optional v1.Shared shared = 24;
  optional fork.v1.Shared shared2 = 25;
  optional int32 custom = 26 [(my_option) = 7];
  optional bytes empty_bytes = 27 [default = ""];
  ;
}

message Shared {
  message Layer { optional int32 shadow = 1; }
  optional Layer nearest = 1;          // the inner Layer, searched first
  optional .fork.v1.Layer outer = 2;
}

enum Top { T0 = 0; T1 = 1; reserved 5, 7 to 9, 100 to max; reserved "T9"; }

extend Layer { optional int32 ext_top = 1000; }
message Holder { extend Layer { optional Shared ext_nested = 1001; } }
extend google.protobuf.FieldOptions { optional int32 my_option = 50000; }
"""


@pytest.mark.skipif(importlib.util.find_spec("grpc_tools") is None, reason="grpcio-tools not installed")
def test_everything_equals_protoc(tmp_path):
    source = tmp_path / "fork.proto"
    source.write_text(EVERYTHING)
    out = tmp_path / "fork.pb"
    result = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp_path}",
                             f"--descriptor_set_out={out}", str(source)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    protoc = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[-1]
    # protoc resolves the descriptor.proto import; we ignore it (and what extends its messages).
    del protoc.dependency[:]
    del protoc.extension[-1]
    pending = list(protoc.message_type)
    for f in protoc.extension:
        f.ClearField("json_name")
    while pending:
        message = pending.pop()
        pending.extend(message.nested_type)
        for f in list(message.field) + list(message.extension):
            f.ClearField("json_name")      # protoc fills it in; a pool derives it
            if f.name == "custom":
                f.ClearField("options")    # the custom option we ignore
    ours, notes = parse_proto(EVERYTHING, path=str(source))
    assert ours == protoc
    assert any("google/protobuf/descriptor.proto" in note for note in notes)
    assert any("(my_option)" in note for note in notes)
    assert any("extend google.protobuf.FieldOptions" in note for note in notes)


def test_everything_values(tmp_path):
    """Facts about the values, independent of protoc."""
    module = build_module(parse_proto(EVERYTHING, path="fork.proto")[0], path="fork.proto")
    layer = module.Layer()
    assert layer.f_exp == _float32(1e-5)
    assert layer.d_tenth == 0.1
    assert layer.f_inf == math.inf and layer.f_neg_inf == -math.inf and math.isnan(layer.d_nan)
    assert (layer.i_hex, layer.i_neg_hex, layer.u_octal) == (31, -16, 15)
    assert layer.s == 'a\n"bAAéc'
    assert layer.b == b"\xff\x00a\n"
    assert layer.d_digits == 0.30000000000000004 and layer.f_digits == _float32(0.3)
    assert math.copysign(1.0, layer.d_neg_zero) == -1.0
    assert layer.flag is True
    assert (layer.i_min, layer.u_max) == (-2**63, 2**64 - 1)
    assert layer.kind == module.Layer.K_NEG == -2
    assert layer.inner.k == 0 and layer.shared.nearest.shadow == 0
    assert layer.WhichOneof("choice") is None and layer.other == "x"
    assert module.Layer.DESCRIPTOR.fields_by_name["packed_ints"].is_packed
    assert not module.Layer.DESCRIPTOR.fields_by_name["unpacked"].is_packed
    assert module.T1 == 1 and module.Top.Name(0) == "T0"
    assert module.NetParameter.DESCRIPTOR.full_name == "fork.v1.NetParameter"
    # Extensions are real: text format reaches them by their full names.
    net = text_format.Parse('layer { i_hex: 2 [fork.v1.ext_top]: 7 [fork.v1.Holder.ext_nested] { '
                            'nearest { shadow: 3 } } }', module.NetParameter())
    assert net.layer[0].Extensions[module.ext_top] == 7
    assert net.layer[0].i_hex == 2


# ----------------------------------------------------------------------------------------------------------
# A fork's schema end to end

def test_mini_fork_parses_its_own_fields(tmp_path):
    schema = tmp_path / "caffe.proto"
    schema.write_text(MINI_FORK)
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text('name: "fork"\n'
                        'layer { name: "a" type: "Gain" bottom: "x" top: "y" my_param { gain: 3 } }\n'
                        'layer { name: "b" type: "Gain" bottom: "y" top: "z" my_param { mode: A } }\n'
                        'layer { name: "c" type: "Gain" bottom: "z" top: "w" }\n')
    from protodef.source import read_prototxt
    module = compile_proto(schema)
    net, _ = read_prototxt(prototxt, proto_module=module)
    first, second, third = net.layer
    assert (first.my_param.gain, first.my_param.mode) == (3.0, module.MyParameter.B) == (3.0, 1)
    assert (second.my_param.gain, second.my_param.mode) == (2.5, module.MyParameter.A) == (2.5, 0)
    assert not third.HasField("my_param") and third.my_param.gain == 2.5 and third.my_param.mode == 1


def test_fork_of_our_schema_through_read_net(tmp_path):
    """The usual fork: Caffe's schema plus a field in LayerParameter and a new message."""
    text = CAFFE_PROTO.read_text()
    anchor = "message LayerParameter {"
    text = text.replace(anchor, anchor + "\n  optional MyParameter my_param = 9001;", 1)
    text += "\nmessage MyParameter {\n  optional float gain = 1 [default = 2.5];\n}\n"
    schema = tmp_path / "caffe.proto"
    schema.write_text(text)
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
        'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" my_param { gain: 3 }\n'
        '  convolution_param { num_output: 4 kernel_size: 3 } }\n')
    from protodef.api import read_net
    net = read_net(prototxt, proto=schema, init="none")
    conv = net.layers()[-1]
    assert conv.type == "Convolution" and net.shape(conv.outputs[0]) == (1, 4, 6, 6)


def test_compiled_schemas_are_cached_by_mtime_and_size(tmp_path):
    schema = tmp_path / "caffe.proto"
    schema.write_text(MINI_FORK)
    first = compile_proto(schema)
    assert compile_proto(str(schema)) is first
    schema.write_text(MINI_FORK.replace("default = 2.5", "default = 4.5"))
    stat = schema.stat()
    os.utime(schema, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = compile_proto(schema)
    assert second is not first
    assert second.MyParameter().gain == 4.5 and first.MyParameter().gain == 2.5


def test_strangers_files_stay_within_bounds():
    # Nesting up to the cap works; one more is a clear error, not a RecursionError.
    deep = NET_HEAD + "message A { optional int32 x = 1; " * MAX_NESTING + "}" * MAX_NESTING
    module = build_module(parse_proto(deep)[0])
    assert module.A.A.A().x == 0
    too_deep = NET_HEAD + "message A {\n" * (MAX_NESTING + 1) + "}" * (MAX_NESTING + 1)
    with pytest.raises(SchemaError, match=rf"<proto>:{2 + MAX_NESTING + 1}:1: definitions are nested more than"):
        parse_proto(too_deep)
    # A long chain of messages referring to each other (protobuf's class factory alone recurses along it).
    count = 3000
    chain = NET_HEAD + "".join(f"message M{i} {{ optional M{(i + 1) % count} next = 1; optional int32 v = 2 "
                               f"[default = {i}]; }}\n" for i in range(count))
    module = build_module(parse_proto(chain)[0])
    assert module.M0().next.next.next.v == 3


# ----------------------------------------------------------------------------------------------------------
# Errors: each names its place as line:column

ERRORS = [
    ("message A {\n  optional int32 a = 1\n  optional int32 b = 2;\n}\n",
     ParseError, '<proto>:2:23: missing ";" after the field: found "optional" at 3:3'),
    ("package caffe;\nmessage A {\n  optional Foo a = 1;\n}\n",
     SchemaError, '<proto>:3:12: unknown type name "Foo"'),
    ("message A {\n  optional int32 a = 1;\n  optional int32 b = 1;\n}\n",
     SchemaError, '<proto>:3:22: field number 1 is already used by "a" (line 2)'),
    ("message A {\n  optional int32 a = 1;\n  repeated string a = 2;\n}\n",
     SchemaError, '<proto>:3:19: "a" is already defined in "A" (line 2)'),
    ("message A {\n  map<string, int32> m = 1;\n}\n",
     SchemaError, "<proto>:2:3: map fields are not supported"),
    ('syntax = "proto2";\nimport "layers/extra.proto";\n',
     SchemaError, '<proto>:2:8: import "layers/extra.proto": imports are not supported'),
    ("message A {\n  optional int32 a = 1 [default = 1.5];\n}\n",
     SchemaError, '<proto>:2:35: the default of field "a" has the wrong type: expected an integer (int32), '
                  "found 1.5"),
    ("message A {\n  enum E { X = 0; }\n  optional E a = 1 [default = Y];\n}\n",
     SchemaError, '<proto>:3:31: the default of field "a": the enum has no value named "Y"'),
    ("message B {}\nmessage A {\n  optional B a = 1 [default = 1];\n}\n",
     SchemaError, "<proto>:3:31: message fields cannot have default values"),
    ("message A {\n  repeated int32 a = 1 [default = 1];\n}\n",
     SchemaError, "<proto>:2:35: repeated fields cannot have default values"),
    ("message A {\n  /* never closed\n}\n", ParseError, "<proto>:2:3: this /* comment is never closed"),
    ('message A {\n  optional string a = 1 [default = "abc];\n}\n',
     ParseError, "<proto>:2:36: this string does not end on its line"),
    ("message A {\n  int32 a = 1;\n}\n",
     ParseError, '<proto>:2:3: a field needs a label: "optional", "required" or "repeated"'),
    ('syntax = "proto3";\n', SchemaError, "<proto>:1:10: proto3 schemas are not supported"),
    ("message A {\n  optional int32 a = 1;\n", ParseError, '<proto>:1:11: message A is never closed with "}"'),
    ("enum E {\n  A = 0;\n  B = 0;\n}\n",
     SchemaError, '<proto>:3:3: "B" uses the same number (0) as "A"; add "option allow_alias = true;"'),
    ("enum E { A = 0; }\nenum F { A = 1; }\n",
     SchemaError, '<proto>:2:10: "A" is already defined in "the file" (line 1) (enum values are siblings'),
    ("message A {\n  repeated string s = 1 [packed = true];\n}\n",
     SchemaError, "<proto>:2:26: [packed = true] is only allowed on repeated number, bool or enum fields"),
    ("message A {\n  optional int32 a = 0;\n}\n",
     SchemaError, "<proto>:2:22: field number 0 is out of range: expected 1 to 536870911"),
    ("message A {\n  optional int32 a = 19500;\n}\n",
     SchemaError, "<proto>:2:22: field numbers 19000 to 19999 are reserved by protobuf"),
    ("message A {\n  optional group G = 1 { optional int32 x = 1; }\n}\n",
     SchemaError, "<proto>:2:12: groups are not supported"),
    ("message M {\n  message N {}\n  optional N.N2 x = 1;\n}\n",
     SchemaError, '<proto>:3:12: "N.N2" is resolved to "M.N.N2", which is not defined'),
    ("message M { optional int32 a = 1; } #", ParseError, "<proto>:1:37: unexpected character '#'"),
    ("message M { optional int32 a = 1x; }", ParseError, "<proto>:1:33: a number must be followed by a space"),
    ("message M { optional uint32 a = 1 [default = -1]; }",
     SchemaError, '<proto>:1:46: the default of field "a" is out of range for uint32'),
    ("message M { optional int32 a = 1 [default = 2147483648]; }",
     SchemaError, '<proto>:1:45: the default of field "a" is out of range for int32'),
    ("message M { optional bool a = 1 [default = 1]; }",
     SchemaError, '<proto>:1:44: the default of field "a" has the wrong type: expected true or false'),
    ("message M { optional int32 a = 1 [colour = 1]; }", SchemaError, '<proto>:1:35: unknown field option "colour"'),
    ("message A { reserved 5; optional int32 a = 5; }", SchemaError, '<proto>:1:40: field "a" uses reserved number 5'),
    ("message A { oneof o { optional int32 a = 1; } }",
     SchemaError, '<proto>:1:23: fields in a oneof have no label ("optional")'),
    ('message A { optional string a = 1 [default = "\\q"]; }',
     ParseError, "<proto>:1:46: invalid escape sequence '\\\\q' in a string"),
    ("message A { optional int32 a = 09; }", ParseError, "<proto>:1:32: 09 is not a valid octal number"),
    ("message A { optional int32 a = 1; }\nsyntax = \"proto2\";",
     SchemaError, '<proto>:2:1: "syntax" must be the first statement of the file'),
    ("message A { optional int32 a = 1; }\nextend Nope { optional int32 b = 100; }",
     SchemaError, '<proto>:2:8: unknown type name "Nope"'),
    ("message A = 3", ParseError, '<proto>:1:11: syntax error: expected "{", found "="'),
]


@pytest.mark.parametrize("text, kind, message", ERRORS, ids=[m.split(": ", 1)[1][:40] for _, _, m in ERRORS])
def test_errors_are_located(text, kind, message):
    with pytest.raises(kind) as caught:
        parse_proto(text)
    assert str(caught.value).startswith(message)


def test_schema_must_describe_a_net(tmp_path):
    schema = tmp_path / "other.proto"
    schema.write_text("message Solver { optional int32 iter = 1; }\n")
    with pytest.raises(SchemaError, match="defines no top-level message NetParameter"):
        compile_proto(schema)
    schema.write_text("message NetParameter { optional string name = 1; }\n")
    with pytest.raises(SchemaError, match="NetParameter has neither a 'layer' nor a 'layers' field"):
        compile_proto(schema)
    with pytest.raises(InputError, match="cannot read the schema"):
        compile_proto(tmp_path / "missing.proto")


def test_pool_catches_what_the_parser_does_not(tmp_path):
    # An extension outside the extendee's extension ranges: left to the descriptor pool, still a SchemaError.
    text = NET_HEAD + "message A { extensions 100 to 199; }\nextend A { optional int32 x = 5; }\n"
    with pytest.raises(SchemaError, match="the schema is not valid"):
        build_module(parse_proto(text)[0])


def test_an_older_fork_schema_without_fields_protodef_reads(tmp_path):
    """Forks copied Caffe's schema before round_mode (2018) and have no py-faster-rcnn scale_train: Pooling and
    Dropout read Caffe's defaults there; a field protodef needs and the schema lacks is one line naming it."""
    text = CAFFE_PROTO.read_text()
    text = text.replace("  optional RoundMode round_mode = 13 [default = CEIL];\n", "", 1)
    text = text.replace("  optional bool scale_train = 2 [default = true];\n", "", 1)
    schema = tmp_path / "caffe.proto"
    schema.write_text(text)
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text(
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 6 dim: 6 } } }\n'
        'layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" '
        '  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }\n'
        'layer { name: "drop" type: "Dropout" bottom: "pool" top: "pool" }\n')
    from protodef.api import read_net
    net = read_net(prototxt, proto=schema, init="none")
    assert net.shape(net.layer("pool").outputs[0]) == (1, 2, 3, 3)                 # CEIL, Caffe's default
    assert net.layer("drop").params.scale_train
    schema.write_text(text.replace("  optional uint32 pad_h = 9 [default = 0];\n", ""))
    with pytest.raises(SchemaError, match=r"layer 'pool' \(Pooling\): the schema given with --proto has no field "
                                          r"'pad_h', which protodef reads for Pooling layers"):
        read_net(prototxt, proto=schema, init="none")


def test_a_v1_era_schema_reaches_the_upgrade_s_refusal_through_read_net(tmp_path):
    """DeepLab v1's caffe.proto has NetParameter.layers only: reading a net with it ends in the upgrade's one-line
    refusal (it used to end in a traceback while locating layers)."""
    schema = tmp_path / "v1.proto"
    schema.write_text('syntax = "proto2";\nmessage LayerParameter { optional string name = 4; '
                      'enum LayerType { NONE = 0; RELU = 18; } optional LayerType type = 5; '
                      'repeated string bottom = 2; repeated string top = 3; }\n'
                      'message NetParameter { optional string name = 1; repeated string input = 3; '
                      'repeated int32 input_dim = 4; repeated LayerParameter layers = 2; }\n')
    prototxt = tmp_path / "net.prototxt"
    prototxt.write_text('input: "data" input_dim: 1 input_dim: 3 input_dim: 4 input_dim: 4\n'
                        'layers { name: "r" type: RELU bottom: "data" top: "r" }\n')
    from protodef.api import read_net
    with pytest.raises(SchemaError, match="has no field 'layer', which the upgrade needs"):
        read_net(prototxt, proto=schema, init="none")
