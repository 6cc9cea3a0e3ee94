"""Human units: one scale per row (chosen from its largest value) and short numbers."""

from __future__ import annotations

import math

# unit -> (step between prefixes, labels from the base unit up)
_PREFIXED = {
    "bps": (1000.0, ("bit/s", "kbit/s", "Mbit/s", "Gbit/s")),
    "Bps": (1000.0, ("B/s", "kB/s", "MB/s", "GB/s")),
    "bytes": (1000.0, ("B", "kB", "MB", "GB", "TB")),
    "hertz": (1000.0, ("Hz", "kHz", "MHz", "GHz")),
    "per_s": (1000.0, ("/s", "k/s", "M/s")),
}
_FIXED = {"count": "", "celsius": "°C", "percent": "%", "dBm": "dBm", "dB": "dB", "seconds": "s", "ratio": "",
          "state": ""}


def scale_for(unit: str, magnitude: float) -> tuple[float, str]:
    """(divisor, label) so that ``magnitude / divisor`` is below the next prefix step."""
    if unit in _PREFIXED:
        step, labels = _PREFIXED[unit]
        div, i = 1.0, 0
        m = abs(magnitude) if math.isfinite(magnitude) else 0.0
        while i < len(labels) - 1 and m >= step * div * 0.9995:
            div *= step
            i += 1
        return div, labels[i]
    return 1.0, _FIXED.get(unit, unit)


def num(x: float) -> str:
    """At most 6 characters, about 3 significant digits."""
    if not math.isfinite(x):
        return "?"
    a = abs(x)
    if a >= 99_999.5:  # only unscaled counts get here: compact with a suffix
        for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
            if a >= div * 0.9995:
                return num(x / div) + suffix
    if a >= 999.5 or a == 0 or x == round(x) or a >= 99.95:
        text = f"{x:.0f}"
    elif a >= 9.995:
        text = f"{x:.1f}"
    else:
        text = f"{x:.2f}"
    if text in ("-0", "-0.0", "-0.00"):
        text = text[1:]
    return text if len(text) <= 6 else f"{x:.3g}"


def state_word(v: float) -> str:
    return "up" if v >= 0.5 else "down"


def value(v: float, unit: str) -> str:
    """One value with its own best scale and unit, e.g. ``5.2 Mbit/s``."""
    if unit == "state":
        return state_word(v)
    div, label = scale_for(unit, v)
    text = num(v / div)
    if not label:
        return text
    return f"{text}{label}" if label in ("%", "°C") else f"{text} {label}"
