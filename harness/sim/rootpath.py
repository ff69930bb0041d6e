"""Map a path as the board sees it to a host path inside the board's folder, never outside it.

adbd's sync service and the SFTP server touch the board's files directly (as a real adbd does on its own
filesystem); this resolver makes sure ``/etc/../../host`` or a symlink to ``/`` stays inside the board root.
"""

from __future__ import annotations

import os
from pathlib import Path

_MAX_LINKS = 40


class OutsideRoot(ValueError):
    """The board path cannot be mapped inside the board root."""


def resolve(root: Path, board_path: str, *, follow_last: bool = True) -> Path:
    """Host path for ``board_path`` on the board rooted at ``root``; symlinks are followed as the board would.

    Absolute symlink targets are taken relative to the board root, ``..`` stops at the board's ``/``.
    With ``follow_last=False`` a final symlink is returned as is (for lstat, unlink, readlink).
    """
    root = Path(root)
    if "\0" in board_path:
        raise OutsideRoot("path contains NUL")
    parts = [p for p in board_path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        name = parts.pop(0)
        if name == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = root.joinpath(*resolved, name)
        is_last = not parts
        if candidate.is_symlink() and (follow_last or not is_last):
            links += 1
            if links > _MAX_LINKS:
                raise OutsideRoot(f"too many levels of symbolic links in {board_path!r}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(name)
    return root.joinpath(*resolved)
