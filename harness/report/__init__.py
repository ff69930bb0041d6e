"""Run evidence for people and CI: allure results, JUnit properties and ``reports/<run-id>/results.json``.

Suites and library code record what they measured with :mod:`harness.report.evidence`; the pytest side lives in
:mod:`harness.plugin.reporting`; :mod:`harness.report.results` writes results.json; :mod:`harness.report.histogram`
draws latency histograms.
"""

from harness.report.evidence import attach_text, record_golden, record_latency, record_versions

__all__ = ["attach_text", "record_golden", "record_latency", "record_versions"]
