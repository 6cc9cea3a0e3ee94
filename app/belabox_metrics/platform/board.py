"""Board detection and board profiles (``hardware/<board>/profile.yaml``).

Hardware differences are data: a profile names the board's thermal zone types (and which
one is the SoC), its hwmon chips and its disk and interface patterns. ``detect_profile``
is the only place that decides which board this is; it follows CeraUI's order
(belabox-image.md §2.1): the device-tree ``compatible`` list, then the device-tree
``model``, then DMI, then the generic profile.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from belabox_metrics.platform.files import read_optional

GENERIC = "generic"
# Where profiles live: next to the source tree in a checkout, under /usr/lib in the image.
_SEARCH = (
    Path(__file__).resolve().parents[3] / "hardware",
    Path("/usr/lib/belabox-metrics/hardware"),
)


@dataclass(frozen=True)
class Profile:
    id: str = GENERIC
    name: str = "Generic Linux"
    compatible: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    dmi_boards: tuple[str, ...] = ()
    soc_zones: tuple[str, ...] = ()  # thermal zone types, first present wins


def profiles_dir() -> Path | None:
    env = os.environ.get("BELABOX_METRICS_HARDWARE_DIR")
    if env:
        return Path(env)
    for d in _SEARCH:
        if d.is_dir():
            return d
    return None


def _tuple(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def parse_profile(text: str, board_id: str) -> Profile:
    """A Profile from profile.yaml text; unknown keys are ignored, missing ones default."""
    raw = yaml.safe_load(text) or {}
    match = raw.get("match") or {}
    thermal = raw.get("thermal") or {}
    return Profile(
        id=str(raw.get("id", board_id)),
        name=str(raw.get("name", board_id)),
        compatible=_tuple(match.get("compatible")),
        models=_tuple(match.get("model")),
        dmi_boards=_tuple(match.get("dmi_board")),
        soc_zones=_tuple(thermal.get("soc")),
    )


def load_profiles(directory: Path | None = None) -> tuple[Profile, ...]:
    return _load_profiles(directory or profiles_dir())


# Read once per process: the files ship with the package and change only with it (and an
# upgrade restarts the agent). `run` reads them while its config is still being validated.
@functools.lru_cache(maxsize=4)
def _load_profiles(directory: Path | None) -> tuple[Profile, ...]:
    if directory is None:
        return ()
    out = []
    for entry in sorted(directory.iterdir()):
        path = entry / "profile.yaml"
        if path.is_file():
            out.append(parse_profile(path.read_text(encoding="utf-8"), entry.name))
    return tuple(out)


def parse_compatible(raw: str | None) -> list[str]:
    """The device tree's ``compatible``: NUL-separated, most specific first."""
    return [c for c in (raw or "").split("\0") if c]


def choose(profiles: Sequence[Profile], compatible: list[str], model: str, dmi_board: str) -> Profile:
    """The profile whose match is most specific; the generic one when none matches."""
    best: tuple[int, str] | None = None
    chosen = None
    for p in profiles:
        for rank, c in enumerate(compatible):
            if c in p.compatible and (best is None or (rank, p.id) < best):
                best, chosen = (rank, p.id), p
    if chosen is not None:
        return chosen
    for p in profiles:
        if model and any(model.startswith(m) for m in p.models):
            return p
        if dmi_board and dmi_board in p.dmi_boards:
            return p
    for p in profiles:
        if p.id == GENERIC:
            return p
    return Profile()


def detect_profile(procfs: str, sysfs: str, directory: Path | None = None) -> Profile:
    """The board profile for the machine whose roots these are. This is the one function
    that decides which board we run on."""
    dt = os.path.join(procfs, "device-tree")
    dt_sys = os.path.join(sysfs, "firmware", "devicetree", "base")
    compatible_raw = read_optional(os.path.join(dt, "compatible")) or read_optional(
        os.path.join(dt_sys, "compatible"))
    model = (read_optional(os.path.join(dt, "model")) or read_optional(os.path.join(dt_sys, "model")) or "")
    dmi_board = read_optional(os.path.join(sysfs, "class", "dmi", "id", "board_name")) or ""
    return choose(load_profiles(directory), parse_compatible(compatible_raw), model.rstrip("\0"), dmi_board)
