"""The driver: Net -> graphviz.Digraph (one node per stack, blocks as clusters or collapsed nodes, shapes on the
edges, a legend), and the file writer."""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import graphviz
import networkx as nx

from protodef.errors import OutputError, UnsupportedError
from protodef.ir import Net, Value
from protodef.write import atomic_write

from . import labels
from .blocks import Block, Run, Stage, Structure, find_blocks
from .stacks import StackGraph, stack_layers
from .style import (
    BLOCK_ATTRS,
    EDGE_ATTRS,
    GRAPH_ATTRS,
    NODE_ATTRS,
    STAGE_ATTRS,
    title_label,
)

FORMATS = ("svg", "png", "pdf", "dot")
INSTALL_HINT = "install graphviz (Debian/Ubuntu: apt-get install graphviz)"


def draw(net: Net, *, rankdir: str = "TB", collapse: bool = False, shapes: bool = True) -> graphviz.Digraph:
    """The net as a graphviz Digraph (shown inline by Jupyter; `.source` is the DOT text); a net from the pass
    pipeline draws what the backends see.

    collapse: draw each block (residual block, Inception module) as one node, repeats of a block as one node
    with a count; otherwise blocks are labelled clusters. shapes: label edges with the shape of the blob they
    carry."""
    stacks = stack_layers(net)
    structure = find_blocks(net, stacks)
    canvas = _Canvas(net, stacks, graphviz.Digraph(
        name=net.name or "net",
        graph_attr={**GRAPH_ATTRS, "rankdir": rankdir, "labelloc": "t", "labeljust": _TITLE_SIDE[rankdir]},
        node_attr=NODE_ATTRS, edge_attr=EDGE_ATTRS))
    canvas.spine.update(nx.dag_longest_path(nx.DiGraph(stacks.graph)))
    _draw_nodes(canvas, structure, collapse)
    _draw_edges(canvas, shapes)
    canvas.graph.attr(label=title_label(net.name, canvas.families))
    return canvas.graph


# Where the title and legend go: above where the net starts, where reading starts. A net drawn left to right is
# far wider than high (ResNet-50: 17,900 by 380 pixels), and a title centred over it is lost in the middle.
_TITLE_SIDE = {"TB": "c", "BT": "c", "LR": "l", "RL": "r"}


def save_drawing(net: Net, output: str | os.PathLike, *, fmt: str = "svg", rankdir: str = "TB",
                 collapse: bool = False, shapes: bool = True) -> str | None:
    """Write the drawing to `output` as svg, png, pdf or dot. Without graphviz's `dot` program, write the DOT
    source beside `output` instead and return a one-line message saying so; a PNG too large for a bitmap is
    scaled down to fit, and the message says what draws it at full size (None when `output` was written as
    asked)."""
    if fmt not in FORMATS:
        raise UnsupportedError("unknown drawing format", expected=" or ".join(FORMATS), found=fmt)
    graph = draw(net, rankdir=rankdir, collapse=collapse, shapes=shapes)
    if fmt == "dot":
        atomic_write(output, graph.source)
        return None
    if fmt == "png":
        graph.graph_attr.update(dpi=str(_PNG_DPI), size=f"{_PNG_PIXELS / _PNG_DPI:.2f},{_PNG_PIXELS / _PNG_DPI:.2f}")
    try:
        data = graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        fallback = Path(output).with_suffix(".dot")
        atomic_write(fallback, graph.source)
        return f"wrote {fallback}; {INSTALL_HINT} to render {fmt}"
    except graphviz.CalledProcessError as error:
        message = (error.stderr or b"").decode(errors="replace").strip().splitlines()
        raise OutputError(f"graphviz could not render {fmt}: {message[0] if message else error}",
                          where=str(output)) from None
    atomic_write(output, data)
    return _scaled_note(data, output) if fmt == "png" else None


# cairo, which draws graphviz's PNGs, takes at most 32,767 pixels a side (SENet-154 drawn whole is 42,000 high);
# past that dot shrinks the picture with a warning on stderr. Giving graphviz the largest size up front shrinks
# it the same way, quietly, and leaves the one line saying so, and what to do instead, to us.
_PNG_PIXELS = 32_000
_PNG_DPI = 96


def _scaled_note(png: bytes, output: str | os.PathLike) -> str | None:
    width, height = struct.unpack(">II", png[16:24])     # the IHDR chunk, first in every PNG
    if max(width, height) < 0.99 * _PNG_PIXELS:
        return None
    return (f"wrote {output} ({width}×{height}), scaled down to fit a PNG's size limit: --collapse draws "
            f"repeated blocks as one node each, and --format svg or pdf has no such limit")


