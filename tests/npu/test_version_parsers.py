"""The version parsers against Rockchip's real strings, odd spellings, and arbitrary text (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from version_corpus import (
    FACT_COMPATIBLE,
    FACT_LIBRKNNRT_160,
    FACT_RKNPU_DEBUGFS,
    FACT_RKNPU_DMESG,
    FACT_SERVER_232,
    rknpu1_strings,
    rknpu2_strings,
)

from harness.npu.versions import (
    PARSERS,
    ParsedVersion,
    at_least,
    normalize_version,
    parse_compatible,
    parse_galcore,
    parse_kernel,
    parse_rk_version,
    parse_rknn_server,
    parse_rknpu,
    parse_runtime,
    same_version,
    version_key,
)

RUNTIME_ENTRIES = rknpu2_strings()["runtime"]
SERVER_ENTRIES = rknpu2_strings()["rknn_server"]


# ------------------------------------------------------------------- real strings, as `strings` shows them


@pytest.mark.parametrize("entry", RUNTIME_ENTRIES, ids=lambda e: f"{e.version}:{e.path}")
def test_every_real_runtime_string_parses(entry):
    parsed = parse_runtime("\n".join(entry.lines))
    assert parsed.version == entry.version
    assert parsed.component == "runtime"
    assert "@" in parsed.detail  # commit@build-time kept


@pytest.mark.parametrize("entry", SERVER_ENTRIES, ids=lambda e: f"{e.version}:{e.path}")
def test_every_real_server_string_parses(entry):
    parsed = parse_rknn_server("\n".join(entry.lines))
    assert parsed.version == entry.version
    assert "build" in parsed.detail


@pytest.mark.parametrize("entry", SERVER_ENTRIES, ids=lambda e: f"{e.version}:{e.path}")
def test_server_bare_build_line_alone(entry):
    """What `strings rknn_server | grep build` returns on servers <= 1.5.0: only the bare line."""
    bare = [line for line in entry.lines if not line.startswith("rknn_server version")]
    assert parse_rknn_server(bare[0]).version == entry.version


def test_rknpu1_release_strings():
    real = rknpu1_strings()
    assert parse_galcore(real["galcore_dmesg"]).version == "6.4.6.5.351518"
    server = parse_rknn_server(real["server"])
    assert (server.version, server.detail) == ("1.7.5", "bb79b30 build: 2023-07-18 10:49:14")
    assert parse_rknn_server(real["server_armhf"]).version == "1.7.5"
    assert parse_rknn_server(real["server_start"] + "1.7.5").version == "1.7.5"
    runtime = parse_runtime(real["runtime"])
    assert runtime.version == "1.7.5" and runtime.detail.endswith("base: 1131")


def test_librknn_api_is_not_the_runtime():
    """RKNPU1's librknn_api.so has its own version line; taking it for the runtime would hide a mismatch."""
    assert parse_runtime(rknpu1_strings()["api"]).version is None
    mixed = "\n".join([rknpu1_strings()["api"].replace("1.7.5", "1.7.3"), rknpu1_strings()["runtime"]])
    assert parse_runtime(mixed).version == "1.7.5"


def test_rknpu2_fact_strings():
    assert parse_rknpu(FACT_RKNPU_DEBUGFS).version == "0.9.8"
    dmesg = parse_rknpu(FACT_RKNPU_DMESG)
    assert dmesg.version == "0.9.8" and "20240828" in dmesg.detail and "fdab0000.npu" in dmesg.detail
    assert parse_runtime(FACT_LIBRKNNRT_160).detail == "9a7b5d24c@2023-12-13T17:31:11"
    assert parse_rknn_server(FACT_SERVER_232).version == "2.3.2"
    assert parse_compatible(FACT_COMPATIBLE).version == "rk3588"


def test_runtime_logs_both_separators():
    """Runtime init logs: ':' up to 1.5.2, ',' from 1.6.0 (rockchip-facts.md)."""
    old = ("I RKNN: [14:34:53.242] RKNN Runtime Information: librknnrt version: 1.5.2 (c6b7b351a@2023-08-23T15:28:22)"
           "\nI RKNN: [14:34:53.242] RKNN Driver Information: version: 0.8.2")
    new = ("I RKNN: [07:47:42.798] RKNN Runtime Information, librknnrt version: 1.6.0 (9a7b5d24c@2023-12-13T17:31:11)"
           "\nI RKNN: [07:47:42.798] RKNN Driver Information, version: 0.8.2")
    assert (parse_runtime(old).version, parse_rknpu(old).version) == ("1.5.2", "0.8.2")
    assert (parse_runtime(new).version, parse_rknpu(new).version) == ("1.6.0", "0.8.2")


def test_rknn_benchmark_header():
    line = "rknn_api/rknnrt version: 1.6.0 (9a7b5d24c@2023-12-13T17:31:11), driver version: 0.9.6"
    assert (parse_runtime(line).version, parse_rknpu(line).version) == ("1.6.0", "0.9.6")


