"""Fixtures the simulator's tests share."""

from support.npu_board import make_board  # noqa: F401 - a fixture, found by pytest here