@dataclass
class _Canvas:
    net: Net
    stacks: StackGraph
    graph: graphviz.Digraph
    drawn_as: dict[str, str] = field(default_factory=dict)   # stack or input node -> the drawn node's id
    families: set[str] = field(default_factory=set)
    collapsed: set[str] = field(default_factory=set)          # drawn ids of collapsed blocks
    spine: set[str] = field(default_factory=set)              # the longest path: drawn as a straight line
    serial: int = 0

    def new_id(self, prefix: str = "n") -> str:
        # Ids are our own: layer names may hold ':' (graphviz's port separator) or quotes.
        self.serial += 1
        return f"{prefix}{self.serial}"

    def add_stack(self, target: graphviz.Digraph, name: str) -> None:
        stack = self.stacks.stacks[name]
        node_id = self.new_id()
        self.drawn_as[name] = node_id
        self.families.update(layer.spec.family for layer in stack.layers)
        target.node(node_id, label=labels.stack_label(stack), tooltip=labels.stack_tooltip(stack), id=name,
                    **self.grouping(name))

    def grouping(self, *nodes: str) -> dict[str, str]:
        # graphviz keeps the edges between nodes of one group straight: the main path runs down the middle
        # and branches (a ResNet's shortcuts, an Inception module's columns) open to its sides.
        return {"group": "spine"} if self.spine.intersection(nodes) else {}

    def add_run(self, target: graphviz.Digraph, run: Run) -> None:
        node_id = self.new_id()
        self.collapsed.add(node_id)
        for block in run.blocks:
            for name in block.nodes:
                self.drawn_as[name] = node_id
                self.families.update(layer.spec.family for layer in self.stacks.stacks[name].layers)
        target.node(node_id, label=labels.run_label(self.net, self.stacks, run), id=f"block:{run.name}",
                    tooltip=f"{run.name}: {len(run.blocks)} block(s)",
                    **self.grouping(*(name for block in run.blocks for name in block.nodes)))


def _draw_nodes(canvas: _Canvas, structure: Structure, collapse: bool) -> None:
    graph, stacks, net = canvas.graph, canvas.stacks, canvas.net
    for node, net_input in stacks.inputs.items():
        node_id = canvas.new_id()
        canvas.drawn_as[node] = node_id
        canvas.families.add("data")
        graph.node(node_id, label=labels.input_label(net, net_input), id=node, **canvas.grouping(node))
    in_structure = {name for block in structure.blocks for name in block.nodes}
    in_structure.update(name for stage in structure.stages for name in stage.between)
    staged = {block for stage in structure.stages for block in stage.blocks}
    # Stacks, blocks and stages go in execution order, so graphviz lays ties out as the prototxt reads.
    first_of: dict[str, Stage | Run] = {stage.blocks[0].nodes[0]: stage for stage in structure.stages}
    first_of.update({run.blocks[0].nodes[0]: run for run in structure.runs if run.blocks[0] not in staged})
    for name in stacks.stacks:
        item = first_of.get(name)
        if isinstance(item, Stage):
            _draw_stage(canvas, item, collapse)
        elif isinstance(item, Run):
            _draw_run(canvas, graph, item, collapse)
        elif name not in in_structure:
            canvas.add_stack(graph, name)


def _draw_stage(canvas: _Canvas, stage: Stage, collapse: bool) -> None:
    with canvas.graph.subgraph(name=canvas.new_id("cluster_stage")) as cluster:
        cluster.attr(label=stage.name, id=f"stage:{stage.name}", **STAGE_ATTRS)
        for run in stage.runs:
            _draw_run(canvas, cluster, run, collapse)
        for name in stage.between:
            canvas.add_stack(cluster, name)


def _draw_run(canvas: _Canvas, target: graphviz.Digraph, run: Run, collapse: bool) -> None:
    if collapse:
        canvas.add_run(target, run)
        return
    for block in run.blocks:
        _draw_block_cluster(canvas, target, block)


def _draw_block_cluster(canvas: _Canvas, target: graphviz.Digraph, block: Block) -> None:
    with target.subgraph(name=canvas.new_id("cluster_block")) as cluster:
        cluster.attr(label=block.name, id=f"block:{block.name}", **BLOCK_ATTRS)
        for name in block.nodes:
            canvas.add_stack(cluster, name)


def _draw_edges(canvas: _Canvas, shapes: bool) -> None:
    net, stacks, graph = canvas.net, canvas.stacks, canvas.graph
    drawn, labelled = set(), set()
    for source, target, data in stacks.graph.edges(data=True):
        tail, head, value = canvas.drawn_as[source], canvas.drawn_as[target], data["value"]
        if tail == head or (tail, head, value) in drawn:
            continue
        drawn.add((tail, head, value))
        # One label per blob, on its first edge: the edges fanning out of a node carry the same blob. A
        # collapsed block shows its output shape itself.
        show = shapes and tail not in canvas.collapsed and value not in labelled
        labelled.add(value)
        graph.edge(tail, head, label=_edge_label(net, value, show))
    for value in net.outputs():
        node_id = canvas.new_id("out")
        graph.node(node_id, label=labels.output_label(net, value), id=f"output:{net.value_name(value)}")
        graph.edge(canvas.drawn_as[stacks.producer[value]], node_id, label=_edge_label(net, value, shapes))


def _edge_label(net: Net, value: Value, shapes: bool) -> str:
    return labels.shape_text(labels.value_shape(net, value)) if shapes else ""
