"""Drawing: blocks found by structure, in-place chains stacked, shapes on edges, DOT/SVG/PNG/PDF output, CLI."""
from __future__ import annotations

import html
import re
import shutil
import xml.etree.ElementTree as ET

import graphviz
import pytest
from support import (
    CORPUS,
    CORPUS_INPUT_SHAPES,
    SAMPLES,
    corpus_files,
    corpus_params,
    refused_as_known,
)

import protodef
from converters.graphviz import draw, find_blocks, save_drawing
from converters.graphviz.labels import param_text
from converters.graphviz.stacks import stack_layers
from converters.graphviz.style import FAMILY_STYLES
from protodef.api import read_net
from protodef.build import build_net
from protodef.cli import main
from protodef.errors import UnsupportedError
from protodef.layers.registry import FAMILIES
from protodef.source import parse_prototxt

HAS_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAS_DOT, reason="graphviz's dot program is not installed")

RESNET50 = SAMPLES / "ResNet-50.prototxt"
GOOGLENET = CORPUS / "bvlc_caffe" / "bvlc_googlenet_deploy.prototxt"
# The ResNet paper, table 1: bottleneck blocks per stage and the stage's output (channels, size).
RESNET50_STAGES = {"res2": (3, 256, 56), "res3": (4, 512, 28), "res4": (6, 1024, 14), "res5": (3, 2048, 7)}
RESNET50_BLOCKS = [f"{stage}{'abcdef'[i]}" for stage, (n, _, _) in RESNET50_STAGES.items() for i in range(n)]


def build(text: str, **options):
    param, source = parse_prototxt(text, path="t.prototxt")
    return build_net(param, source, **options)


@pytest.fixture(scope="module")
def resnet50():
    return read_net(RESNET50, init="none")


@pytest.fixture(scope="module")
def googlenet():
    return read_net(GOOGLENET, init="none")


# ---- a small reader for the DOT text graphviz writes, independent of the code under test -------------------
_TOKEN = re.compile(r'\s*(?:(->)|([{}\[\];=,])|"((?:\\.|[^"\\])*)"|([A-Za-z0-9_.]+))', re.S)


def _tokens(source: str):
    i = 0
    while i < len(source):
        if source[i].isspace():
            i += 1
            continue
        if source[i] == "<":               # an HTML label: balanced angle brackets
            depth, j = 0, i
            while True:
                depth += {"<": 1, ">": -1}.get(source[j], 0)
                j += 1
                if depth == 0:
                    break
            yield ("html", source[i + 1:j - 1])
            i = j
            continue
        match = _TOKEN.match(source, i)
        assert match, f"cannot read DOT at {source[i:i + 40]!r}"
        arrow, punct, quoted, word = match.groups()
        yield ("text", quoted.replace('\\"', '"')) if quoted is not None else ("sym", arrow or punct or word)
        i = match.end()


def parse_dot(source: str) -> dict:
    """{'graph': the root's attrs, 'nodes': {name: attrs}, 'edges': [(tail, head, attrs)],
    'clusters': [{'attrs', 'nodes'}]}."""
    tokens = list(_tokens(source))
    nodes, edges, clusters, open_clusters = {}, [], [], []

    def attributes(k):
        attrs = {}
        assert tokens[k][1] == "["
        k += 1
        while tokens[k][1] != "]":
            key, value = tokens[k][1], tokens[k + 2][1]
            attrs[key] = value
            k += 3
            if tokens[k][1] in (",", ";"):
                k += 1
        return attrs, k + 1

    k = 0
    while k < len(tokens):
        kind, value = tokens[k]
        following = tokens[k + 1][1] if k + 1 < len(tokens) else None
        if kind == "sym" and value in ("digraph", "subgraph"):
            k += 2 if following == "{" else 3
            cluster = {"attrs": {}, "nodes": []}
            open_clusters.append(cluster)
            clusters.append(cluster)
        elif kind == "sym" and value == "}":
            open_clusters.pop()
            k += 1
        elif kind == "sym" and value in ("graph", "node", "edge") and following == "[":
            _, k = attributes(k + 1)
        elif following == "->":
            head = tokens[k + 2][1]
            attrs, k = attributes(k + 3) if k + 3 < len(tokens) and tokens[k + 3][1] == "[" else ({}, k + 3)
            edges.append((value, head, attrs))
        elif following == "=":
            open_clusters[-1]["attrs"][value] = tokens[k + 2][1]
            k += 3
        elif following == "[":
            attrs, k = attributes(k + 1)
            nodes[value] = attrs
            for cluster in open_clusters:
                cluster["nodes"].append(value)
        else:
            k += 1
    return {"graph": clusters[0]["attrs"], "nodes": nodes, "edges": edges, "clusters": clusters[1:]}


