"""Drawings people can read: numbers without float noise, blocks named for what they hold, the title where
reading starts, and nets too long for a bitmap still drawn."""
from __future__ import annotations

import re
import shutil
import struct
import xml.etree.ElementTree as ET

import pytest
from support import CORPUS, SAMPLES

from converters.graphviz import draw, find_blocks, save_drawing
from converters.graphviz.labels import param_text
from protodef.api import read_net
from protodef.build import build_net
from protodef.source import parse_prototxt

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz's dot program is not installed")


def build(text: str, **options):
    param, source = parse_prototxt(text, path="t.prototxt")
    return build_net(param, source, **options)


def conv(name: str, bottom: str, channels: int = 4) -> str:
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
            f'convolution_param {{ num_output: {channels} kernel_size: 1 }} }}')


def chain(names: list[str], bottom: str) -> list[str]:
    return [conv(name, before) for name, before in zip(names, [bottom, *names])]


# ---- numbers --------------------------------------------------------------------------------------------------
PRIORS = """
input: "data" input_shape { dim: 1 dim: 3 dim: 300 dim: 300 }
input: "feature" input_shape { dim: 1 dim: 8 dim: 10 dim: 10 }
layer { name: "priors" type: "PriorBox" bottom: "feature" bottom: "data" top: "priors"
        prior_box_param { min_size: 60 aspect_ratio: 2 aspect_ratio: 3 flip: true variance: 0.1 } }
"""


def test_prior_box_label_shows_numbers_as_written():
    (layer,) = build(PRIORS).layers()
    # Caffe expands aspect_ratio 2, 3 with flip to 1, 2, 1/2, 3, 1/3, held as float32: 1/3 is
    # 0.3333333432674408 as a Python float, 0.33333334 as the shortest float32; a label shows 4 digits.
    assert param_text(layer) == "min sizes 60, aspect ratios 1,2,0.5,3,0.3333"


def test_float_fields_are_the_float32_a_prototxt_wrote():
    net = build("""input: "x" input_shape { dim: 1 dim: 4 dim: 8 dim: 8 }
        layer { name: "leaky" type: "ReLU" bottom: "x" top: "leaky" relu_param { negative_slope: 0.1 } }
        layer { name: "lrn" type: "LRN" bottom: "x" top: "lrn" lrn_param { alpha: 0.00003 } }
        layer { name: "scaled" type: "Power" bottom: "x" top: "scaled" power_param { scale: 0.00390625 } }""")
    text = {layer.name: param_text(layer) for layer in net.layers()}
    assert text == {"leaky": "negative slope 0.1", "lrn": "alpha 3e-5", "scaled": "scale 0.00390625"}


# ---- names ----------------------------------------------------------------------------------------------------
def _segnet_like() -> str:
    """An encoder-decoder whose middle is one block (pool3 in, upsample3 out) ending in a layer named for the
    decoder step, with no name its layers share: like SegNet's, which --collapse drew as "upsample3"."""
    layers = ['input: "x" input_shape { dim: 1 dim: 4 dim: 16 dim: 16 }']
    layers += chain(["conv1_1", "conv1_2", "conv2_1", "conv2_2", "pool3"], "x")
    layers += chain(["conv4_1", "conv4_2", "pool4", "conv5_1", "conv5_2", "pool5", "upsample5", "conv5_2_D",
                     "conv5_1_D", "upsample4", "conv4_2_D", "conv4_1_D"], "pool3")
    layers.append('layer { name: "upsample3" type: "Eltwise" bottom: "conv4_1_D" bottom: "pool3" top: "upsample3" }')
    layers += chain(["conv3_2_D", "conv3_1_D", "upsample2", "conv2_2_D", "conv2_1_D", "upsample1", "conv1_2_D",
                     "conv1_1_D", "score"], "upsample3")
    return "\n".join(layers)


def test_a_block_whose_layers_share_no_name_is_named_by_its_ends_and_size():
    net = build(_segnet_like())
    (block,) = find_blocks(net).blocks
    assert block.entry == "pool3" and block.exit == "upsample3"
    assert block.name == "conv4_1 … upsample3 (13 layers)"
    collapsed = draw(net, collapse=True).source
    assert 'id="block:conv4_1 … upsample3 (13 layers)"' in collapsed
    assert 'id="block:upsample3"' not in collapsed
    clusters = draw(net).source
    assert "label=\"conv4_1 … upsample3 (13 layers)\"" in clusters


def test_a_name_most_layers_share_names_the_block_even_when_the_merge_has_another():
    # DenseNet: conv2_1/x1/bn, conv2_1/x1, conv2_1/x2 concatenated with their input by concat_2_1.
    layers = ['input: "x" input_shape { dim: 1 dim: 4 dim: 8 dim: 8 }', conv("conv1", "x")]
    layers += chain(["conv2_1/x1", "conv2_1/x2"], "conv1")
    layers.append('layer { name: "concat_2_1" type: "Concat" bottom: "conv1" bottom: "conv2_1/x2" top: "concat_2_1" }')
    layers += chain(["conv3", "conv4", "conv5", "conv6"], "concat_2_1")
    (block,) = find_blocks(build("\n".join(layers))).blocks
    assert block.name == "conv2_1" and block.exit == "concat_2_1"


