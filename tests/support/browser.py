"""Debian's Chromium, headless, for tests that check a page as a browser renders it (gate.html).

Chromium missing is a FAILURE with the install hint: a page that was never rendered is not tested. Each
Chromium is started in its own process group and that group (its PID) is killed at the end, so no renderer
outlives the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM_TIMEOUT_S = 90
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--window-size=1280,2000"]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("Debian chromium is not installed: run `apt-get install -y chromium` (scripts/setup must "
                    "install it for CI)", pytrace=False)
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=CHROMIUM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium did not finish within {CHROMIUM_TIMEOUT_S} s")
    finally:
        try:  # renderers or the zycote left behind: the group is ours, named by our child's PID
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


class _Element(HTMLParser):
    """The attributes and text of the element with a given id, in HTML that Chromium serialized; ``inside``: the
    tags within it, with their attributes; ``all_ids``: (tag, id) of every tag in the document."""

    def __init__(self, wanted: str) -> None:
        super().__init__()
        self.wanted, self.attrs, self.text, self.depth, self.all_ids = wanted, None, "", 0, []
        self.inside: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.all_ids.append((tag, found.get("id")))
        if self.depth:
            self.inside.append((tag, found))
            self.depth += 1
        elif found.get("id") == self.wanted:
            self.attrs, self.depth = found, 1

    def handle_endtag(self, tag: str) -> None:
        if self.depth:
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.text += data


def element(dom: str, element_id: str) -> _Element:
    parser = _Element(element_id)
    parser.feed(dom)
    assert parser.attrs is not None, f"no element #{element_id} in the rendered DOM: {dom[:400]}"
    return parser


def page_console(stderr: str) -> list[str]:
    """What the page itself logged (errors, CSP refusals); Chromium's own noise (dbus, gpu) is not the page's."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def render(tmp_path: Path, html: Path) -> tuple[str, Path]:
    """(the rendered DOM, the screenshot) of ``html``; both runs must leave no page console message."""
    shot = tmp_path / f"{html.stem}.png"
    shown = chromium(tmp_path, f"--screenshot={shot}", html.as_uri())
    assert shown.returncode == 0 and shot.is_file(), shown.stderr[-2000:]
    dumped = chromium(tmp_path, "--dump-dom", html.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    assert page_console(shown.stderr + dumped.stderr) == []
    return dumped.stdout, shot