def test_librknnmrt():
    assert parse_runtime("librknnmrt version: 1.3.0b0 (cded3d5b2@2022-05-05T10:37:49)").version == "1.3.0b0"


# ------------------------------------------------------------------- normalization and odd spellings


def test_manual_driver_spellings_compare_as_numbers():
    a, b = parse_galcore("Galcore version 6.3.3.3718"), parse_galcore("Galcore version 6.3.3.03718")
    assert a.version == b.version == "6.3.3.3718"
    assert b.written == "6.3.3.03718"
    assert not same_version("6.4.0.7915", "6.4.0.27915")
    assert not same_version("6.4.0.227915", "6.4.0.27915")


def test_latest_galcore_line_wins_after_reload():
    text = "[ 3.1] Galcore version 6.4.3.5.293908\n[ 99.2] galcore: Galcore version 6.4.6.5.351518\n"
    assert parse_galcore(text).version == "6.4.6.5.351518"


def test_rknpu_fallback_order_and_v_prefix():
    assert parse_rknpu("RKNPU driver: v0.9.2\r\n").version == "0.9.2"
    assert parse_rknpu("[    2.1] RKNPU fdab0000.npu: RKNPU: rknpu iommu is enabled").version is None


def test_version_order_and_prereleases():
    assert version_key("2.0.0b0") < version_key("2.0.0") < version_key("2.1.0")
    assert at_least("0.9.8", "0.9.2") and not at_least("0.8.8", "0.9.2") and not at_least(None, "0.9.2")
    assert not at_least("garbage", "0.9.2")
    assert normalize_version("v1.7.5") == "1.7.5"
    assert normalize_version("V1.0.0_rv1126") is None
    with pytest.raises(ValueError):
        version_key("not-a-version")


def test_firmware_label_kernel_chip():
    rk = parse_rk_version("# generated\nRK_VERSION='V1.2.0_20240101'\nRK_BUILD=42\n")
    assert rk.version == "V1.2.0_20240101"
    kernel = parse_kernel("Linux version 5.10.160-rockchip-rk3588 (root@build) (gcc 10.3.1) #1 SMP PREEMPT")
    assert (kernel.version, kernel.written) == ("5.10.160", "5.10.160-rockchip-rk3588")
    assert parse_compatible("rockchip,rv1126-evb-ddr3-v13\0rockchip,rv1126\0").version == "rv1126"
    assert parse_compatible("rockchip,rk3399pro-evb-v11\0rockchip,rk3399pro\0").version == "rk3399pro"
    # a link that drops NULs must not merge the board entry into the SoC entry
    assert parse_compatible("radxa,rock-5brockchip,rk3588").version == "rk3588"


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_unreadable_text_is_kept_raw(name):
    text = "strings: /usr/lib/librknnrt.so: No such file or directory"
    parsed = PARSERS[name](text)
    assert parsed.version is None and parsed.raw == text and parsed.component
    assert "unreadable" in str(parsed)
    assert PARSERS[name]("").raw == ""


def test_raw_of_huge_output_is_bounded():
    parsed = parse_runtime("x" * 100_000)
    assert parsed.version is None and len(parsed.raw) < 3000 and "more chars" in parsed.raw


# ------------------------------------------------------------------- fuzz: any text -> ParsedVersion


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(sorted(PARSERS)), text=st.one_of(st.text(), st.binary()))
def test_parsers_never_raise(name, text):
    parsed = PARSERS[name](text)
    assert isinstance(parsed, ParsedVersion)
    assert parsed.version is None or isinstance(parsed.version, str)
    assert isinstance(parsed.raw, str)


_versions = st.lists(st.integers(min_value=0, max_value=999_999), min_size=2, max_size=6).map(
    lambda parts: ".".join(map(str, parts)))
_noise = st.text(alphabet=st.characters(blacklist_characters="\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
                 max_size=40)


@settings(max_examples=200, deadline=None)
@given(version=_versions, before=_noise)
def test_any_version_in_a_real_format_round_trips(version, before):
    """Whatever digits a future release uses, every shipped format gives them back (on its own line)."""
    cases = [
        (parse_galcore, f"[ 3.2] galcore: Galcore version {version}"),
        (parse_rknpu, f"RKNPU driver: v{version}"),
        (parse_rknpu, f"[drm] Initialized rknpu {version} 20240828 for fdab0000.npu on minor 1"),
        (parse_rknn_server, f"rknn_server version: {version} (1842325 build@2025-03-30T09:54:34)"),
        (parse_rknn_server, f"{version} (bb79b30 build: 2023-07-18 10:49:14)"),
        (parse_runtime, f"librknnrt version: {version} (9a7b5d24c@2023-12-13T17:31:11)"),
        (parse_runtime, f"librknn_runtime version {version} (ccb93f1 build: 2023-07-18 10:48:49 base: 1131)"),
    ]
    for parser, line in cases:
        parsed = parser(before + "\n" + line)
        assert parsed.version is not None and same_version(parsed.version, version), (line, parsed)
