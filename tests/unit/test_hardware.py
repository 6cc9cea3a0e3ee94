"""Board detection and the shape of the trees under hardware/."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from belabox_metrics.platform.board import GENERIC, choose, detect_profile, load_profiles, parse_compatible

HARDWARE = Path(__file__).resolve().parents[2] / "hardware"
BOARDS = ("rk3588-orangepi5plus", "rk3588-rock5b", "jetson-nano", "generic")


@pytest.mark.parametrize("board", BOARDS)
def test_each_board_tree_is_detected_as_its_own_board(board):
    tree = HARDWARE / board
    assert detect_profile(str(tree / "proc"), str(tree / "sys")).id == board


def test_unknown_boards_and_shared_soc_strings_fall_back_to_generic(tmp_path):
    profiles = load_profiles(HARDWARE)
    assert choose(profiles, ["pine64,rockpro64", "rockchip,rk3399"], "", "").id == GENERIC
    # The SoC alone does not say which RK3588 board this is.
    assert choose(profiles, ["vendor,unknown-rk3588", "rockchip,rk3588"], "", "").id == GENERIC
    assert choose(profiles, ["xunlong,orangepi-5-plus", "rockchip,rk3588"], "", "").id == "rk3588-orangepi5plus"
    assert choose(profiles, [], "Orange Pi 5 Plus", "").id == "rk3588-orangepi5plus"
    assert detect_profile(str(tmp_path), str(tmp_path)).id == GENERIC  # nothing readable at all


def test_compatible_is_nul_separated():
    assert parse_compatible("radxa,rock-5b\0rockchip,rk3588\0") == ["radxa,rock-5b", "rockchip,rk3588"]
    assert parse_compatible(None) == []


def test_profiles_name_their_soc_zone_and_patterns():
    by_id = {p.id: p for p in load_profiles(HARDWARE)}
    assert set(by_id) == set(BOARDS)
    assert by_id["rk3588-rock5b"].soc_zones[0] == "package-thermal"
    for p in by_id.values():
        assert p.soc_zones, p.id


@pytest.mark.parametrize("tree", [*(HARDWARE / b for b in BOARDS), *sorted((HARDWARE / "edge").iterdir())],
                         ids=lambda p: p.name)
def test_symlinks_are_relative_and_stay_inside_the_tree(tree):
    links = [Path(root) / name for root, dirs, files in os.walk(tree) for name in dirs + files
             if (Path(root) / name).is_symlink()]
    for link in links:
        target = os.readlink(link)
        assert not target.startswith("/"), f"{link} -> {target} is absolute"
        resolved = (link.parent / target).resolve()
        assert str(resolved).startswith(str(tree.resolve())), f"{link} leaves its tree"
        if tree.name != "hot-removed-interface":
            assert resolved.exists(), f"{link} dangles"


@pytest.mark.parametrize("board", BOARDS)
def test_board_folders_are_complete(board):
    folder = HARDWARE / board
    assert (folder / "profile.yaml").is_file()
    for part in ("proc/stat", "proc/1/mountinfo", "sys/class/net", "sys/block", "sys/class/thermal", "root"):
        assert (folder / part).exists(), f"{board}: {part} missing"
    assert (folder / "sys/class/net").is_dir() and any((folder / "sys/class/net").iterdir())
