#!/usr/bin/env python3
"""Draws a terminal's text (tmux capture-pane -p) as an SVG picture.

Usage: scripts/pane-svg.py < pane.txt > picture.svg

Each character cell is 8.4 x 17 px in a monospace font, light text on a
dark background, as a terminal shows it; the text is the pane's, unchanged
(capture-pane -p keeps no colours: none are invented here).
"""
import sys
from xml.sax.saxutils import escape

CELL_W, CELL_H, PAD = 8.4, 17, 10


def main():
    lines = sys.stdin.read().rstrip("\n").split("\n")
    cols = max((len(l) for l in lines), default=0)
    width = int(cols * CELL_W + 2 * PAD)
    height = int(len(lines) * CELL_H + 2 * PAD)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f'<rect width="{width}" height="{height}" fill="#1e1e1e"/>',
        '<g font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="14" '
        'fill="#d4d4d4" xml:space="preserve">',
    ]
    for i, line in enumerate(lines):
        y = PAD + (i + 1) * CELL_H - 4
        out.append(
            f'<text x="{PAD}" y="{y}" textLength="{len(line) * CELL_W:.1f}" '
            f'lengthAdjust="spacingAndGlyphs">{escape(line)}</text>'
            if line.strip()
            else ""
        )
    out.append("</g></svg>")
    print("\n".join(l for l in out if l))


if __name__ == "__main__":
    main()
