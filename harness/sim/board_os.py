"""The simulated board's operating system for one boot: kernel, console, adbd, sshd, NPU, rknn_server.

Started by the supervisor (``python -m harness.sim.board_os STATE_DIR``) at every power-on and reboot. It boots
(console log), brings the endpoints up on the supervisor's reserved ports, then waits for a reboot or power-off
request from the board (``reboot``, adb ``reboot:``), a spontaneous-reboot fault, or the supervisor's kill.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from harness.sim import bootlog, firmware_update, ports, rootfs, state
from harness.sim import faults as faults_mod
from harness.sim.context import BoardContext
from harness.sim.gate import Gate
from harness.sim.kernel import Kernel
from harness.sim.profile import COMPONENTS, Profile
from harness.sim.profile import load as load_profile
from harness.sim.state import EXIT_POWEROFF, EXIT_REBOOT

log = logging.getLogger("npu-hil.sim.board")
MISMATCH_FAULTS = {"server-mismatch": "rknn_server", "driver-mismatch": "driver", "runtime-mismatch": "runtime"}


def effective_profile(base: Profile, overrides: dict[str, str], active: dict[str, str | None]) -> Profile:
    """The profile with per-board version overrides, then the version-mismatch faults, applied."""
    versions = dict(overrides)
    for fault, component in MISMATCH_FAULTS.items():
        if fault in active:
            value = active[fault]
            versions[component] = getattr(base.mismatch, component) if value in (None, "auto") else value
    return base.with_versions({k: v for k, v in versions.items() if k in COMPONENTS})


class BoardOS:
    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        config = state.read_json(state_dir / "config.json") or {}
        # an installed update's RK_VERSION and versions lie over the profile's, before the -mismatch faults
        self.base_profile, self.overrides = firmware_update.apply_installed(
            load_profile(config["profile"]), config.get("versions", {}), state_dir)
        self.faults = faults_mod.FaultSet(state_dir)
        self.profile = effective_profile(self.base_profile, self.overrides, self.faults.active())
        self.ctx = BoardContext(name=config["name"], profile=self.profile, root=state_dir / "root",
                                state_dir=state_dir, faults=self.faults)
        self.ctx.extra["versions"] = self.profile.versions
        self.services: list = []
        self._server_stopped_applied = "server-stopped" in self.faults
        self._driver_set: tuple[bool, bool] | None = None

    def _status(self, name: str, **extra: object) -> None:
        state.write_json(self.dir / "status.json", {"state": name, "boot": int(os.environ.get("NPU_HIL_SIM_BOOT", "1")),
                                                     "since": time.time(), "board_pid": os.getpid(), **extra})

    def boot(self) -> str:
        """Boot once; the state reached: running, halted, recovery or boot-loop."""
        from harness.sim.console import Console
        from harness.sim.npu import SimNpu

        root = self.ctx.root
        rootfs.clean_volatile(root)
        rootfs.write_versions(root, self.profile)
        self._write_driver_set()
        (root / "etc" / "version").write_text(f"RK_VERSION={self.profile.rk_version}\n")
        self.console = Console(self.ctx, int(os.environ["NPU_HIL_SIM_CONSOLE_FD"]))
        self.kernel = Kernel(self.ctx, console_write=self.console.write)
        self.gate = Gate(ports.listen_ephemeral())
        self.kernel.register(self.gate)
        SimNpu(self.ctx).register(self.gate)
        firmware_update.UpdateEngine(self.ctx).register(self.gate)
        self.gate.start()
        self.kernel.populate(driver_version=self.profile.versions.driver, gate_address=self.gate.address)
        misc = firmware_update.recovery_request(self.dir)
        if misc is not None:
            return self._boot_recovery(misc)
        loop = "boot-loop" in self.faults
        if not self.console.boot(bootlog.kernel_lines(self.profile, self.profile.versions.driver), pace=0.5,
                                 reset_after=bootlog.BOOT_LOOP_RESET_AFTER if loop else None):
            if loop and not {"panic-at-boot", "boot-hang"} & set(self.faults.active()):
                self._status("boot-loop")
                return "boot-loop"
            reason = "panic" if "panic-at-boot" in self.faults else "boot-hang"
            self._status("halted", reason=reason)
            return "halted"
        if "server-stopped" not in self.faults and "mini-driver" not in self.faults:
            self.kernel.start_server()
        self._start_endpoints()
        self.console.serve_login()
        self._status("running")
        return "running"

    def _boot_recovery(self, misc: dict) -> str:
        """The misc partition says boot-recovery: recovery's kernel, its banner, adbd as "recovery", no sshd."""
        lines = bootlog.recovery_kernel_lines(self.profile, self.profile.versions.driver)
        init = bootlog.recovery_lines(misc.get("reason", "unknown"), misc.get("recovery", "").replace("\n", " "))
        if not self.console.boot(lines, pace=0.5, init=init):
            self._status("halted", reason="recovery boot stopped")
            return "halted"
        self.ctx.extra["adb_state"] = "recovery"
        self._start_endpoints(ssh=False)
        self._status("recovery", reason=misc.get("reason"))
        return "recovery"

    def _start_endpoints(self, *, ssh: bool = True) -> None:
        from harness.sim.adbd import AdbDaemon
        from harness.sim.sshd import SshDaemon

        host = "127.0.0.1"
        adbd = AdbDaemon(self.ctx, ports.listen(host, int(os.environ["NPU_HIL_SIM_ADB_PORT"])))
        sshd = SshDaemon(self.ctx, ports.listen(host, int(os.environ["NPU_HIL_SIM_SSH_PORT"])),
                         host_key_path=self.dir / state.HOST_KEY_FILE, password=self.profile.root_password,
                         authorized_keys=self.ctx.root / "root" / ".ssh" / "authorized_keys")
        for service in (adbd, sshd) if ssh else (adbd,):
            service.start()
            self.services.append(service)

    def _write_driver_set(self) -> bool:
        """The driver flavour and USB gadget list for the active faults; True when they changed."""
        wanted = ("mini-driver" in self.faults, "ntb-disabled" not in self.faults)
        if wanted == self._driver_set:
            return False
        rootfs.write_versions(self.ctx.root, self.profile)  # the full set's rknn_server, should it come back
        rootfs.write_driver_set(self.ctx.root, self.profile, mini=wanted[0], ntb=wanted[1])
        self._driver_set = wanted
        return True

    def apply_live_faults(self) -> None:
        """Faults set while the board runs: version files rewritten, rknn_server stopped or started."""
        active = self.faults.active()
        if self._write_driver_set() and "mini-driver" in active:
            self.kernel.stop_server()  # the Mini Driver has no server
        profile = effective_profile(self.base_profile, self.overrides, active)
        if profile.versions != self.profile.versions:
            driver_changed = profile.versions.driver != self.profile.versions.driver
            self.profile = profile
            self.ctx.profile = profile
            self.ctx.extra["versions"] = profile.versions
            rootfs.write_versions(self.ctx.root, profile)
            self._driver_set = None
            self._write_driver_set()
            if driver_changed:
                self.kernel.reload_driver(profile.versions.driver)
        stopped = "server-stopped" in active
        if stopped and not self._server_stopped_applied and self.kernel.server_pid is not None:
            self.kernel.stop_server()  # once, when set: restart_rknn.sh may bring it back afterwards
        self._server_stopped_applied = stopped

    def run(self) -> int:
        outcome = self.boot()
        if outcome == "boot-loop":  # the board resets by itself: no "Restarting system", straight to U-Boot
            self.console.stop()
            self.gate.stop()
            time.sleep(0.3)
            return EXIT_REBOOT
        booted = outcome == "running"
        reboot_after = self.faults.number("reboot-after") if booted else None
        started = time.monotonic()
        while True:
            if self.kernel.reboot_requested.wait(0.25):
                break
            if booted:
                self.apply_live_faults()
                if reboot_after is not None and time.monotonic() - started >= reboot_after:
                    self.kernel.log("watchdog: watchdog0: watchdog did not stop!")
                    self.kernel.request_reboot("")
        mode = self.kernel.reboot_mode
        self._status("rebooting" if mode != "poweroff" else "off", mode=mode)
        for service in self.services:
            service.stop()
        self.console.stop()
        self.gate.stop()
        if mode == "power-loss":  # the power just went: nothing more reaches the console
            return EXIT_REBOOT
        if mode == "loader":
            return self._loader()
        if mode == "poweroff":
            self.console.write("reboot: Power down\n")
            return EXIT_POWEROFF
        self.console.write("reboot: Restarting system\n")
        return EXIT_REBOOT

    def _loader(self) -> int:
        """``reboot loader``: the board leaves Linux for U-Boot's Rockusb and stays there until a power cycle.

        adb and ssh are gone, as on a real board whose loader talks only USB; the process just waits to be
        killed by the supervisor's power off (``npu-hil sim power NAME cycle`` brings Linux back).
        """
        self.console.write("reboot: Restarting system with command 'loader'\n")
        self.console.write("".join(line + "\n" for line in bootlog.loader_lines(self.profile)))
        self._status("loader")
        while True:
            time.sleep(3600)


def main(argv: list[str]) -> int:
    state_dir = Path(argv[0]).resolve()
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return BoardOS(state_dir).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
