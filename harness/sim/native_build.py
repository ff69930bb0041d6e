"""Compile the simulator's own C parts (the board's runtime library, its program loader), once per source.

Results are cached under the simulator's home by a hash of the sources and the command, so a board build
compiles only the first time; a missing compiler or a failed build is a warning and None: the board still
boots, without what the file would have given it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

from harness.sim import state

log = logging.getLogger("npu-hil.sim.native")

SOURCES = Path(str(resources.files("harness.sim").joinpath("native")))
COMPILE_TIMEOUT_S = 120.0


def build_cached(cc: str, flags: list[str], source: Path, name: str, *, headers: tuple[Path, ...] = (),
                 package: str = "gcc") -> Path | None:
    """The path of ``source`` built by ``cc flags``, from the cache when built before; None when it cannot be."""
    compiler = shutil.which(cc)
    if compiler is None:
        log.warning("%s not found: the simulated board goes without %s (apt-get install %s)", cc, name, package)
        return None
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in (source, *headers))
                            + "\0".join([cc, *flags]).encode()).hexdigest()[:16]
    cached = state.home() / ".native" / f"{name}-{digest}"
    if cached.is_file():
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cached.parent) as tmp:
        out = Path(tmp) / cached.name
        try:
            done = subprocess.run([compiler, *flags, "-o", str(out), str(source)], capture_output=True, text=True,
                                  timeout=COMPILE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.error("building %s did not finish within %g s", name, COMPILE_TIMEOUT_S)
            return None
        if done.returncode != 0:
            log.error("building %s failed: %s", name, done.stderr.strip()[-500:])
            return None
        os.replace(out, cached)  # atomic: boards built side by side may race for the same file
    return cached
