"""Version parsers and probes: whatever a board prints (real lines of Rockchip's binaries mutated, dmesg noise,
bytes, 5000-digit numbers) gives a ParsedVersion, and the version helpers answer without raising."""

from __future__ import annotations

from fuzzing import FUZZ, mutated_text
from hypothesis import given
from hypothesis import strategies as st

# Real lines (tests/npu/version_corpus.py keeps the facts file's; the rest are the formats versions.py names).
from npu.version_corpus import (  # tests/ is on pythonpath (pyproject)
    FACT_COMPATIBLE,
    FACT_LIBRKNNRT_160,
    FACT_RKNPU_DEBUGFS,
    FACT_RKNPU_DMESG,
    FACT_SERVER_232,
    NOISE,
)

from harness.errors import ConfigError
from harness.links.base import ShellResult
from harness.npu.probes import VersionRecord, check_npu, probe_versions
from harness.npu.versions import (
    PARSERS,
    RAW_LIMIT,
    ParsedVersion,
    at_least,
    normalize_version,
    same_version,
)

SEEDS = [FACT_RKNPU_DEBUGFS, FACT_RKNPU_DMESG, FACT_LIBRKNNRT_160, FACT_SERVER_232, FACT_COMPATIBLE, *NOISE,
         "[    3.104571] galcore: Galcore version 6.4.6.5.351518",
         "1.7.5 (bb79b30 build: 2023-07-18 10:49:14)", "start rknn server, version:1.7.5",
         "librknn_runtime version 1.7.5 (ccb93f1 build: 2023-07-18 10:49:14 base: 1131)",
         "1.2.0 (9db21b35d@2022-01-10T10:36:12)", "RK_VERSION=V1.2.3_20240101", "export RK_VERSION='x'",
         "Linux version 5.10.160-rockchip-rk3588 (gcc 10.3) #1 SMP",
         "rknn_api/rknnrt version: 2.3.2, driver version: 0.9.8",
         "RKNN Driver Information, version: 0.9.2"]
LINES = st.sampled_from(SEEDS).flatmap(mutated_text) | st.sampled_from(SEEDS) | st.text(max_size=80)
#: Versions whose numbers are longer than Python converts to int (4300 digits): packaging then raises ValueError.
HUGE = st.sampled_from(["1." + "9" * 5000, "v2." + "0" * 4400 + ".1", "9" * 4301 + ".1b1"])
OUTPUTS = st.lists(LINES, max_size=6).map("\n".join) | st.binary(max_size=200)


def check(parsed: ParsedVersion, component: str) -> None:
    assert isinstance(parsed, ParsedVersion) and parsed.component == component
    assert parsed.version is None or isinstance(parsed.version, str)
    if parsed.version is None:  # an unreadable output is kept, but bounded
        assert len(parsed.raw) <= RAW_LIMIT + 40
    assert isinstance(str(parsed), str) and isinstance(parsed.to_dict(), dict)


@FUZZ
@given(st.sampled_from(sorted(PARSERS)), OUTPUTS | st.none() | st.integers())
def test_every_parser_on_any_output(name: str, text) -> None:
    check(PARSERS[name](text), PARSERS[name]("").component)


@FUZZ
@given(LINES | HUGE, LINES | HUGE)
def test_version_helpers_on_any_text(a: str, b: str) -> None:
    normalized = normalize_version(a)
    assert normalized is None or isinstance(normalized, str)
    assert same_version(a, a) in (True, False) and isinstance(same_version(a, b), bool)
    assert isinstance(at_least(a, "1.0"), bool) and isinstance(at_least(a, b), bool)


@FUZZ
@given(st.text(max_size=12) | st.sampled_from(["rknpu1", " RKNPU2 ", "rknpu3"]))
def test_check_npu_only_config_errors(npu: str) -> None:
    try:
        assert check_npu(npu) in ("rknpu1", "rknpu2")
    except ConfigError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(st.sampled_from(["rknpu1", "rknpu2"]), st.lists(st.tuples(OUTPUTS.map(lambda o: o if isinstance(o, str)
                                                                                 else o.decode("latin-1")),
                                                                  st.text(max_size=30), st.integers(-1, 255)),
                                                        min_size=1, max_size=12),
       st.text(max_size=20))
def test_probe_versions_on_any_board_answers(npu: str, answers: list, path: str) -> None:
    """Each command the probe sends gets the next fuzzed (stdout, stderr, exit code); paths are any text."""
    sent: list[str] = []

    def shell(command: str) -> ShellResult:
        stdout, stderr, code = answers[len(sent) % len(answers)]
        sent.append(command)
        return ShellResult(command, stdout, stderr, code, 0.01, "fuzz")

    record = probe_versions(shell, npu=npu, runtime_lib=path or "/usr/lib/librknnrt.so", server_bin=path or "x")
    assert isinstance(record, VersionRecord) and record.npu == npu and isinstance(record.to_dict(), dict)
