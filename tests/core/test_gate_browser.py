"""gate.html in a real browser: Debian's Chromium, headless, renders it to a PNG and dumps the rendered DOM.

The verdict is read from the DOM Chromium built (not from our template), the screenshot must show the verdict's
colour, and the page must make no request: its Content-Security-Policy is checked by planting a fetch to a real
listener on 127.0.0.1 and seeing the browser refuse it (Chromium itself: :mod:`support.browser`).
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from PIL import Image
from support.browser import chromium, element, page_console, render
from support.gate_runs import board, case, good_pair, npu_hil, write_run

from harness.report.gate import gate
from harness.report.gate_html import write_html

RED, GREEN = (0xCF, 0x22, 0x2E), (0x1A, 0x7F, 0x37)  # .verdict.nogo / .verdict.go in gate_html.CSS


def colour_pixels(png: Path, colour: tuple[int, int, int]) -> int:
    with Image.open(png) as image:
        assert image.size == (1280, 2000), image.size
        return sum(n for n, c in image.convert("RGB").getcolors(maxcolors=1 << 20) if c == colour)


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
