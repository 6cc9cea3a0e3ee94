"""Field history rendered: the key signals on one terminal screen, or one self-contained HTML file.

Pure: input is the history JSON (see ``history``), output is text. Nothing here reads files,
the spool or the clock.
May import: the standard library only (it sits at the bottom layer, beside config and platform).

Renderers are imported from their modules (``timeline.html``, ``timeline.screen``), not from
here: the agent needs ``timeline.signals`` only, and the renderers (with statistics, decimal
and fractions) would otherwise stay resident in it.
"""
