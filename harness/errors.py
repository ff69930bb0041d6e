"""Errors with a class, so every failure says whose fault it is (design principle 5).

* ``ConfigError``: the configuration's fault (boards.toml, command line); the run stops before any test.
* ``BoardError``: the board's or the lab's fault (unreachable, hung, offline); reported as *broken*.
* ``ProductError``: the firmware or model under test is wrong (version mismatch, wrong output); a *failure*.

Each carries a one-line message meant for a person, and optionally the fix.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness raises on purpose."""

    kind = "infrastructure"

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} (fix: {self.fix})" if self.fix else self.message


class ConfigError(HarnessError):
    """Bad input from the user: a wrong boards.toml, an unknown board, a corrupt model file."""

    kind = "config"


class BoardError(HarnessError):
    """The board or its link misbehaves: not the product's fault, so the board is reported broken."""

    kind = "infrastructure"


class LinkTimeout(BoardError):
    """An operation on a link missed its deadline."""


class LinkDown(BoardError):
    """A link cannot reach the board (port gone, device offline, connection refused)."""


class ProductError(HarnessError):
    """The thing under test is wrong: versions that do not belong together, outputs that differ."""

    kind = "product"


class BoardBusy(BoardError):
    """Another run holds the board (a file lock on this host, or a labgrid place acquired elsewhere) and it was not
    released within ``--board-wait`` seconds; the message names the holder (user, host, pid, since when)."""


class MissingExtra(ConfigError):
    """An optional part of npu-hil is used without its extra installed; the message is the pip command."""


def require_extra(module: str, extra: str, purpose: str) -> None:
    """MissingExtra (one line: what needs it and the ``pip install`` to run) unless ``module`` can be imported.

    Why extras: a lab host that drives real boards needs neither the simulator's ONNX runtime nor plots, and a
    core install stays small; the first use of the missing part says exactly what to install."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtra(f"{purpose} needs {module}, which is not installed: pip install 'npu-hil[{extra}]'")


def printable(text: object) -> str:
    """A name as it can stand in a one-line message: control characters (a newline in a quoted TOML key or a
    command-line tag) are escaped, so every fault stays on its own line."""
    text = str(text)
    return text if text.isprintable() else repr(text)[1:-1]
