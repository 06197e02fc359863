"""How a drawing looks: one colour per layer family (pale fills that print well, with a darker line of the same
hue), the legend, and the graph-wide attributes."""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Iterable

from protodef.layers.registry import FAMILIES

FONT = "Helvetica,Arial,sans-serif"


@dataclass(frozen=True)
class FamilyStyle:
    title: str      # what the legend calls the family
    fill: str
    line: str


# ColorBrewer "Paired" light tones for the five families a CNN is mostly made of, softer tones for the rest.
FAMILY_STYLES: dict[str, FamilyStyle] = {
    "data": FamilyStyle("input", "#E6E6E6", "#707070"),
    "conv": FamilyStyle("convolution", "#A6CEE3", "#1F78B4"),
    "norm": FamilyStyle("normalisation", "#FFF2AE", "#B59B00"),
    "activation": FamilyStyle("activation", "#FDBF6F", "#E07B00"),
    "pool": FamilyStyle("pooling", "#B2DF8A", "#33A02C"),
    "merge": FamilyStyle("merge", "#FB9A99", "#D7191C"),
    "dense": FamilyStyle("fully connected", "#CAB2D6", "#6A3D9A"),
    "softmax": FamilyStyle("softmax / loss", "#F1B6DA", "#C51B7D"),
    "loss": FamilyStyle("softmax / loss", "#F1B6DA", "#C51B7D"),
    "reshape": FamilyStyle("reshape", "#E5D8BD", "#8C6D31"),
    "resize": FamilyStyle("resize", "#D9D9F3", "#5B5BA8"),
    "detection": FamilyStyle("detection", "#B3E2CD", "#1B9E77"),
    "misc": FamilyStyle("other", "#FFFFFF", "#8C8C8C"),
}

BLOCK_LINE = "#4D4D4D"     # the outline of a collapsed block
STAGE_FILL = "#F5F7FA"
STAGE_LINE = "#B8C2CC"
TEXT = "#1A1A1A"
MUTED = "#5C5C5C"        # secondary text: layer parameters, shapes on edges
EDGE = "#6E6E6E"

GRAPH_ATTRS = {"fontname": FONT, "fontsize": "10", "nodesep": "0.25", "ranksep": "0.28", "bgcolor": "white",
               "pad": "0.2", "newrank": "true", "outputorder": "edgesfirst"}
NODE_ATTRS = {"fontname": FONT, "fontsize": "10", "shape": "plain", "fontcolor": TEXT}
EDGE_ATTRS = {"fontname": FONT, "fontsize": "8", "color": EDGE, "fontcolor": MUTED, "arrowsize": "0.6",
              "penwidth": "0.9"}
STAGE_ATTRS = {"style": "rounded,filled", "fillcolor": STAGE_FILL, "color": STAGE_LINE, "fontname": FONT,
               "fontsize": "13", "fontcolor": TEXT, "labeljust": "l", "margin": "10"}
BLOCK_ATTRS = {"style": "rounded,dashed", "fillcolor": "white", "color": "#8C96A0", "fontname": FONT,
               "fontsize": "11", "fontcolor": MUTED, "labeljust": "l", "margin": "8"}


def family_style(family: str) -> FamilyStyle:
    return FAMILY_STYLES.get(family, FAMILY_STYLES["misc"])


def title_label(title: str, families: Iterable[str], per_row: int = 4) -> str:
    """The graph's label: the net's name over a legend of the families drawn (a swatch and a name each, in
    FAMILIES order). Part of the graph's label rather than a node, it takes no rank from the layout."""
    present, seen, entries = set(families), set(), []
    for family in FAMILIES:
        style = FAMILY_STYLES[family]
        if family in present and style.title not in seen:
            seen.add(style.title)
            entries.append(f'<TD WIDTH="14" HEIGHT="10" FIXEDSIZE="TRUE" BGCOLOR="{style.fill}" COLOR="{style.line}" '
                           f'BORDER="1"></TD><TD ALIGN="LEFT">{escape(style.title)}</TD>')
    rows = ["<TR>" + "".join(entries[i:i + per_row]) + "</TR>" for i in range(0, len(entries), per_row)]
    legend = ('<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="3" CELLPADDING="1">' + "".join(rows) + "</TABLE>")
    heading = f'<TR><TD><FONT POINT-SIZE="16">{escape(title)}</FONT></TD></TR>' if title else ""
    return (f'<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="2">{heading}'
            f'<TR><TD><FONT POINT-SIZE="10" COLOR="{MUTED}">{legend}</FONT></TD></TR></TABLE>>')
