"""Links: one real protocol client per way of reaching a board (console, adb, ssh, usb, power).

Each link puts a deadline on every call and logs every exchange; nothing above this layer knows
whether the far end is a real board or the simulator.
"""
