"""Can this board load this model? Decided on the host, before the push, from the model's own trailer.

Why: a board refuses a model it cannot load only at ``rknn_init``, with a terse code (-6, -13) and the
reason buried in its log. Checking first turns that into a named reason with the manual's section, and
saves the push. Each rule below is one documented way ``rknn_init`` fails:

* target platform (manual 4.1.2, cause 3): the chip must be among the model's ``target_platform``
  (chips sharing one NPU count as the same; see :data:`NPU_TWINS`). RKNN Toolkit 1 models without the field
  are built for rk1806/rk1808/rk3399pro only. The runtime answers -13 (librknn_runtime 1.7 prints
  "rknn model target platform[0] is RK1808, while current platform is ..."); the manual's connected
  debugging through rknn_server reports -6.
* NPU generation: an RKNPU2 model on an RKNPU1 board, or the reverse, is not a model that runtime can read.
* header v6 (rockchip-facts, "RKNPU2"): librknnrt before 1.5.2 refuses it: `Invalid RKNN model version 6`.
* pre-compiled RKNPU1 models (manual 4.3.2), read as one boundary at driver 0.9.6: models pre-compiled by
  toolkit <= 0.9.9 fail on drivers >= 0.9.6, models pre-compiled by toolkit >= 1.0.0 fail on drivers
  < 0.9.6. "Driver" there is what ``get_sdk_version()`` calls DRV, i.e. the rknn_server version (manual
  4.1.3); a galcore version (6.x) is accepted too and mapped through the 4.1.3 table, where server 0.9.6
  ships with galcore 6.3.3.3718, so galcore >= 6.3.3 is the new generation.

Versions the board did not report (None) skip the rules that need them: this check reports only what it
can show, the version-matrix check owns "unknown version".
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from packaging.version import InvalidVersion, Version

from harness.errors import ConfigError
from harness.npu.rknn_file import RKNPU1_DEFAULT_PLATFORMS, RknnInfo

#: Chips that share one NPU and load each other's models (Rockchip ships one model for both, e.g.
#: rknn_model_zoo's "rk3566_rk3568"; the manual names rv1109/rv1126 together and rk1806/rk1808/rk3399pro
#: as one default target).
NPU_TWINS: tuple[frozenset[str], ...] = (
    frozenset({"rk3566", "rk3568"}),
    frozenset({"rk3588", "rk3588s"}),
    frozenset({"rv1103", "rv1106"}),
    frozenset({"rv1109", "rv1126"}),
    frozenset({"rk1806", "rk1808", "rk3399pro"}),
)
#: First librknnrt that loads header-v6 models (the matrix's ``header-v6`` feature says the same).
HEADER_V6_MIN_RUNTIME = Version("1.5.2")
#: First librknnrt whose refusal of a too-new header is -6 rather than -1 (observed: 1.5.0 prints
#: "6, 4" and returns -6; 1.3.0/1.4.0 print "6, 1" and return -1).
MODEL_INVALID_FROM_RUNTIME = Version("1.5.0")
#: The 4.3.2 boundary between pre-compile generations, as a DRV (rknn_server) and a galcore version.
PRECOMPILE_NEW_DRIVER = Version("0.9.6")
PRECOMPILE_NEW_GALCORE = Version("6.3.3")
PRECOMPILE_OLD_TOOLKIT_MAX = Version("0.9.9")

_VERSION_TOKEN = re.compile(r"[vV]?(\d+(?:\.\d+)*(?:(?:a|b|rc)\d+)?)")
_NPUS = ("rknpu1", "rknpu2")


@dataclass(frozen=True)
class Incompatibility:
    """One reason the board would refuse the model, with the error it would give and where it is documented."""

    rule: str  # target-platform, npu-generation, header-version, pre-compile-driver
    reason: str
    board_error: str  # what rknn_init would say on the board
    error_code: int | None  # rknn_init's return code (RKNN_ERR_*)
    manual: str  # manual section or reference note

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.reason} (board: {self.board_error}; see {self.manual})"


def check_model_for_board(info: RknnInfo, *, chip: str, npu: str, runtime_version: str | None,
                          driver_version: str | None) -> list[Incompatibility]:
    """Every reason ``chip`` (with this NPU runtime/driver) would refuse the model; empty means it loads.

    ``runtime_version`` is librknnrt's (RKNPU2) or librknn_runtime's (RKNPU1); ``driver_version`` is the
    RKNPU1 DRV/rknn_server or galcore version (only the pre-compile rule reads it). A generation mismatch is
    reported alone: the other rules presume the runtime can read the file at all.
    """
    chip = chip.strip().lower()
    if not chip:
        raise ConfigError("board chip is empty: cannot check a model against it")
    if npu not in _NPUS:
        raise ConfigError(f"unknown NPU generation {npu!r}: expected one of {', '.join(_NPUS)}")
    runtime = _version(runtime_version, "runtime")
    driver = _version(driver_version, "driver")
    if info.npu is not None and info.npu != npu:
        return [_generation_mismatch(info, chip, npu)]
    found = [_target_platform(info, chip, npu), _header_version(info, npu, runtime),
             _pre_compile(info, npu, driver)]
    return [item for item in found if item is not None]


def _version(text: str | None, what: str) -> Version | None:
    """The leading version of a board's or toolkit's string ("1.6.2-source_code", "1.5.0 (17e11b1 ...)")."""
    if text is None:
        return None
    match = _VERSION_TOKEN.match(text.strip())
    if match:
        try:
            return Version(match.group(1))
        except InvalidVersion:
            pass
    raise ConfigError(f"unreadable {what} version {text!r}: expected something like 1.5.2")


def _same_npu(a: str, b: str) -> bool:
    return a == b or any(a in group and b in group for group in NPU_TWINS)


def _generation_mismatch(info: RknnInfo, chip: str, npu: str) -> Incompatibility:
    return Incompatibility(
        rule="npu-generation",
        reason=f"the model is for {str(info.npu).upper()} ({info.layout}) but {chip} has an {npu.upper()}",
        board_error="rknn_init: RKNN_ERR_MODEL_INVALID", error_code=-6,
        manual="4.1.2",
    )


def _target_platform(info: RknnInfo, chip: str, npu: str) -> Incompatibility | None:
    declared = list(info.target_platforms)
    if not declared and npu == "rknpu1" and "target_platform" not in info.trailer:
        declared = list(RKNPU1_DEFAULT_PLATFORMS)  # what RKNN Toolkit 1 builds for without the option
    if not declared or any(_same_npu(chip, platform) for platform in declared):
        return None
    listed = ", ".join(declared)
    implicit = "" if info.target_platforms else " (no target_platform set: the toolkit's default)"
    board_error = (f"rknn model target platform[0] is {declared[0].upper()}, while current platform is "
                   f"{chip.upper()}: RKNN_ERR_TARGET_PLATFORM_UNMATCH")
    if npu == "rknpu1":  # connected debugging through rknn_server reports it as an invalid model instead
        board_error += "; over rknn_server: msg_load_ack fail, RKNN_ERR_MODEL_INVALID (-6)"
    return Incompatibility(rule="target-platform", reason=f"the model targets {listed}{implicit}, not {chip}",
                           board_error=board_error, error_code=-13, manual="4.1.2")


def _header_version(info: RknnInfo, npu: str, runtime: Version | None) -> Incompatibility | None:
    if npu != "rknpu2" or info.header_version < 6 or runtime is None or runtime >= HEADER_V6_MIN_RUNTIME:
        return None
    code, name = (-6, "RKNN_ERR_MODEL_INVALID") if runtime >= MODEL_INVALID_FROM_RUNTIME else (-1, "RKNN_ERR_FAIL")
    return Incompatibility(
        rule="header-version",
        reason=f"header version {info.header_version} (toolkit {info.toolkit_version or '?'}) needs librknnrt "
               f">= {HEADER_V6_MIN_RUNTIME}, the board has {runtime}",
        board_error=f"Invalid RKNN model version {info.header_version}; rknn_init: {name}",
        error_code=code, manual="rockchip-facts: RKNPU2 (header-v6 models)")


def _pre_compile(info: RknnInfo, npu: str, driver: Version | None) -> Incompatibility | None:
    if npu != "rknpu1" or info.pre_compile is not True or driver is None or info.toolkit_version is None:
        return None
    try:
        toolkit = _version(info.toolkit_version, "toolkit")
    except ConfigError:
        return None  # the file's own oddity; read_rknn already warned about it
    if toolkit is None:
        return None
    new_driver = driver >= (PRECOMPILE_NEW_GALCORE if driver.major >= 6 else PRECOMPILE_NEW_DRIVER)
    old_model = toolkit <= PRECOMPILE_OLD_TOOLKIT_MAX
    if old_model == new_driver:
        side = "new (DRV >= 0.9.6 / galcore >= 6.3.3)" if new_driver else "old (DRV < 0.9.6 / galcore < 6.3.3)"
        return Incompatibility(
            rule="pre-compile-driver",
            reason=f"pre-compiled by toolkit {info.toolkit_version}, which does not run on the board's "
                   f"{side} NPU driver {driver}; rebuild it with the board's toolkit",
            board_error="rknn_init: msg_load_ack fail, RKNN_ERR_MODEL_INVALID", error_code=-6,
            manual="4.3.2")
    return None
