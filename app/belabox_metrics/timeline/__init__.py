"""Field history rendered: the key signals on one terminal screen, or one self-contained HTML file.

Pure: input is the history JSON (see ``history``), output is text. Nothing here reads files,
the spool or the clock.
May import: the standard library only (it sits at the bottom layer, beside config and platform).
"""

from belabox_metrics.timeline.html import render_html
from belabox_metrics.timeline.screen import render_screen

__all__ = ["render_html", "render_screen"]
