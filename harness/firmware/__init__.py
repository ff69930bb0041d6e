"""Firmware: read and check Rockchip ``update.img`` files, inspect what a board runs, drive rkdeveloptool.

Kept apart from the links: nothing here opens a connection of its own; a :class:`harness.board.Board` (for
inspection) or a host executable (rkdeveloptool) is handed in.
"""