def text_of(label: str) -> str:
    """The words an HTML label shows."""
    return " ".join(html.unescape(re.sub(r"<[^>]*>", " ", label)).split())


def by_id(graph: dict) -> dict:
    return {attrs.get("id"): {"name": name, **attrs} for name, attrs in graph["nodes"].items()}


def clusters_with(graph: dict, prefix: str) -> list[dict]:
    return [c for c in graph["clusters"] if c["attrs"].get("id", "").startswith(prefix)]


# ---- blocks ---------------------------------------------------------------------------------------------------
def test_resnet50_has_16_bottleneck_blocks_in_4_stages(resnet50):
    structure = find_blocks(resnet50)
    assert [block.name for block in structure.blocks] == RESNET50_BLOCKS
    assert all(resnet50.layer(block.exit).type == "Eltwise" for block in structure.blocks)
    assert [(stage.name, len(stage.blocks)) for stage in structure.stages] == \
        [(name, n) for name, (n, _, _) in RESNET50_STAGES.items()]
    # The first block of a stage projects (and strides); the others repeat one structure.
    assert [[len(run.blocks) for run in stage.runs] for stage in structure.stages] == [[1, 2], [1, 3], [1, 5], [1, 2]]
    res2a = structure.blocks[0]
    assert res2a.entry == "pool1"
    assert set(res2a.nodes) == {"res2a_branch1", "res2a_branch2a", "res2a_branch2b", "res2a_branch2c", "res2a"}


def test_blocks_come_from_structure_not_names():
    text = RESNET50.read_text()
    names = iter(range(10**6))
    scrambled = re.sub(r'(\n\s*)name: "[^"]*"', lambda m: f'{m.group(1)}name: "L{next(names) * 7919 % 1000003}"', text)
    net = build(scrambled)
    assert "res2a_branch2a" not in net
    structure = find_blocks(net)
    assert len(structure.blocks) == 16
    assert [len(stage.blocks) for stage in structure.stages] == [3, 4, 6, 3]
    assert [[len(run.blocks) for run in stage.runs] for stage in structure.stages] == [[1, 2], [1, 3], [1, 5], [1, 2]]


@pytest.mark.corpus
def test_googlenet_inception_modules_found_by_structure(googlenet):
    structure = find_blocks(googlenet)
    modules = [f"inception_{s}{m}" for s, ms in (("3", "ab"), ("4", "abcde"), ("5", "ab")) for m in ms]
    assert [block.name for block in structure.blocks] == modules
    for block in structure.blocks:
        merge = googlenet.layer(block.exit)
        assert merge.type == "Concat" and len(merge.inputs) == 4
        assert len(block.nodes) == 8    # 1x1 | 3x3_reduce, 3x3 | 5x5_reduce, 5x5 | pool, pool_proj | concat
    assert [(stage.name, len(stage.blocks)) for stage in structure.stages] == \
        [("inception_3", 2), ("inception_4", 5), ("inception_5", 2)]
    assert all(len(run.blocks) == 1 for run in structure.runs)   # every module has its own widths


@pytest.mark.corpus
def test_skip_connections_spanning_the_net_are_not_a_block():
    # FCN-8s: the input feeds the final crop and pool3 the last fusion, so the regions ending there are
    # nearly the whole net; the fusion of pool4's scores with the deep path is the one block.
    path = CORPUS / "fcn" / "voc-fcn8s_deploy.prototxt"
    net = read_net(path, init="none")
    (block,) = find_blocks(net).blocks
    assert block.entry == "pool4" and block.exit == "fuse_pool4"
    assert {"conv5_1", "fc6", "fc7", "score_fr", "upscore2", "score_pool4", "score_pool4c"} <= set(block.nodes)


