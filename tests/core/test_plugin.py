"""The pytest plugin end to end: each case is a real ``pytest`` subprocess (pytester) on generated test files.

The subprocess loads the plugin the way a lab does (the ``npu_hil`` entry point) plus the project's own
conftest (``fixtures.boards``), and starts a real simulated board when a test asks for ``board``. Every case
gets its own simulator home (NPU_HIL_SIM_HOME) so runs never share a board; a board left running is stopped
by its supervisor PID (``api.down``) afterwards.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.sim_leftovers import down_running_boards

from harness.sim import api

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 240  # a whole pytester run, simulated boot included; a hung run fails instead of blocking CI

INVENTORY = """
[defaults]
toolkit = { rknpu1 = "1.7.1", rknpu2 = "2.3.2" }

[boards.sim-rv1126]
chip = "rv1126"
sim = { profile = "rv1126" }
tags = ["sim", "nightly"]

[boards.bench-3588]
chip = "rk3588"
ssh = { host = "127.0.0.1", port = 1 }
tags = ["bench"]
"""


@pytest.fixture
def lab(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory):
    """A pytester folder set up like the repository: the project's conftest, an ini, a boards.toml."""
    sim_home = tmp_path_factory.mktemp("sim-home")
    monkeypatch.setenv("NPU_HIL_SIM_HOME", str(sim_home))
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # `fixtures` is a folder of the repo, not an installed package
    pytester.makeconftest((REPO / "conftest.py").read_text())
    pytester.makeini("[pytest]\ntimeout = 180\n")
    pytester.makefile(".toml", boards=INVENTORY)
    yield pytester
    down_running_boards()  # normally stopped by the run itself; this catches a run that died


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=RUN_TIMEOUT)


def skip_lines(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if line.startswith("SKIPPED")]


# --- a simulated board through the fixtures -------------------------------------------------------------------
SIM_TESTS = """
    def test_version(board):
        result = board.shell("cat /etc/version", timeout=30)
        assert result.exit_code == 0, result.output
        assert "RK_VERSION=" in result.stdout
        assert board.name == "sim-rv1126" and board.chip.name == "rv1126"

    def test_breaks(board):
        board.console.run("echo EVIDENCE-$((6*7))", timeout=30)
        assert False, "this test fails on purpose"
"""


def test_board_fixture_runs_commands_and_writes_console_evidence(lab: pytest.Pytester) -> None:
    lab.makepyfile(test_sim=SIM_TESTS)
    reports = lab.path / "reports"  # inside the rootdir: a path argument elsewhere would move the rootdir
    result = run(lab, "--board", "sim-rv1126", "--reports-dir", str(reports), "--run-id", "run-7", "-v")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*npu-hil: boards sim-rv1126 (rv1126, simulated)*"])
    board_dir = reports / "run-7" / "sim-rv1126"
    excerpts = {p.name: p.read_text() for p in board_dir.glob("*.console.txt")}
    assert set(excerpts) == {"test_sim.py_test_version.console.txt", "test_sim.py_test_breaks.console.txt"}
    assert "EVIDENCE-42" in excerpts["test_sim.py_test_breaks.console.txt"]  # what the board printed, not typed
    assert "EVIDENCE-42" not in excerpts["test_sim.py_test_version.console.txt"]  # each test gets its own slice
    assert "EVIDENCE-42" in (board_dir / "console.log").read_text()
    assert not [b for b in api.list_boards() if b["running"]], "the run left its simulated board running"


def test_failing_test_report_shows_the_console_excerpt(lab: pytest.Pytester) -> None:
    """The failure a person reads carries a ``console sim-rv1126`` section with what the board printed."""
    lab.makepyfile(test_sim=SIM_TESTS)
    result = run(lab, "--board", "sim-rv1126", "--reports-dir", str(lab.path / "reports"), "-k", "breaks")
    result.assert_outcomes(failed=1, deselected=1)
    result.stdout.fnmatch_lines(["*_ test_breaks _*", "*- console sim-rv1126 -*", "*EVIDENCE-42*",
                                 "*short test summary info*"])


