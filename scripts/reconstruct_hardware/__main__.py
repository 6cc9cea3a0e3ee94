"""python3 -m scripts.reconstruct_hardware [NAME ...]: rewrite hardware/<board>/{proc,sys,root}
and hardware/edge/<problem>/ from the descriptions in boards.py and edges.py.

Only reconstructed trees are written; a board whose folder holds a RECORDED marker (a tree
captured from real hardware by scripts/capture-hardware) is left alone.
"""

from __future__ import annotations

import argparse
import os
import sys

from scripts.reconstruct_hardware.board import build
from scripts.reconstruct_hardware.boards import BOARDS
from scripts.reconstruct_hardware.edges import EDGES
from scripts.reconstruct_hardware.tree import Tree

HARDWARE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "hardware")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="reconstruct_hardware")
    p.add_argument("names", nargs="*", help="boards or edge problems (default: all)")
    p.add_argument("--out", default=os.path.normpath(HARDWARE))
    args = p.parse_args(argv)
    names = args.names or [*BOARDS, *EDGES]
    for name in names:
        if name in BOARDS:
            folder = os.path.join(args.out, name)
            if os.path.exists(os.path.join(folder, "RECORDED")):
                print(f"{name}: recorded from a real board, not overwritten", file=sys.stderr)
                continue
            build(Tree(folder), BOARDS[name]())
        elif name in EDGES:
            EDGES[name](Tree(os.path.join(args.out, "edge", name)))
        else:
            print(f"unknown board or edge tree {name!r}", file=sys.stderr)
            return 2
        print(f"{name}: written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
