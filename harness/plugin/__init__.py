"""npu-hil's pytest plugin (entry point ``npu_hil``): everything a lab's suites use comes from here.

    pytest --board sim-rv1126 suites/          # a simulated board: no boards.toml needed
    pytest --board rv1126 suites/              # the one real board in boards.toml whose chip is rv1126
    pytest --board-tag nightly suites/         # every board tagged nightly: each test runs once per board
    pytest -n auto --board-tag nightly suites/ # the same, one pytest-xdist worker per board (in parallel)

One module per job: :mod:`~harness.plugin.options` (every option, once), :mod:`~harness.plugin.markers` (chip,
npu, needs, destructive and their skips), :mod:`~harness.plugin.session` (board selection, locks, xdist),
:mod:`~harness.plugin.evidence` (console excerpts, diagnosis), :mod:`~harness.plugin.after_failure` (what
happens right after a failure), :mod:`~harness.plugin.reporting` (allure, JUnit, results.json) and
:mod:`harness.plugin.fixtures` (board, links, versions, models, firmware). The work itself is the library's;
these modules only translate between pytest and it.
"""

pytest_plugins = [
    "harness.plugin.options",
    "harness.plugin.markers",
    "harness.plugin.session",
    "harness.plugin.evidence",
    "harness.plugin.after_failure",
    "harness.plugin.fixtures.firmware",  # before boards, which imports it
    "harness.plugin.fixtures.boards",
    "harness.plugin.fixtures.versions",
    "harness.plugin.fixtures.models",
]
