"""The repo's conftest: its own fixtures for suites/ (npu-hil's plugin itself loads through its entry point)."""

pytest_plugins = ["fixtures.suite_packages"]