def test_a_merge_that_paths_bypass_ends_no_block():
    # OpenPose's stages: each concatenates the last stage's output with shared features f. c2's region
    # (f, c2] has one entry, but f also reaches c3 without passing c2: c2 is no block's exit. c3's region is
    # most of this net (not a block, see FCN above) until the net goes on after it.
    assert find_blocks(build(_openpose_like(tail=0))).blocks == ()
    longer = build(_openpose_like(tail=4))   # now the last concat's region is a small part: a block
    assert [(block.entry, block.nodes) for block in find_blocks(longer).blocks] == [("f", ("s1", "c2", "s2", "c3"))]


def _openpose_like(tail: int) -> str:
    conv = 'layer {{ name: "{0}" type: "Convolution" bottom: "{1}" top: "{0}" ' \
           'convolution_param {{ num_output: 4 kernel_size: 1 }} }}'
    layers = ['input: "x" input_shape { dim: 1 dim: 4 dim: 8 dim: 8 }', conv.format("f", "x"),
              conv.format("s1", "f"), 'layer { name: "c2" type: "Concat" bottom: "s1" bottom: "f" top: "c2" }',
              conv.format("s2", "c2"), 'layer { name: "c3" type: "Concat" bottom: "s2" bottom: "f" top: "c3" }',
              conv.format("s3", "c3")]
    layers += [conv.format(f"t{i + 1}", f"t{i}" if i else "s3") for i in range(tail)]
    return "\n".join(layers)


def test_plain_chains_have_no_blocks():
    assert find_blocks(build(RESNET_HEAD)).blocks == ()


@pytest.mark.corpus
def test_alexnet_has_no_blocks():
    assert find_blocks(read_net(CORPUS / "bvlc_caffe" / "bvlc_alexnet_deploy.prototxt", init="none")).blocks == ()


# ---- stacks ---------------------------------------------------------------------------------------------------
RESNET_HEAD = """
name: "head"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 32 input_dim: 32
layer { bottom: "data" top: "conv1" name: "conv1" type: "Convolution"
        convolution_param { num_output: 8 kernel_size: 7 pad: 3 stride: 2 } }
layer { bottom: "conv1" top: "conv1" name: "bn_conv1" type: "BatchNorm" }
layer { bottom: "conv1" top: "conv1" name: "scale_conv1" type: "Scale" scale_param { bias_term: true } }
layer { bottom: "conv1" top: "conv1" name: "conv1_relu" type: "ReLU" }
layer { bottom: "conv1" top: "pool1" name: "pool1" type: "Pooling"
        pooling_param { kernel_size: 3 stride: 2 pool: MAX } }
"""


def test_in_place_chain_is_one_stack(resnet50):
    stacks = stack_layers(resnet50)
    assert [layer.type for layer in stacks.stacks["conv1"].layers] == ["Convolution", "BatchNorm", "Scale", "ReLU"]
    assert [layer.type for layer in stacks.stacks["res2a"].layers] == ["Eltwise", "ReLU"]
    heads = [layer for layer in resnet50.layers() if layer.type not in ("BatchNorm", "Scale", "ReLU")]
    assert list(stacks.stacks) == [layer.name for layer in heads]


def test_a_layer_reading_the_middle_of_a_chain_splits_it():
    net = build(RESNET_HEAD.replace('layer { bottom: "conv1" top: "conv1" name: "conv1_relu"',
                                    'layer { bottom: "conv1" top: "peek" name: "peek" type: "Sigmoid" }\n'
                                    'layer { bottom: "conv1" top: "conv1" name: "conv1_relu"'))
    stacks = stack_layers(net)
    # peek reads the Scale's output, so the chain stops there and the ReLU (also reading it) starts its own.
    assert [layer.name for layer in stacks.stacks["conv1"].layers] == ["conv1", "bn_conv1", "scale_conv1"]
    assert "conv1_relu" in stacks.stacks and "peek" in stacks.stacks


