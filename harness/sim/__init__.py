"""The simulated Rockchip NPU board: separate processes reached only through real protocols.

A board is a folder (its root filesystem, busybox as the shell) plus a supervisor process that owns the
board's addresses (console pty, adb and ssh ports, control port) and runs the board's "OS" in a child
process: boot log on the console, adbd, sshd, the NPU service. Power off kills the child; the addresses stay.

The harness proper never imports this package except through :mod:`harness.sim.api` to start boards.
"""
