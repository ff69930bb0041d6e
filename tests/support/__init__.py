"""Helpers shared by the harness's own tests (not tests themselves, so pytest collects nothing here).

Why: several test modules need the same scaffolding (finding board processes on the host, waiting with a
deadline, loopback listeners, SSH user keys, a console on a real pty, tiny ONNX models, simulated boards and
our own adb server). Written once here, a fix reaches every test that relies on it, and no test module has to
import helpers from another test module. ``pyproject.toml`` puts ``tests/`` on ``sys.path`` (pytest's
``pythonpath``), so tests import these as ``from support.processes import wait_until``.
"""
