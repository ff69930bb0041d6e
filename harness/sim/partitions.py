"""The simulated board's eMMC layout: ``/proc/partitions`` and the ``/dev/block/by-name/`` links.

Why: OTA tools on a real Rockchip Linux board (updateEngine, recovery) find partitions through
``/dev/block/by-name/NAME``, and a lab checks a flashed layout with ``cat /proc/partitions``. The table is a
plausible Rockchip GPT (the SDK's parameter.txt: uboot, misc, boot, recovery, backup, oem, rootfs, userdata),
ordered so rootfs is mmcblk0p7 and userdata mmcblk0p8, which the board's boot log and /proc/mounts already
say. Sizes are in 1 KiB blocks, as /proc/partitions shows them; the disk is the 7634944-block eMMC of the
panic message. The /dev entries are empty placeholder files: the board has no real block devices.
"""

from __future__ import annotations

import os
from pathlib import Path

DISK = "mmcblk0"
DISK_BLOCKS = 7634944
MAJOR = 179
#: GPT starts at 8 MiB on Rockchip parts (idbloader and the loader live below it).
FIRST_OFFSET_KIB = 8192
#: (name, size in KiB); userdata takes what is left.
LAYOUT: tuple[tuple[str, int], ...] = (
    ("uboot", 4096), ("misc", 4096), ("boot", 32768), ("recovery", 32768), ("backup", 32768),
    ("oem", 65536), ("rootfs", 3145728),
)


def table() -> list[tuple[str, str, int]]:
    """(partition name, device name, size in KiB), userdata last."""
    rows = [(name, f"{DISK}p{i}", size) for i, (name, size) in enumerate(LAYOUT, start=1)]
    used = FIRST_OFFSET_KIB + sum(size for _, size in LAYOUT)
    rows.append(("userdata", f"{DISK}p{len(LAYOUT) + 1}", DISK_BLOCKS - used))
    return rows


def device_of(name: str) -> str | None:
    """``/dev/block/by-name/NAME``'s target device (``mmcblk0p7`` for rootfs), None for an unknown name."""
    return next((dev for part, dev, _ in table() if part == name), None)


def proc_partitions() -> str:
    """The text of /proc/partitions, in the kernel's column layout."""
    lines = ["major minor  #blocks  name", "", f"{MAJOR:4d} {0:8d} {DISK_BLOCKS:10d} {DISK}"]
    lines += [f"{MAJOR:4d} {minor:8d} {size:10d} {dev}" for minor, (_, dev, size) in enumerate(table(), start=1)]
    return "\n".join(lines) + "\n"


def write(root: Path, proc: Path) -> None:
    """Write /proc/partitions and (re)create /dev/DISKpN placeholders and their by-name links."""
    (proc / "partitions").write_text(proc_partitions())
    dev = root / "dev"
    by_name = dev / "block" / "by-name"
    by_name.mkdir(parents=True, exist_ok=True)
    (dev / DISK).touch()
    for name, device, _ in table():
        (dev / device).touch()
        link = by_name / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.join("..", "..", device))  # relative: an absolute link would leave the root
