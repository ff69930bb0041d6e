"""BootWatcher on a real pty console: a simulated board's console prints a boot, the harness's ConsoleLink reads it.

Each failure must be told apart from a timeout: a kernel panic raises BootPanic, U-Boot coming back before the
login prompt raises BootLoop, a boot that stops raises BootStageTimeout naming the missed stage; every error
carries the console text of that boot.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.console import ConsoleBoard, console_board

from harness.firmware.boot import BootLoop, BootPanic, BootStageTimeout, BootWatcher
from harness.links.console import ConsoleLink
from harness.sim import bootlog

FAST = {"uboot": 10.0, "kernel": 10.0, "login": 10.0, "shell": 10.0}


@contextmanager
def watching(tmp_path: Path, *faults: str, deadlines: dict[str, float] | None = None
             ) -> Iterator[tuple[ConsoleBoard, ConsoleLink, BootWatcher]]:
    with console_board(tmp_path, *faults) as sim:
        link = ConsoleLink(sim.port, baud=sim.ctx.profile.console_baud, capture=tmp_path / "console.log",
                           password=sim.ctx.profile.root_password)
        link.open()
        try:
            watcher = BootWatcher(link, deadlines={**FAST, **(deadlines or {})}, board="sim-rv1126")
            watcher.arm()
            yield sim, link, watcher
        finally:
            link.close()


def in_background(target) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_a_normal_boot_passes_every_stage_and_gives_a_shell(tmp_path):
    with watching(tmp_path) as (sim, link, watcher):
        booting = in_background(sim.power_on)
        report = watcher.wait()
        booting.join(timeout=30)
        assert list(report.stages) == ["uboot", "kernel", "login", "shell"]
        assert report.stages["uboot"] <= report.stages["kernel"] <= report.stages["login"]
        assert link.run("cat /etc/version", timeout=10).stdout.startswith("RK_VERSION=")


def test_text_of_an_older_boot_is_not_taken_for_the_new_one(tmp_path):
    with watching(tmp_path, deadlines={"uboot": 1.0}) as (sim, link, watcher):
        assert sim.power_on()
        link.login(timeout=20)
        watcher.arm()  # the first boot is over: its banner must not count
        with pytest.raises(BootStageTimeout, match="'uboot' not reached within 1 s"):
            watcher.wait()


def test_kernel_panic_is_reported_as_a_panic_not_a_timeout(tmp_path):
    with watching(tmp_path, "panic-at-boot") as (sim, _link, watcher):
        booting = in_background(sim.power_on)
        with pytest.raises(BootPanic) as caught:
            watcher.wait()
        booting.join(timeout=30)
    text = str(caught.value)
    assert "Kernel panic - not syncing" in text.splitlines()[0]
    assert "U-Boot 20" in text and "end Kernel panic" in text  # the console excerpt of this boot


def test_boot_loop_is_reported_as_a_loop(tmp_path):
    with watching(tmp_path) as (sim, _link, watcher):
        prof = sim.ctx.profile
        lines = bootlog.kernel_lines(prof, prof.versions.driver)

        def resetting_board():
            for _ in range(3):  # as the boot-loop fault does: reset after the early kernel lines, again
                sim.console.boot(lines, pace=0.3, reset_after="Memory:")

        booting = in_background(resetting_board)
        with pytest.raises(BootLoop) as caught:
            watcher.wait()
        booting.join(timeout=30)
    assert "U-Boot started again while waiting for the login stage" in str(caught.value)
    assert str(caught.value).count("Booting Linux on physical CPU") >= 1


def test_a_hung_boot_misses_the_login_stage_with_the_console_excerpt(tmp_path):
    with watching(tmp_path, "boot-hang", deadlines={"login": 2.0}) as (sim, _link, watcher):
        booting = in_background(sim.power_on)
        with pytest.raises(BootStageTimeout) as caught:
            watcher.wait()
        booting.join(timeout=30)
    first, _, excerpt = str(caught.value).partition("\n")
    assert "boot stage 'login' not reached within 2 s" in first
    assert "Galcore version" in excerpt  # the last thing the board said before it hung


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="unknown boot stage"):
        BootWatcher(object(), deadlines={"bios": 1.0})
