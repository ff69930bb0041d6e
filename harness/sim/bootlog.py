"""The boot log a simulated board prints on its console: U-Boot, then the kernel (with the NPU driver's lines).

The kernel part is also the start of the board's ``dmesg``, so the manual's ``dmesg | grep -i galcore`` finds the
same line the console showed. Lines follow real RV1126 (galcore) and RK3588 (rknpu DRM driver) boots.
"""

from __future__ import annotations

from harness.sim.profile import Profile

RKNPU_DRIVER_DATES = {"0.9.8": "20240828", "0.9.7": "20240525", "0.9.6": "20240322", "0.9.5": "20240226",
                      "0.9.3": "20231121", "0.9.2": "20230825", "0.9.1": "20230626", "0.8.8": "20230428",
                      "0.8.2": "20220829"}
NPU_ADDRESS = {"rk3588": "fdab0000.npu", "rk3576": "27700000.npu", "rk3562": "ff300000.npu",
               "rk3566": "fde40000.npu", "rk3568": "fde40000.npu", "rv1106": "ff660000.npu"}


def uboot_lines(profile: Profile) -> list[str]:
    chip = profile.chip.upper()
    return [
        f"DDR Version V1.10 20210810 ({chip})",
        "In",
        "ddr2 1056MHz",
        "OUT",
        "Boot1 Release Time: Sep  9 2021 17:33:50, version: 1.32",
        "",
        f"U-Boot 2017.09 ({profile.rk_version.rsplit('_', 1)[-1]} - 10:00:00 +0800)",
        "",
        f"Model: Rockchip {chip} Evaluation Board",
        "PreSerial: 2, raw, 0xff570000",
        "DRAM:  2 GiB",
        "MMC:   dwmmc@ffc50000: 0, dwmmc@ffc60000: 1",
        "Hit key to stop autoboot('CTRL+C'):  0 ",
        "## Booting FIT Image at 0x3ebfa380 with size 0x01141c00",
        "Starting kernel ...",
        "",
    ]


def kernel_lines(profile: Profile, driver_version: str) -> list[tuple[float, str]]:
    """(seconds since boot, message) pairs of the kernel's boot log, NPU driver lines included."""
    lines: list[tuple[float, str]] = [
        (0.0, "Booting Linux on physical CPU 0x0"),
        (0.0, profile.kernel),
        (0.0, f"CPU: {profile.cpu}"),
        (0.0, f"OF: fdt: Machine model: {profile.model}"),
        (0.000012, "Memory: 1986432K/2097152K available"),
        (0.412003, "rockchip-pinctrl pinctrl: probed pinctrl"),
        (0.983511, "dwmmc_rockchip ffc50000.dwmmc: Successfully tuned phase to 165"),
        (1.102240, "EXT4-fs (mmcblk0p7): mounted filesystem with ordered data mode. Opts: (null)"),
    ]
    if profile.npu == "rknpu1":
        lines += [
            (1.521877, "galcore: loading out-of-tree module taints kernel."),
            (1.540631, f"Galcore version {driver_version}"),
            (1.540702, "galcore ffbc0000.npu: NPU clock is 594000000 Hz"),
        ]
    else:
        address = NPU_ADDRESS.get(profile.chip, "fdab0000.npu")
        date = RKNPU_DRIVER_DATES.get(driver_version, "20230825")
        lines += [
            (1.521877, f"RKNPU {address}: Adding to iommu group 0"),
            (1.530145, f"RKNPU {address}: RKNPU: rknpu iommu is enabled, using iommu mode"),
            (1.540631, f"[drm] Initialized rknpu {driver_version} {date} for {address} on minor 1"),
        ]
    lines += [
        (1.802114, "Freeing unused kernel memory: 1024K"),
        (1.850333, "Run /init as init process"),
    ]
    return lines


def init_lines(profile: Profile) -> list[str]:
    """What the init scripts print after the kernel, before the login prompt."""
    lines = ["Starting syslogd: OK", "Starting klogd: OK", "Starting adbd: OK", "Starting sshd: OK"]
    if profile.npu == "rknpu1":
        lines.append("Starting NPU: insmod /lib/modules/galcore.ko ... OK")
    lines += ["Starting rknn_server: OK", "", f"Welcome to {profile.model}"]
    return lines


def stamp(seconds: float, message: str) -> str:
    return f"[{seconds:12.6f}] {message}"


#: Kernel lines a recovery ramdisk does not print (it loads no NPU driver).
NPU_DRIVER_WORDS = ("galcore", "rknpu")
#: ``boot-loop``: the board resets right after this kernel line (init never runs).
BOOT_LOOP_RESET_AFTER = "EXT4-fs (mmcblk0p7)"


def recovery_kernel_lines(profile: Profile, driver_version: str) -> list[tuple[float, str]]:
    return [(s, m) for s, m in kernel_lines(profile, driver_version)
            if not any(w in m.lower() for w in NPU_DRIVER_WORDS)]


def recovery_lines(reason: str, package: str) -> list[str]:
    """What Rockchip's recovery prints when the misc partition holds ``boot-recovery`` (an update to finish)."""
    return ["starting recovery...", "LOG_INFO: Boot command: boot-recovery",
            "LOG_INFO: Got arguments from boot message",
            f"LOG_INFO: out->recovery = {package}", f"LOG_ERROR: last update did not finish ({reason})", "",
            "*********************************************", "*      Rockchip Linux recovery mode         *",
            "*  update interrupted: firmware not changed *", "*********************************************"]


def loader_lines(profile: Profile) -> list[str]:
    """U-Boot entering Rockusb (loader mode) after ``reboot loader``: the board now answers only on USB."""
    return [f"U-Boot 2017.09 ({profile.rk_version.rsplit('_', 1)[-1]} - 10:00:00 +0800)", "",
            f"Model: Rockchip {profile.chip.upper()} Evaluation Board", "boot mode: loader",
            "enter Rockusb!", "RKUSB: LUN 0, dev 0, hwpart 0, sector 0x0, count 0x747c00"]