def test_a_generic_prefix_shared_outside_the_block_names_nothing():
    # "conv" is most of the block's layers' prefix, and as much of the layers' around it.
    layers = ['input: "x" input_shape { dim: 1 dim: 4 dim: 8 dim: 8 }']
    layers += chain(["conv_a", "conv_b", "conv_c"], "x")
    layers += chain(["conv_d", "conv_e"], "conv_c")
    layers.append('layer { name: "merge" type: "Eltwise" bottom: "conv_e" bottom: "conv_c" top: "merge" }')
    layers += chain(["conv_f", "conv_g", "conv_h"], "merge")
    (block,) = find_blocks(build("\n".join(layers))).blocks
    assert block.name == "conv_d … merge (3 layers)"


def test_corpus_blocks_are_named_for_what_they_hold():
    fcn, segnet = CORPUS / "fcn" / "voc-fcn8s_deploy.prototxt", CORPUS / "segnet" / "segnet_inference.prototxt"
    if not fcn.exists():
        pytest.skip("the corpus is not here")
    (block,) = find_blocks(read_net(fcn, init="none")).blocks
    assert block.name.startswith("conv5_1 … fuse_pool4 (") and block.name.endswith(" layers)")
    net = read_net(segnet, init="none", input_shape={"data": (1, 3, 360, 480)})
    (run,) = find_blocks(net).runs
    holds = sum(1 for node in run.blocks[0].nodes if net.layer(node).type == "Convolution")
    assert holds == 12 and run.name != "upsample3" and run.name.startswith("conv4_1 … upsample3 (")


def test_names_found_before_stay(tmp_path):
    structure = find_blocks(read_net(SAMPLES / "ResNet-50.prototxt", init="none"))
    assert [block.name for block in structure.blocks][:4] == ["res2a", "res2b", "res2c", "res3a"]
    assert [stage.name for stage in structure.stages] == ["res2", "res3", "res4", "res5"]


# ---- title ----------------------------------------------------------------------------------------------------
SVG = "{http://www.w3.org/2000/svg}"


@needs_dot
def test_left_to_right_title_sits_where_the_net_starts():
    net = read_net(SAMPLES / "ResNet-50.prototxt", init="none")
    root = ET.fromstring(draw(net, rankdir="LR").pipe(format="svg"))
    width = float(root.get("viewBox").split()[2])
    (title,) = [t for t in root.iter(f"{SVG}text") if t.text == "ResNet-50"]
    assert width > 10_000
    assert float(title.get("x")) < 0.05 * width
    top = ET.fromstring(draw(net).pipe(format="svg"))     # drawn top to bottom, it stays centred
    (title,) = [t for t in top.iter(f"{SVG}text") if t.text == "ResNet-50"]
    assert abs(float(title.get("x")) - float(top.get("viewBox").split()[2]) / 2) < 100


# ---- size -----------------------------------------------------------------------------------------------------
def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return struct.unpack(">II", data[16:24])


@needs_dot
def test_a_net_too_long_for_a_bitmap_is_scaled_quietly_and_says_so(tmp_path, capsys):
    # 500 layers in a line: about 440 inches, 42,000 pixels at graphviz's 96 dpi; cairo stops at 32,767.
    layers = ['input: "x" input_shape { dim: 1 dim: 2 dim: 4 dim: 4 }']
    layers += chain([f"c{i}" for i in range(500)], "x")
    net = build("\n".join(layers))
    message = save_drawing(net, tmp_path / "long.png", fmt="png")
    width, height = png_size((tmp_path / "long.png").read_bytes())
    assert height <= 32_767 and width <= 32_767
    assert "scal" not in capsys.readouterr().err        # graphviz's "Scaling by 0.7 to fit" warning
    assert message is not None and str(tmp_path / "long.png") in message and "--collapse" in message
    assert re.search(r"--format svg", message)
    assert save_drawing(net, tmp_path / "long.svg", fmt="svg") is None     # an SVG has no such limit


@needs_dot
def test_a_net_that_fits_is_drawn_at_full_size(tmp_path):
    net = read_net(SAMPLES / "ResNet-50.prototxt", init="none")
    assert save_drawing(net, tmp_path / "r.png", fmt="png", collapse=True) is None
    svg = ET.fromstring(draw(net, collapse=True).pipe(format="svg"))
    natural = float(svg.get("height").removesuffix("pt")) * 96 / 72      # points, at graphviz's 96 dpi
    assert abs(png_size((tmp_path / "r.png").read_bytes())[1] - natural) < 4