# --- markers: a test that does not fit the board is skipped with the reason ------------------------------------
MARKED = """
    import pytest

    @pytest.mark.chip("rv1126")
    def test_fits_chip():
        pass

    @pytest.mark.chip("rk3588", "rk3566")
    def test_other_chip():
        pass

    @pytest.mark.npu("rknpu1")
    def test_fits_npu():
        pass

    @pytest.mark.npu("rknpu2")
    def test_other_npu():
        pass

    @pytest.mark.needs("adb", "ssh", "console")
    def test_has_links():
        pass

    @pytest.mark.needs("usb")
    def test_needs_usb():
        pass
"""


def test_markers_skip_what_does_not_fit_with_the_reason(lab: pytest.Pytester) -> None:
    lab.makepyfile(test_marked=MARKED)
    result = run(lab, "--board", "sim-rv1126", "-rs")
    result.assert_outcomes(passed=3, skipped=3)
    skipped = skip_lines(result)
    assert len(skipped) == 3, skipped
    text = "\n".join(skipped)
    assert "needs chip rk3588/rk3566; board sim-rv1126 is rv1126" in text
    assert "needs rknpu2; board sim-rv1126 is rknpu1" in text
    assert "needs link(s) usb; board sim-rv1126" in text


def test_markers_follow_the_selected_board(lab: pytest.Pytester) -> None:
    """The same file on an RK3588 entry: what was skipped runs and vice versa (the skip is not unconditional)."""
    lab.makepyfile(test_marked=MARKED)
    result = run(lab, "--board", "bench-3588", "-rs")
    result.assert_outcomes(passed=2, skipped=4)  # bench-3588 has only ssh: the links test is skipped too
    text = "\n".join(skip_lines(result))
    assert "needs chip rv1126; board bench-3588 is rk3588" in text
    assert "needs rknpu1; board bench-3588 is rknpu2" in text
    assert "needs link(s) adb, console; board bench-3588 has none configured" in text


# --- a board that is unusable at session start -----------------------------------------------------------------
def test_board_failing_health_check_is_one_error_and_stops_the_run(lab: pytest.Pytester) -> None:
    lab.makefile(".toml", boards='[boards.broken]\nchip = "rv1126"\nserial = { port = "/dev/ttyNOPE0" }\n')
    lab.makepyfile(test_many="""
        import pytest

        @pytest.mark.parametrize("n", range(5))
        def test_uses_board(board, n):
            board.shell("true")

        def test_after():
            pass
    """)
    result = run(lab, "--board", "broken", "-v")
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", outcomes.get("error")) == 1, outcomes
    assert not {"passed", "failed", "skipped"} & set(outcomes), outcomes  # nothing else ran
    assert result.ret != 0
    out = result.stdout.str()
    assert "/dev/ttyNOPE0" in out
    assert "test_uses_board[0] ERROR" in out and "test_uses_board[1]" not in out


def test_no_board_selected_fails_naming_the_option(lab: pytest.Pytester) -> None:
    lab.makepyfile(test_needs_board="""
        def test_a(board):
            pass

        def test_b(board):
            pass
    """)
    result = run(lab)
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", outcomes.get("error")) == 1, outcomes
    assert "passed" not in outcomes
    result.stdout.fnmatch_lines(["*no board selected: run with --board NAME*"])
    assert "Traceback" not in result.stdout.str()


# --- bad command lines and inventories are usage errors, before any test --------------------------------------
def test_unknown_board_is_a_usage_error_listing_the_known_ones(lab: pytest.Pytester) -> None:
    lab.makepyfile(test_x="def test_x():\n    pass\n")
    result = run(lab, "--board", "rv9999")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if "rv9999" in line]
    assert len(errors) == 1, result.errlines
    assert "unknown board 'rv9999'" in errors[0]
    assert "known boards: bench-3588, sim-rv1126" in errors[0]
    assert "passed" not in result.stdout.str()


