"""gate.html in a real browser: Debian's Chromium, headless, renders it to a PNG and dumps the rendered DOM.

The verdict is read from the DOM Chromium built (not from our template), the screenshot must show the verdict's
colour, and the page must make no request: its Content-Security-Policy is checked by planting a fetch to a real
listener on 127.0.0.1 and seeing the browser refuse it. Chromium missing is a FAILURE with the install hint:
a gate whose page was never rendered is not tested. Each Chromium is started in its own process group and that
group (its PID) is killed at the end, so no renderer outlives the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image
from support.gate_runs import board, case, good_pair, npu_hil, write_run

from harness.report.gate import gate
from harness.report.gate_html import write_html

CHROMIUM_TIMEOUT_S = 90
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--window-size=1280,2000"]
RED, GREEN = (0xCF, 0x22, 0x2E), (0x1A, 0x7F, 0x37)  # .verdict.nogo / .verdict.go in gate_html.CSS


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
    """The attributes and text of the element with a given id, in HTML that Chromium serialized."""

    def __init__(self, wanted: str) -> None:
        super().__init__()
        self.wanted, self.attrs, self.text, self.depth, self.all_ids = wanted, None, "", 0, []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.all_ids.append((tag, found.get("id")))
        if self.depth:
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


def colour_pixels(png: Path, colour: tuple[int, int, int]) -> int:
    with Image.open(png) as image:
        assert image.size == (1280, 2000), image.size
        return sum(n for n, c in image.convert("RGB").getcolors(maxcolors=1 << 20) if c == colour)


def render(tmp_path: Path, html: Path) -> tuple[str, Path]:
    """(the rendered DOM, the screenshot) of ``html``; both runs must leave no page console message."""
    shot = tmp_path / f"{html.stem}.png"
    shown = chromium(tmp_path, f"--screenshot={shot}", html.as_uri())
    assert shown.returncode == 0 and shot.is_file(), shown.stderr[-2000:]
    dumped = chromium(tmp_path, "--dump-dom", html.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    assert page_console(shown.stderr + dumped.stderr) == []
    return dumped.stdout, shot


def test_no_go_page_renders_and_its_dom_says_no_go(tmp_path: Path) -> None:
    a, _ = good_pair(tmp_path)
    bad = write_run(tmp_path, "bad", {"b9": board()},
                    [case("b9", "test_models", outcome="failed", klass="product",
                          message='<img src="http://127.0.0.1:9/x.png"> wrong class'),
                     case("b9", "test_versions", outcome="broken", klass="infrastructure", message="adb offline")])
    proc = npu_hil("gate", a, bad, "--out", tmp_path / "gate", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    dom, shot = render(tmp_path, tmp_path / "gate" / "gate.html")
    verdict = element(dom, "verdict")
    assert verdict.attrs["data-verdict"] == "NO-GO" and verdict.text.strip() == "NO-GO"
    reasons = element(dom, "reasons").text
    assert "b9 / test_models: 1 product failure(s)" in reasons and "could not judge" in reasons
    assert ("img", None) not in element(dom, "cells").all_ids  # the message stayed text, not an element
    assert colour_pixels(shot, RED) > 2000 and colour_pixels(shot, GREEN) == 0


def test_go_page_renders_green(tmp_path: Path) -> None:
    html = write_html(gate(good_pair(tmp_path)), tmp_path / "go" / "gate.html")
    dom, shot = render(tmp_path, html)
    verdict = element(dom, "verdict")
    assert verdict.attrs["data-verdict"] == "GO" and verdict.text.strip() == "GO"
    assert colour_pixels(shot, GREEN) > 2000 and colour_pixels(shot, RED) == 0


def test_page_cannot_fetch_anything(tmp_path: Path) -> None:
    """Plant an image from a real listener into the page: the browser must refuse it, never connect."""
    html = write_html(gate(good_pair(tmp_path)), tmp_path / "go" / "gate.html")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    port, hits, done = listener.getsockname()[1], [], threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                conn, peer = listener.accept()
            except TimeoutError:
                continue
            hits.append(peer)
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        planted = tmp_path / "planted.html"
        planted.write_text(html.read_text().replace("</body>", f'<img src="http://127.0.0.1:{port}/leak.png"></body>'))
        shown = chromium(tmp_path, "--dump-dom", planted.as_uri())
    finally:
        done.set()
        thread.join(timeout=5)
        listener.close()
    assert shown.returncode == 0 and 'id="verdict"' in shown.stdout
    assert hits == [], "the page fetched from the network"
    assert any("Content Security Policy" in line for line in page_console(shown.stderr)), shown.stderr[-2000:]
