"""Reading kernel pseudo-files below an injected root.

Pseudo-files are read with one ``os.read`` into bytes: text-mode ``open()`` costs several
times more per file, and a collection cycle reads hundreds of them. Every helper takes a
full path built from ``ctx.procfs``/``ctx.sysfs``; none knows where those roots are.
"""

from __future__ import annotations

import os

_CHUNK = 65536


def read_bytes(path: str) -> bytes:
    """The whole file; raises OSError (ENOENT, EACCES, EIO, EISDIR ...) as the kernel reports it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, _CHUNK)
        if len(data) < _CHUNK:
            return data
        parts = [data]
        while True:
            more = os.read(fd, _CHUNK)
            if not more:
                return b"".join(parts)
            parts.append(more)
    finally:
        os.close(fd)


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8", "replace")


def read_optional(path: str) -> str | None:
    """Stripped text, or None when the attribute is missing or unreadable on this board."""
    try:
        return read_bytes(path).decode("utf-8", "replace").strip()
    except OSError:
        return None


def read_int(path: str) -> int | None:
    """An integer attribute; None when missing, unreadable or not a number
    (sysfs answers EINVAL for ``speed`` of a link that is down)."""
    try:
        return int(read_bytes(path))
    except (OSError, ValueError):
        return None


def list_dir(path: str) -> list[str]:
    """Sorted entries, or [] when the directory does not exist on this kernel."""
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