# ---- labels ---------------------------------------------------------------------------------------------------
def test_parameter_text():
    net = build("""input: "x" input_shape { dim: 1 dim: 4 dim: 20 dim: 20 }
        layer { name: "c" type: "Convolution" bottom: "x" top: "c"
                convolution_param { num_output: 64 kernel_size: 7 stride: 2 pad: 3 } }
        layer { name: "g" type: "Convolution" bottom: "x" top: "g"
                convolution_param { num_output: 8 kernel_h: 1 kernel_w: 7 pad_h: 0 pad_w: 3 group: 2 } }
        layer { name: "p" type: "Pooling" bottom: "c" top: "p" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
        layer { name: "gp" type: "Pooling" bottom: "c" top: "gp" pooling_param { pool: AVE global_pooling: true } }
        layer { name: "lrn" type: "LRN" bottom: "x" top: "lrn" lrn_param { local_size: 5 alpha: 0.0001 } }
        layer { name: "e" type: "Eltwise" bottom: "c" bottom: "c" top: "e" }
        layer { name: "cat" type: "Concat" bottom: "c" bottom: "c" top: "cat" }
        layer { name: "r" type: "ReLU" bottom: "e" top: "r" relu_param { negative_slope: 0.1 } }
        layer { name: "r0" type: "ReLU" bottom: "e" top: "r0" }""")
    text = {layer.name: param_text(layer) for layer in net.layers()}
    assert text == {"c": "7×7/2, 64, pad 3", "g": "1×7, 8, pad 0×3, group 2", "p": "MAX 3×3/2", "gp": "AVE, global",
                    "lrn": "alpha 0.0001",     # local_size 5, beta 0.75, ACROSS_CHANNELS: caffe.proto's defaults
                    "e": "SUM", "cat": "", "r": "negative slope 0.1", "r0": ""}


def test_every_family_has_a_style():
    assert set(FAMILY_STYLES) == set(FAMILIES)


# ---- DOT ------------------------------------------------------------------------------------------------------
def test_resnet50_dot_blocks_as_clusters(resnet50):
    graph = parse_dot(draw(resnet50).source)
    nodes = by_id(graph)
    blocks, stages = clusters_with(graph, "block:"), clusters_with(graph, "stage:")
    assert [c["attrs"]["label"] for c in blocks] == RESNET50_BLOCKS
    assert [c["attrs"]["label"] for c in stages] == list(RESNET50_STAGES)
    res2a = next(c for c in blocks if c["attrs"]["label"] == "res2a")
    assert {nodes_named(graph, n) for n in res2a["nodes"]} == \
        {"res2a_branch1", "res2a_branch2a", "res2a_branch2b", "res2a_branch2c", "res2a"}
    # One node per stack: the in-place BatchNorm, Scale and ReLU are rows of their convolution's node.
    layer_nodes = {i for i in nodes if i and ":" not in i}
    assert layer_nodes == {layer.name for layer in resnet50.layers()
                           if layer.type not in ("BatchNorm", "Scale", "ReLU")}
    conv1 = text_of(nodes["conv1"]["label"])
    assert all(word in conv1 for word in ("conv1", "Convolution", "7×7/2, 64, pad 3", "BatchNorm", "Scale", "ReLU"))
    assert "Eltwise SUM" in text_of(nodes["res2a"]["label"]) and "ReLU" in text_of(nodes["res2a"]["label"])
    assert "1×3×224×224" in text_of(nodes["input:data"]["label"])


def test_resnet50_edges_carry_shapes(resnet50):
    graph = parse_dot(draw(resnet50).source)
    labels = {attrs.get("label", "") for _, _, attrs in graph["edges"]}
    stage_shapes = {f"{c}×{s}×{s}" for _, c, s in RESNET50_STAGES.values()}
    assert {"3×224×224", "64×112×112", "64×56×56", "2048×1×1", "1000"} | stage_shapes <= labels
    names = {name: attrs.get("id") for name, attrs in graph["nodes"].items()}
    edge = {(names[t], names[h]): attrs.get("label") for t, h, attrs in graph["edges"]}
    assert edge[("conv1", "pool1")] == "64×112×112"
    assert edge[("res2c", "res3a_branch2a")] == "256×56×56" or edge[("res2c", "res3a_branch1")] == "256×56×56"
    bare = parse_dot(draw(resnet50, shapes=False).source)
    assert all(not attrs.get("label") for _, _, attrs in bare["edges"])