def test_malformed_inventory_is_a_usage_error_with_the_line(lab: pytest.Pytester) -> None:
    lab.makefile(".toml", boards='[boards.a]\nchip = "rv1126"\ntags = [sim]\nsim = { profile = "rv1126" }\n')
    lab.makepyfile(test_x="def test_x():\n    pass\n")
    result = run(lab, "--board", "a")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.errlines if "boards.toml" in line]
    assert len(errors) == 1, result.errlines
    assert "not valid TOML" in errors[0] and "line 3, column 9" in errors[0]
    assert "Traceback" not in result.stderr.str()


def test_board_tag_selects_the_tagged_boards(lab: pytest.Pytester) -> None:
    lab.makepyfile(test_marked=MARKED)
    result = run(lab, "--board-tag", "sim", "-rs")
    result.stdout.fnmatch_lines(["*npu-hil: boards sim-rv1126 (rv1126, simulated);*"])
    assert "bench-3588" not in result.stdout.str()
    result.assert_outcomes(passed=3, skipped=3)
    result = run(lab, "--board-tag", "bench", "-rs")
    result.stdout.fnmatch_lines(["*npu-hil: boards bench-3588 (rk3588);*"])
    result.assert_outcomes(passed=2, skipped=4)


def test_board_tag_nobody_has_is_a_usage_error(lab: pytest.Pytester) -> None:
    lab.makepyfile(test_x="def test_x():\n    pass\n")
    result = run(lab, "--board-tag", "nosuchtag")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert any("nosuchtag" in line for line in result.errlines), result.errlines


# --- [defaults] board: a bare `pytest` runs the lab's suites on it ---------------------------------------------
DEFAULT_BOARD = 'board = "sim-rv1126"\n'


def lab_with_suites(lab: pytest.Pytester) -> None:
    """The layout of this repo: testpaths = suites, and a folder of the harness's own tests beside it."""
    lab.makeini("[pytest]\ntimeout = 180\ntestpaths = suites\n")
    lab.makefile(".toml", boards=INVENTORY.replace("[defaults]\n", "[defaults]\n" + DEFAULT_BOARD))
    lab.mkdir("suites")
    lab.mkdir("own_tests")
    lab.path.joinpath("suites", "test_suite.py").write_text(
        "def test_on_board(board):\n    assert board.name == 'sim-rv1126'\n")
    lab.path.joinpath("own_tests", "test_unit.py").write_text(
        "def test_needs_board(board):\n    pass\n\ndef test_plain():\n    pass\n")


def test_bare_pytest_runs_the_suites_on_the_default_board_and_says_so(lab: pytest.Pytester) -> None:
    lab_with_suites(lab)
    result = run(lab)
    result.stdout.fnmatch_lines(["*npu-hil: boards sim-rv1126 (rv1126, simulated), the [[]defaults[]] board of*"])
    result.assert_outcomes(passed=1)
    assert "test_suite.py" in result.stdout.str() and "test_unit.py" not in result.stdout.str()


def test_a_folder_outside_testpaths_gets_no_board_unasked(lab: pytest.Pytester) -> None:
    lab_with_suites(lab)
    result = run(lab, "own_tests")
    assert "npu-hil: boards" not in result.stdout.str()
    result.assert_outcomes(errors=1)  # and the run stops there
    result.stdout.fnmatch_lines(["*no board selected: run with --board NAME*"])


def test_board_option_wins_over_the_default(lab: pytest.Pytester) -> None:
    lab_with_suites(lab)
    lab.path.joinpath("suites", "test_suite.py").write_text("def test_x(board):\n    pass\n")
    result = run(lab, "--board", "bench-3588", "--collect-only")
    result.stdout.fnmatch_lines(["*npu-hil: boards bench-3588 (rk3588); reports in*"])


def test_missing_models_folder_is_one_line_naming_the_option(lab: pytest.Pytester) -> None:
    lab.makepyfile(test_models="def test_each(model_package):\n    pass\n")
    result = run(lab, "--board", "sim-rv1126", "--models-dir", str(lab.path / "nope"))
    assert result.ret != 0
    lines = [line for line in result.outlines if "nope" in line and "does not exist" in line]
    assert len(lines) == 1 and "--models-dir PATH" in lines[0], result.outlines
    assert "Traceback" not in result.stdout.str() and "_pytest/python.py" not in result.stdout.str()
