"""The pytest plugin (entry point ``npu_hil``). Filled in by the harness-core work."""
