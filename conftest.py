"""Project conftest: loads npu-hil's fixtures for suites/ and tests/ (the plugin itself is an entry point)."""

pytest_plugins = ["fixtures.boards", "fixtures.versions", "fixtures.models", "fixtures.firmware"]
