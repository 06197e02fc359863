"""Draw a Caffe net with graphviz: `draw(net)` returns a graphviz.Digraph (inline in Jupyter), `save_drawing`
writes svg, png, pdf or dot."""
from .blocks import Block, Run, Stage, Structure, find_blocks
from .drawing import FORMATS, draw, save_drawing

__all__ = ["draw", "save_drawing", "find_blocks", "Block", "Run", "Stage", "Structure", "FORMATS"]