def repeats(node_id: str, label: str) -> int:
    """The ×N after a collapsed block's name, 1 when there is none."""
    name, text = node_id[len("block:"):], text_of(label)
    assert text.startswith(name)
    count = re.match(r"×(\d+)\b", text[len(name):].strip())
    return int(count.group(1)) if count else 1


def test_resnet50_collapsed(resnet50):
    graph = parse_dot(draw(resnet50, collapse=True).source)
    nodes = by_id(graph)
    blocks = {i: n for i, n in nodes.items() if i and i.startswith("block:")}
    assert [i[len("block:"):] for i in blocks] == ["res2a", "res2b, res2c", "res3a", "res3b … res3d", "res4a",
                                                   "res4b … res4f", "res5a", "res5b, res5c"]
    assert [repeats(i, n["label"]) for i, n in blocks.items()] == [1, 2, 1, 3, 1, 5, 1, 2]   # 16 blocks
    # The blocks are drawn as a chain: pool1 -> res2a -> res2b, res2c -> ... -> res5b, res5c -> pool5.
    following = {nodes_named(graph, t): nodes_named(graph, h) for t, h, _ in graph["edges"]}
    chain, node = [], "pool1"
    while node != "pool5":
        node = following[node]
        chain.append(node)
    assert chain == [*blocks, "pool5"]
    res4 = text_of(blocks["block:res4b … res4f"]["label"])
    for text in ("×5", "identity", "1×1, 256", "3×3, 256, pad 1", "1×1, 1024", "Eltwise SUM", "ReLU",
                 "→ 1024×14×14"):
        assert text in res4
    assert "1×1/2, 1024" in text_of(blocks["block:res4a"]["label"])    # the projection shortcut, with its stride
    assert [c["attrs"]["label"] for c in clusters_with(graph, "stage:")] == list(RESNET50_STAGES)
    assert not clusters_with(graph, "block:")
    assert {"conv1", "pool1", "pool5", "fc1000", "prob"} <= set(nodes)
    assert "res3b_branch2a" not in nodes and "res2a" not in nodes


def nodes_named(graph: dict, name: str) -> str:
    return graph["nodes"][name].get("id")


@pytest.mark.corpus
def test_googlenet_collapsed_draws_each_module_once(googlenet):
    graph = parse_dot(draw(googlenet, collapse=True).source)
    modules = [i for i in by_id(graph) if i and i.startswith("block:")]
    assert len(modules) == 9
    label = text_of(by_id(graph)["block:inception_3a"]["label"])
    # inception_3a's branches, from the GoogLeNet paper's table 1: 64 | 96 -> 128 | 16 -> 32 | pool -> 32
    for cell in ("1×1, 64", "1×1, 96", "3×3, 128, pad 1", "1×1, 16", "5×5, 32, pad 2", "MAX 3×3, pad 1",
                 "1×1, 32", "Concat", "→ 256×28×28"):
        assert cell in label


def test_title_and_legend_name_the_net_and_the_families_drawn(resnet50):
    title = text_of(parse_dot(draw(resnet50).source)["graph"]["label"])
    assert title.startswith("ResNet-50 ")
    for family in ("input", "convolution", "normalisation", "activation", "pooling", "merge", "fully connected",
                   "softmax / loss"):
        assert family in title
    head = text_of(parse_dot(draw(build(RESNET_HEAD)).source)["graph"]["label"])
    assert head.startswith("head ") and "convolution" in head and "merge" not in head and "fully" not in head


def test_draw_returns_a_jupyter_displayable_digraph(resnet50):
    graph = draw(resnet50, rankdir="LR")
    assert isinstance(graph, graphviz.Digraph) and hasattr(graph, "_repr_mimebundle_")
    assert "rankdir=LR" in graph.source


def test_folded_draws_after_the_passes(resnet50):
    graph = parse_dot(protodef.draw(resnet50, folded=True).source)
    labels = " ".join(text_of(attrs.get("label", "")) for attrs in graph["nodes"].values())
    assert "BatchNorm" not in labels and "Convolution" in labels
    assert len(clusters_with(graph, "block:")) == 16


