"""Live kernel, or a recorded tree? Sources only a running kernel answers (rtnetlink, the
journal) have recorded stand-ins stored beside a board tree's ``proc`` directory, written the
way a capture on the board saves them (hardware/README.md): ``ip-addr.json`` from
``ip -j addr show`` and ``kernel-journal.jsonl`` from ``journalctl -k -o json``.
"""

from __future__ import annotations

import os

IP_ADDR = "ip-addr.json"
KERNEL_JOURNAL = "kernel-journal.jsonl"


def is_live_procfs(procfs: str) -> bool:
    """True when ``procfs`` is a mounted procfs of this kernel, so netlink and the journal
    describe the same machine; a recorded tree has no ``self/ns/net``."""
    return os.path.exists(os.path.join(procfs, "self", "ns", "net"))


def beside(procfs: str, name: str) -> str:
    """The recorded file ``name`` of the tree whose procfs is ``procfs``."""
    return os.path.join(os.path.dirname(os.path.normpath(procfs)), name)
