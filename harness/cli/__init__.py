"""``npu-hil``: the command line. Each sub-command lives in its own module with a ``register(subparsers)``.

Errors of the harness (:class:`harness.errors.HarnessError`) end the command with one line on stderr and
exit code 2 (configuration) or 1 (anything else); no traceback for a user's mistake.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from harness import __version__
from harness.errors import ConfigError, HarnessError

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS = ("sim", "boards", "versions", "doctor", "model", "runner", "firmware", "report", "gate", "baseline",
            "nightly", "lab")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="npu-hil",
        description="Hardware-in-the-loop testing for Rockchip NPU boards. "
                    "Run tests with `pytest --board NAME`; this command manages boards, simulators and reports.",
    )
    parser.add_argument("--version", action="version", version=f"npu-hil {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"harness.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"harness.cli.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"npu-hil: error: {exc}", file=sys.stderr)
        return 2
    except HarnessError as exc:
        print(f"npu-hil: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `npu-hil ... | head`: the reader left, nothing to report
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
