"""npu-hil: a hardware-in-the-loop test harness for Rockchip NPU boards.

The library is layered (see ``docs/design.md``): ``links`` speak real protocols to a board,
``board`` is the facade tests hold, ``npu``/``firmware``/``report``/``lab`` build on it, and ``sim``
is a simulated board reached only over the wire.
"""

__version__ = "0.1.0"
