"""Find a net's building blocks from its structure alone: residual blocks, Inception modules, dense layers.

A block is a single-entry single-exit region that ends at a merge (a layer reading from two or more
producers): its entry `e` is the merge's immediate dominator and the merge `m` is the entry's immediate
post-dominator, so every path into the region passes `e` and every path out of it passes `m`. The block is
everything on the paths from `e` to `m`, `m` included and `e` not; a region holding most of the net is the
net's overall shape rather than a block, and a region inside another block belongs to that block.

Blocks joined by plain chains of layers form a chain; a stage is a run of chained blocks at one spatial size
(ResNet's res2 ... res5), split again where a block changing the shape follows repeats (a dilated ResNet's
res4 after res3). Consecutive blocks with the same layer types, parameters and wiring are repeats (res2b,
res2c). Names come from the layer names only after the structure is found, and say what a block holds: a
name most of its layers share, else its first and last layer and how many layers lie between them
("conv5_1 … fuse_pool4 (16 layers)"), never one layer's name standing for all of them.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Hashable

import networkx as nx

from protodef.ir import Net

from .stacks import StackGraph, stack_layers

_SOURCE, _SINK = "\0source", "\0sink"
_SEPARATORS = "/_.-: "


@dataclass(frozen=True)
class Block:
    name: str
    nodes: tuple[str, ...]     # stack names in execution order; the last is the merge that ends the block
    entry: str                 # the node outside the block that every path into it comes from
    signature: Hashable        # layer types, parameters and wiring, not names
    layer_count: int = 0       # Caffe layers inside, those stacked on others included
    named: bool = True         # False: its layers share no name, so `name` spans its first to its last

    @property
    def exit(self) -> str:
        return self.nodes[-1]


@dataclass(frozen=True)
class Run:
    """Consecutive blocks with one signature, each feeding the next directly."""

    blocks: tuple[Block, ...]

    @property
    def name(self) -> str:
        names = [block.name for block in self.blocks]
        if len(names) > 1 and not all(block.named for block in self.blocks):
            return span_name(self.blocks[0].nodes[0], self.blocks[-1].exit,
                             sum(block.layer_count for block in self.blocks))
        return ", ".join(names) if len(names) <= 2 else f"{names[0]} … {names[-1]}"


@dataclass(frozen=True)
class Stage:
    """Chained blocks at one spatial size, and the plain layers between them."""

    name: str
    runs: tuple[Run, ...]
    between: tuple[str, ...]   # stacks on the chain between blocks that belong to no block

    @property
    def blocks(self) -> tuple[Block, ...]:
        return tuple(block for run in self.runs for block in run.blocks)


@dataclass(frozen=True)
class Structure:
    blocks: tuple[Block, ...]  # in execution order, none inside another
    stages: tuple[Stage, ...]
    runs: tuple[Run, ...]      # every block is in exactly one run


def find_blocks(net: Net, stacks: StackGraph | None = None) -> Structure:
    """The blocks, repeats and stages of `net`."""
    stacks = stacks or stack_layers(net)
    if not stacks.stacks:          # a net of inputs only: nothing to group
        return Structure((), (), ())
    order = {node: index for index, node in enumerate([*stacks.inputs, *stacks.stacks])}   # execution order
    flow = _with_terminals(stacks.graph)
    dominator = nx.immediate_dominators(flow, _SOURCE)
    post_dominator = nx.immediate_dominators(flow.reverse(copy=False), _SINK)
    regions = []
    for merge in stacks.stacks:
        if len(set(stacks.graph.predecessors(merge))) < 2:
            continue
        entry = dominator.get(merge)
        if entry is None or entry == _SOURCE or post_dominator.get(entry) != merge:
            continue
        inside = (nx.descendants(stacks.graph, entry) & nx.ancestors(stacks.graph, merge)) | {merge}
        # A region holding most of the net is its overall shape (an FCN's skip connections), not a block.
        if 2 * len(inside) <= len(stacks.stacks):
            regions.append((entry, tuple(sorted(inside, key=order.__getitem__))))
    prefixes = prefix_counts(stacks.stacks)
    blocks = [_make_block(stacks, entry, nodes, prefixes) for entry, nodes in _outermost(regions)]
    blocks.sort(key=lambda block: order[block.exit])
    blocks = _rename_shared(blocks, prefixes)
    runs, stages = _group(stacks, net, blocks)
    return Structure(tuple(blocks), tuple(stages), tuple(runs))


def _with_terminals(graph: nx.MultiDiGraph) -> nx.DiGraph:
    flow = nx.DiGraph(graph)
    for node in graph.nodes:
        if graph.in_degree(node) == 0:
            flow.add_edge(_SOURCE, node)
        if graph.out_degree(node) == 0:
            flow.add_edge(node, _SINK)
    return flow


def _outermost(regions: list[tuple[str, tuple[str, ...]]]) -> list[tuple[str, tuple[str, ...]]]:
    """Drop regions inside bigger ones (a residual connection inside one branch of a block)."""
    kept, taken = [], set()
    for entry, nodes in sorted(regions, key=lambda region: -len(region[1])):
        if not taken.intersection(nodes):
            kept.append((entry, nodes))
            taken.update(nodes)
    return kept


def _make_block(stacks: StackGraph, entry: str, nodes: tuple[str, ...], prefixes: Counter) -> Block:
    count = _layer_count(stacks, nodes)
    name = _block_name(nodes) or own_prefix(nodes, prefixes)
    return Block(name or span_name(nodes[0], nodes[-1], count), nodes, entry, _signature(stacks, entry, nodes),
                 count, bool(name))


def _layer_count(stacks: StackGraph, nodes) -> int:
    return sum(len(stacks.stacks[node].layers) for node in nodes)


def _rename_shared(blocks: list[Block], prefixes: Counter) -> list[Block]:
    """A name several blocks got (DPN's "dpn") names none of them, unless it is the block's merge (PSPNet's
    conv5_3, a residual block, before the pyramid pooling named conv5_3_pool1 ... conv5_3_concat)."""
    names = Counter(block.name for block in blocks)
    renamed = []
    for block in blocks:
        if names[block.name] > 1 and block.name != block.exit:
            name = own_prefix(block.nodes, prefixes)
            block = replace(block, name=name or span_name(block.nodes[0], block.exit, block.layer_count),
                            named=bool(name))
        renamed.append(block)
    return renamed


def _signature(stacks: StackGraph, entry: str, nodes: tuple[str, ...]) -> Hashable:
    position = {node: index for index, node in enumerate(nodes)}
    position[entry] = -1
    layers = tuple(tuple((layer.type, _param_values(layer.params)) for layer in stacks.stacks[node].layers)
                   for node in nodes)
    wiring = tuple(sorted((position[a], position[b]) for a, b in stacks.graph.subgraph((entry, *nodes)).edges()))
    return layers, wiring


def _param_values(params: object) -> str:
    """What a layer computes, for comparing blocks: its parameters without the fillers (how training would
    initialise it is not part of the structure, and filler objects need not compare equal)."""
    if not is_dataclass(params):
        return repr(params)
    return repr([(f.name, getattr(params, f.name)) for f in fields(params) if "filler" not in f.name])


def _block_name(nodes: tuple[str, ...]) -> str:
    """The longest prefix of the merge's name that most of the block's layers share ("res2a" of res2a_branch1,
    res2a_branch2a, ..., res2a; "resx2" even when ShuffleNet's shuffle2 is among them), or "" when there is none."""
    merge = nodes[-1]
    for end in range(len(merge), 1, -1):
        if not _at_boundary(merge, end):
            continue
        prefix = merge[:end]
        sharing = sum(1 for name in nodes if name.startswith(prefix) and _at_boundary(name, end))
        if 2 * sharing >= len(nodes) and sharing > 1:
            return prefix.rstrip(_SEPARATORS) or merge
    return ""


def own_prefix(names, prefixes: Counter) -> str:
    """A name most of `names` share up to a separator and no other layer has, or "": DenseNet's conv2_1 of
    conv2_1/x1/bn, conv2_1/x1, conv2_1/x2 and concat_2_1. Prefixes that end where letters meet digits are
    not names: SegNet's "conv" of conv4_1 ... conv4_1_D."""
    names = list(names)
    mine = prefix_counts(names)
    owned = [(sharing, len(prefix), prefix) for prefix, sharing in mine.items()
             if sharing > 1 and 2 * sharing >= len(names) and prefixes[prefix] == sharing]
    return max(owned)[2] if owned else ""


def prefix_counts(names) -> Counter:
    """For every prefix that ends at a separator or a name's end (without the separator), how many of `names`
    have it."""
    counts: Counter = Counter()
    for name in names:
        counts.update({name[:end] for end in range(2, len(name) + 1)
                       if end == len(name) or name[end] in _SEPARATORS and name[end - 1] not in _SEPARATORS})
    return counts


def span_name(first: str, last: str, layer_count: int) -> str:
    """The name of layers that share none: where they start and end, and how many they are."""
    return f"{first} … {last} ({layer_count} layers)"


def common_name(names) -> str:
    """The longest common prefix of `names` that ends at a word boundary ("res2" of res2a, res2b)."""
    names = list(names)
    prefix = os.path.commonprefix(names)
    if not all(_at_boundary(name, len(prefix)) for name in names):
        prefix = prefix[:max((i for i in range(len(prefix)) if all(_at_boundary(n, i) for n in names)),
                             default=0)]
    prefix = prefix.rstrip(_SEPARATORS)
    return prefix if len(prefix) >= 2 else ""


def _at_boundary(name: str, index: int) -> bool:
    """Whether a prefix of `name` of this length ends a word: at the end, a separator, or letters meeting digits."""
    if index >= len(name):
        return True
    before, after = name[index - 1:index], name[index]
    return (after in _SEPARATORS or before in _SEPARATORS
            or (before.isdigit() != after.isdigit() and before.isalnum() and after.isalnum()))


def _group(stacks: StackGraph, net: Net, blocks: list[Block]) -> tuple[list[Run], list[Stage]]:
    runs, stages = [], []
    for chain in _chains(stacks, net, blocks):
        for part in _split_after_repeats(net, stacks, _runs(chain)):
            runs.extend(part)
            if sum(len(run.blocks) for run in part) > 1:
                between = tuple(node for run in part for block in run.blocks for node in chain[block])
                between = between[len(chain[part[0].blocks[0]]):]   # what leads into a stage is outside it
                stages.append(_make_stage(stacks, blocks, tuple(part), between))
    return runs, stages


def _make_stage(stacks: StackGraph, every_block: list[Block], runs: tuple[Run, ...],
                between: tuple[str, ...]) -> Stage:
    blocks = [block for run in runs for block in run.blocks]
    if not all(block.named for block in blocks):
        nodes = [node for block in blocks for node in block.nodes] + list(between)
        return Stage(span_name(blocks[0].nodes[0], blocks[-1].exit, _layer_count(stacks, nodes)), runs, between)
    name = common_name(block.name for block in blocks)
    # A prefix that blocks outside the stage have too (SqueezeNet's "fire", ENet's "conv") names it not: its
    # first and last block do.
    others = [block.name for block in every_block if block.named and block not in blocks]
    if not name or any(other.startswith(name) and _at_boundary(other, len(name)) for other in others):
        name = f"{blocks[0].name} … {blocks[-1].name}"
    return Stage(name, runs, between)


def _chains(stacks: StackGraph, net: Net, blocks: list[Block]) -> list[dict[Block, tuple[str, ...]]]:
    """Blocks that follow each other at one spatial size, each with the plain stacks leading into it."""
    chains: list[dict[Block, tuple[str, ...]]] = []
    last = None
    for block in blocks:
        gap = _gap(stacks, last, block) if last is not None else None
        if gap is not None and _spatial(net, stacks, last.exit) == _spatial(net, stacks, block.exit):
            chains[-1][block] = gap
        else:
            chains.append({block: ()})
        last = block
    return chains


def _split_after_repeats(net: Net, stacks: StackGraph, runs: list[Run]) -> list[list[Run]]:
    """Split a chain where a block changing the shape follows repeats: a dilated ResNet keeps its spatial size
    from res3 on, but each stage is still a projection block and its repeats."""
    parts: list[list[Run]] = [[]]
    for run in runs:
        first = run.blocks[0]
        changes = _shape(net, stacks, first.entry) != _shape(net, stacks, first.exit)
        if parts[-1] and len(parts[-1][-1].blocks) > 1 and changes:
            parts.append([])
        parts[-1].append(run)
    return parts


def _runs(chain: dict[Block, tuple[str, ...]]) -> list[Run]:
    runs: list[list[Block]] = []
    for block, gap in chain.items():
        if runs and not gap and runs[-1][-1].signature == block.signature:
            runs[-1].append(block)
        else:
            runs.append([block])
    return [Run(tuple(run)) for run in runs]


def _gap(stacks: StackGraph, before: Block, after: Block) -> tuple[str, ...] | None:
    """The stacks on a plain chain from `before`'s exit to `after`'s entry, or None if there is no such chain."""
    gap, node = [], before.exit
    graph = stacks.graph
    while node != after.entry:
        successors = set(graph.successors(node))
        if len(successors) != 1:
            return None
        (node,) = successors
        if node not in stacks.stacks or len(set(graph.predecessors(node))) != 1:
            return None
        gap.append(node)
    return tuple(gap)


def _shape(net: Net, stacks: StackGraph, node: str) -> tuple[int | str, ...] | None:
    """The shape as drawn: a symbolic size by its expression, so that grouping compares text, never asks
    whether two expressions are equal for every size."""
    value = stacks.stacks[node].outputs[0] if node in stacks.stacks else stacks.inputs[node].value
    shape = net.shapes.get(value)
    return None if shape is None else tuple(d if isinstance(d, int) else str(d) for d in shape)


def _spatial(net: Net, stacks: StackGraph, node: str) -> tuple[int, ...] | None:
    shape = _shape(net, stacks, node)
    return None if shape is None else tuple(shape[2:])
