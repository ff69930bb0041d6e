"""The soak in one long-lived process (manual 4.2.1), run by a real pytest over the repo's soak suite on
simulated boards whose runtime leaks: memory in the process holding the context (``mem-leak``), descriptors in
rknn_server (``fd-leak``), on the Python runner and on the native one (the stock image). Each fails with its
growth rate and samples; a suite's ``soak_limits`` mark decides what growth it tolerates.
"""

from __future__ import annotations

import pytest
from support.suite_lab import SUITES, run_suites, suite_lab

from harness.npu.soak_process import ProcessSoak, Sample, SoakLimits, parse_samples

pytest_plugins = ["pytester"]

BOARDS = """
[boards.memleak-rv1126]
chip = "rv1126"
sim = { profile = "rv1126", faults = ["mem-leak=256"] }

[boards.memleak-rv1126-stock]
chip = "rv1126"
sim = { profile = "rv1126-stock", faults = ["mem-leak=256"] }

[boards.fdleak-rk3588]
chip = "rk3588"
sim = { profile = "rk3588", faults = ["fd-leak=1"] }
"""
ONE_MODEL = ("-k", "one_process and classifier and not batch and not int8")


@pytest.fixture
def lab(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    with suite_lab(pytester, tmp_path_factory, monkeypatch, BOARDS) as lab:
        yield lab


@pytest.mark.parametrize("board, inferences, finding", [
    ("memleak-rv1126", "100", "*memory leak (manual 4.2.1): resident memory of the runner holding the context "
                              "(pid *) on memleak-rv1126 grew by 12800 kB over 50 inferences of classifier "
                              "(256000 kB per 1000 inferences; allowed 1024); VmRSS kB: *"),
    ("memleak-rv1126-stock", "100", "*memory leak (manual 4.2.1): resident memory of the runner holding the "
                                    "context (pid *) on memleak-rv1126-stock grew by 12800 kB over 50 inferences of "
                                    "classifier (256000 kB per 1000 inferences; allowed 1024); VmRSS kB: *"),
    ("fdleak-rk3588", "60", "*file descriptor leak (manual 4.2.1): open fds of rknn_server (pid *) on "
                            "fdleak-rk3588 grew by 30 over 30 inferences of classifier (1000.0 per 1000 "
                            "inferences; allowed growth 0); samples: *"),
], ids=["memory-in-the-process", "memory-in-the-native-runner", "descriptors-in-rknn_server"])
def test_a_leak_fails_the_soak_with_its_rate(lab: pytest.Pytester, board: str, inferences: str, finding: str) -> None:
    result = run_suites(lab, board, *ONE_MODEL, "--soak-inferences", inferences, str(SUITES / "test_soak.py"))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([finding])


def test_a_suite_sets_its_own_limits(lab: pytest.Pytester) -> None:
    lab.makepyfile(test_lenient='''
import pytest

from harness.npu.soak_process import soak_process

pytestmark = pytest.mark.soak_limits(max_rss_kb_per_1k=300000)


def test_soak(board, model_package, npu_push, soak_limits):
    assert soak_limits.max_rss_kb_per_1k == 300000
    result = soak_process(board, model_package, inferences=40, remote=npu_push(model_package), limits=soak_limits)
    assert result.growth("self")[1] == 20 * 256 and result.failures() == []  # the second half: 20 inferences


@pytest.mark.soak_limits(max_rss_kb=1)
def test_a_misspelt_limit_is_one_line(soak_limits):
    pass
''')
    result = run_suites(lab, "memleak-rv1126", "-k", "classifier and not batch and not int8 or misspelt", "-rA",
                        "--models-dir", str(SUITES / "models"))
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.soak_limits: *unexpected keyword argument 'max_rss_kb'; use "
                                 "max_fd_growth=N, max_rss_kb_per_1k=KB*"])


def test_samples_parse_and_growth_is_judged_over_the_second_half() -> None:
    text = ("iteration 0: 1.000 ms\nsample 0: self pid=7 fds=4 rss_kb=100\nsample 0: rknn_server pid=3 fds=6 "
            "rss_kb=50\r\nsample 10: self pid=7 fds=6 rss_kb=300\nsample 20: self pid=7 fds=7 rss_kb=320\n"
            "sample 30: self pid=7 fds=8 rss_kb=340\n")
    samples = parse_samples(text)
    assert samples["self"][:2] == [Sample(0, 7, 4, 100), Sample(10, 7, 6, 300)] and len(samples["self"]) == 4
    soak = ProcessSoak("m", "b", 30, SoakLimits(max_fd_growth=2, max_rss_kb_per_1k=2000), samples)
    # from the middle sample (10) to the last (30): the first interval's one-time 200 kB is not counted
    assert soak.growth("self") == (2, 40, 20) and soak.growth("rknn_server") == (0, 0, 0)
    assert soak.failures() == []  # 2 fds allowed; 2000 kB per 1000 inferences allowed
    tight = ProcessSoak("m", "b", 30, SoakLimits(), samples)
    assert [f.split(":")[0] for f in tight.failures()] == ["file descriptor leak (manual 4.2.1)",
                                                           "memory leak (manual 4.2.1)"]