# ---- files ----------------------------------------------------------------------------------------------------
def svg_tree(data: bytes) -> ET.Element:
    return ET.fromstring(data)


def svg_groups(root: ET.Element, kind: str) -> list[ET.Element]:
    return [g for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == kind]


@needs_dot
def test_resnet50_renders_svg_png_pdf(resnet50, tmp_path):
    for fmt, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF")):
        assert save_drawing(resnet50, tmp_path / f"r.{fmt}", fmt=fmt) is None
        assert (tmp_path / f"r.{fmt}").read_bytes().startswith(magic)
    assert save_drawing(resnet50, tmp_path / "r.svg", collapse=True) is None
    root = svg_tree((tmp_path / "r.svg").read_bytes())
    ids = [g.get("id") for g in svg_groups(root, "node")]
    assert sum(1 for i in ids if i.startswith("block:")) == 8
    assert [g.get("id") for g in svg_groups(root, "cluster")] == [f"stage:{s}" for s in RESNET50_STAGES]
    save_drawing(resnet50, tmp_path / "full.svg")
    root = svg_tree((tmp_path / "full.svg").read_bytes())
    assert sum(1 for g in svg_groups(root, "cluster") if g.get("id").startswith("block:")) == 16
    edge_text = {t.text for g in svg_groups(root, "edge") for t in g.iter("{http://www.w3.org/2000/svg}text")}
    assert {"64×56×56", "256×56×56", "1024×14×14", "2048×7×7"} <= edge_text


def test_without_dot_the_dot_file_is_written(resnet50, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    message = save_drawing(resnet50, tmp_path / "net.svg", fmt="svg")
    assert message == f"wrote {tmp_path / 'net.dot'}; install graphviz (Debian/Ubuntu: apt-get install graphviz) " \
                      "to render svg"
    assert not (tmp_path / "net.svg").exists()
    assert (tmp_path / "net.dot").read_text().startswith('digraph "ResNet-50"')
    assert save_drawing(resnet50, tmp_path / "plain.dot", fmt="dot") is None
    assert (tmp_path / "plain.dot").read_text() == draw(resnet50).source


def test_unknown_format_is_refused(resnet50, tmp_path):
    with pytest.raises(UnsupportedError, match="format"):
        save_drawing(resnet50, tmp_path / "net.gif", fmt="gif")
    assert list(tmp_path.iterdir()) == []


def test_cli_draw(tmp_path, capsys):
    out = tmp_path / "resnet.dot"
    assert main(["draw", str(RESNET50), "-o", str(out), "--format", "dot", "--collapse", "--rankdir", "LR"]) == 0
    assert capsys.readouterr().out.strip() == f"{RESNET50} -> {out}"
    graph = parse_dot(out.read_text())
    assert len([i for i in by_id(graph) if i and i.startswith("block:")]) == 8
    if HAS_DOT:
        svg = tmp_path / "resnet.svg"
        assert main(["draw", str(RESNET50), "-o", str(svg), "--no-shapes"]) == 0
        assert svg_groups(svg_tree(svg.read_bytes()), "node")


@pytest.mark.parametrize("path", corpus_params(corpus_files("deploy")))
def test_every_corpus_deploy_net_renders(path):
    if refused_as_known(path):
        return
    net = read_net(path, init="none", input_shape=CORPUS_INPUT_SHAPES.get(path.name))
    structure = find_blocks(net)
    stacked = {layer.name for stack in stack_layers(net).stacks.values() for layer in stack.layers[1:]}
    for collapse in (False, True):
        graph = draw(net, collapse=collapse)
        parsed = parse_dot(graph.source)
        drawn = set(by_id(parsed))
        if collapse:
            assert {f"block:{run.name}" for run in structure.runs} <= drawn
        else:
            assert {layer.name for layer in net.layers()} - stacked <= drawn
            assert len(clusters_with(parsed, "block:")) == len(structure.blocks)
        if HAS_DOT:
            root = svg_tree(graph.pipe(format="svg"))
            assert len(svg_groups(root, "node")) == len(parsed["nodes"])
            assert len(svg_groups(root, "edge")) == len(parsed["edges"])
