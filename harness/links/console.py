"""The console link: a board's serial console through pyserial (local UART, pty, RFC2217, raw socket).

Design principle 4: evidence is never lost. From the moment the port opens a reader thread takes every byte,
appends it to the capture file (each line prefixed with the wall-clock time, flushed per chunk, so a crash of
the harness keeps it) and to an in-memory text that ``expect`` searches. The in-memory text is *cleaned* for
matching: CR and terminal escape sequences removed (busybox's line editor asks the terminal for the cursor
position with ``ESC[6n`` after every prompt). The capture keeps the raw bytes.

``run`` is sentinel based: it prints a start and an end marker around the command, each written on the command
line as two separate words, so the shell's echo of the line can never be mistaken for the result.
"""

from __future__ import annotations

import bisect
import codecs
import logging
import os
import re
import secrets
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import serial

from harness.errors import BoardError, ConfigError, LinkDown, LinkTimeout
from harness.links.base import ShellResult

#: Console output that means the board is gone: expect() fails at once instead of waiting for its deadline.
#: Anchored at a line start (after an optional printk stamp) so a command line that greps for it is harmless.
DEFAULT_FATAL: list[str] = [
    r"(?m)^(?:\[\s*\d+\.\d+\]\s*)?Kernel panic - not syncing",
    r"(?m)^(?:\[\s*\d+\.\d+\]\s*)?---\[ end Kernel panic",
]
#: Terminal control sequences (CSI and two-byte ESC) and a sequence cut in half at the end of a chunk.
_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]|\r|\x00")
_PARTIAL_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*)?\Z")
#: In-memory text kept for expect()/excerpt(); older text lives on in the capture file only.
MAX_BUFFER_CHARS = 8 * 1024 * 1024
#: How long the console must stay quiet before login() trusts that a prompt it sees is the last word.
LOGIN_SETTLE_S = 0.3
TAIL_LINES = 20
_MARK = "__NPUHIL_"


class ConsoleLink:
    """A board's serial console; see the module docstring."""

    def __init__(self, url: str, *, baud: int, capture: Path, login: str = "root", password: str | None = None,
                 prompt: str = r"[#$] $", name: str = "console", log: logging.Logger | None = None) -> None:
        self.url = url
        self.baud = baud
        self.capture = Path(capture)
        self.user = login
        self.password = password
        self.prompt = prompt
        self.name = name
        self.log = log or logging.getLogger(f"harness.links.console.{name}")
        self._serial: serial.SerialBase | None = None
        self._reader: threading.Thread | None = None
        self._closing = threading.Event()
        self._cond = threading.Condition()
        self._text = ""  # cleaned text; self._base is the absolute offset of its first character
        self._base = 0
        self._pos = 0  # absolute offset where the next expect() starts searching
        self._chunks: list[tuple[float, int]] = []  # (wall-clock time, absolute offset) per chunk received
        self._failure: str | None = None  # why the reader stopped (port gone)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._carry = ""  # an escape sequence cut at the end of the last chunk
        self._capture: BinaryIO | None = None
        self._line_start = True

    # -- open / close --------------------------------------------------------------------------------------
    def open(self) -> "ConsoleLink":
        """Open the port and start capturing; a port that is not there raises LinkDown at once."""
        if self._serial is not None:
            return self
        try:
            # pyserial's rfc2217 client refuses a write timeout (NotImplementedError): a console served by ser2net
            # (a labgrid place) writes without one; its reads still have theirs.
            write_timeout = None if self.url.startswith("rfc2217://") else 5.0
            port = serial.serial_for_url(self.url, baudrate=self.baud, timeout=0.1, write_timeout=write_timeout,
                                         do_not_open=True)
        except (ValueError, serial.SerialException) as exc:
            raise ConfigError(f"{self.name}: bad console url {self.url!r}: {exc}") from None
        try:
            self.capture.parent.mkdir(parents=True, exist_ok=True)
            capture = open(self.capture, "ab")
        except OSError as exc:
            raise ConfigError(f"{self.name}: cannot write the console capture {self.capture}: "
                              f"{exc.strerror or exc}") from None
        try:
            port.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            capture.close()
            raise LinkDown(f"{self.name}: cannot open console port {self.url}: {_first_line(exc)}") from None
        self._capture, self._line_start = capture, True
        self._serial = port
        self._closing.clear()
        self._failure = None
        self._reader = threading.Thread(target=self._read_loop, name=f"{self.name}-reader", daemon=True)
        self._reader.start()
        self.log.info("%s: opened %s at %d baud, capturing to %s", self.name, self.url, self.baud, self.capture)
        return self

    def close(self) -> None:
        """Stop the reader (it ends within its 0.1 s read timeout), close the port and the capture."""
        self._closing.set()
        if self._serial is not None and hasattr(self._serial, "cancel_read"):
            try:
                self._serial.cancel_read()
            except Exception:  # noqa: BLE001 - some url handlers lack it; the read timeout ends the loop anyway
                pass
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self._serial is not None:
            self._serial.close()
        if self._capture is not None:
            self._capture.close()
        self._serial = self._reader = self._capture = None

    def __enter__(self) -> "ConsoleLink":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------------------
    def _read_loop(self) -> None:
        port = self._serial
        assert port is not None
        while not self._closing.is_set():
            try:
                data = port.read(max(1, port.in_waiting))
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                if not self._closing.is_set():
                    self._failure = _first_line(exc)
                    self.log.error("%s: console port %s failed: %s", self.name, self.url, self._failure)
                break
            if data:
                self._take(data)
        with self._cond:
            self._cond.notify_all()

    def _take(self, data: bytes) -> None:
        now = time.time()
        self._write_capture(data, now)
        text = self._carry + self._decoder.decode(data)
        partial = _PARTIAL_ESCAPE.search(text)
        self._carry = text[partial.start():] if partial else ""
        clean = _ESCAPE.sub("", text[:partial.start()] if partial else text)
        with self._cond:
            self._chunks.append((now, self._base + len(self._text)))
            self._text += clean
            if len(self._text) > MAX_BUFFER_CHARS:
                self._trim()
            self._cond.notify_all()

    def _trim(self) -> None:
        drop = len(self._text) - MAX_BUFFER_CHARS // 2
        self._text = self._text[drop:]
        self._base += drop
        self._pos = max(self._pos, self._base)
        keep = bisect.bisect_left(self._chunks, self._base, key=lambda c: c[1])
        self._chunks = self._chunks[keep:]

    def _write_capture(self, data: bytes, now: float) -> None:
        capture = self._capture
        if capture is None:
            return
        stamp = datetime.fromtimestamp(now).strftime("[%Y-%m-%d %H:%M:%S.%f] ").encode()
        out = bytearray()
        for line in data.splitlines(keepends=True):
            if self._line_start:
                out += stamp
            out += line
            self._line_start = line.endswith(b"\n")
        capture.write(out)
        capture.flush()

    # -- expect --------------------------------------------------------------------------------------------
    def mark(self) -> float:
        """A wall-clock time to pass to excerpt() later."""
        return time.time()

    def excerpt(self, since: float | None = None) -> str:
        """The console text received since wall-clock time ``since`` (all that is kept, when None)."""
        with self._cond:
            if since is None:
                return self._text
            index = bisect.bisect_left(self._chunks, since, key=lambda c: c[0])
            if index == 0:
                return self._text
            if index >= len(self._chunks):
                return ""
            return self._text[self._chunks[index][1] - self._base:]

    def tail(self, lines: int = TAIL_LINES) -> str:
        """The last ``lines`` lines of console output (for error messages)."""
        with self._cond:
            return "\n".join(self._text[-200 * lines:].splitlines()[-lines:])

    def expect(self, pattern: str | re.Pattern[str], timeout: float, *,
               not_matching: list[str] | None = None) -> re.Match[str]:
        """Wait for ``pattern`` in the output that arrived since the last match; BoardError at once when a
        ``not_matching`` pattern (default DEFAULT_FATAL) shows up, LinkTimeout at the deadline."""
        return self._wait(pattern, timeout, DEFAULT_FATAL if not_matching is None else not_matching)

    def _wait(self, pattern: str | re.Pattern[str], timeout: float, not_matching: list[str], *,
              settle: float = 0.0) -> re.Match[str]:
        """expect(); with ``settle`` a match counts only once nothing new arrived for that long."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        fatal = [re.compile(p) for p in not_matching]
        deadline = time.monotonic() + timeout
        with self._cond:
            seen, quiet_since = -1, time.monotonic()
            while True:
                window = self._text[self._pos - self._base:]
                if len(window) != seen:
                    # Scan only the new text (from the start of the line it continues) for fatal lines.
                    start = window.rfind("\n", 0, max(0, seen)) + 1 if seen > 0 else 0
                    seen, quiet_since = len(window), time.monotonic()
                    for bad in fatal:
                        hit = bad.search(window, start)
                        if hit:
                            self._pos = self._base + len(self._text)
                            line = window[hit.start():].split("\n", 1)[0].strip()
                            raise BoardError(f"{self.name}: board failed: {line!r}; last console lines:\n"
                                             f"{self.tail()}")
                now = time.monotonic()
                match = regex.search(window)
                if match and now - quiet_since >= settle:
                    self._pos += match.end()
                    return match
                if self._failure is not None or self._serial is None:
                    raise LinkDown(f"{self.name}: console port {self.url} is down: {self._failure or 'closed'}")
                if now >= deadline:
                    raise LinkTimeout(f"{self.name}: no {regex.pattern!r} on the console within {timeout:g} s; "
                                      f"last console lines:\n{self.tail()}")
                wait = deadline - now
                if match:
                    wait = min(wait, settle - (now - quiet_since))
                self._cond.wait(timeout=max(0.01, min(wait, 1.0)))

    def _skip_pending(self, fatal: list[str]) -> None:
        """Forget unread output before a new exchange, but fail now if it shows the board died."""
        self._wait(r"", 0, fatal)
        with self._cond:
            self._pos = self._base + len(self._text)

    # -- writing -------------------------------------------------------------------------------------------
    def send(self, text: str, *, secret: bool = False) -> None:
        """Type ``text`` on the console (no newline added)."""
        if self._serial is None:
            raise LinkDown(f"{self.name}: console {self.url} is not open")
        try:
            self._serial.write(text.encode())
            self._serial.flush()
        except serial.SerialTimeoutException:
            raise LinkTimeout(f"{self.name}: console {self.url} does not take input (write timed out)") from None
        except (serial.SerialException, OSError) as exc:
            raise LinkDown(f"{self.name}: console {self.url} write failed: {_first_line(exc)}") from None
        self.log.debug("%s: sent %r", self.name, "<password>" if secret else text)

    # -- login / run ---------------------------------------------------------------------------------------
    def login(self, timeout: float = 30.0) -> None:
        """Get to a shell prompt: wake the console, then answer ``login:`` and ``Password:`` as needed."""
        deadline = time.monotonic() + timeout
        prompt = self.prompt.pattern if isinstance(self.prompt, re.Pattern) else self.prompt
        states = re.compile(rf"(?P<incorrect>Login incorrect)|(?P<login>login: ?$)|(?P<password>[Pp]assword: ?$)"
                            rf"|(?P<prompt>{prompt})")
        self._skip_pending(DEFAULT_FATAL)
        self.send("\n")
        users_sent = 0
        password_sent = False
        while True:
            remaining = deadline - time.monotonic()
            try:
                # only the first prompt may be followed by late boot messages; answers come back at once
                settle = LOGIN_SETTLE_S if users_sent == 0 and not password_sent else 0.0
                match = self._wait(states, max(0.0, remaining), DEFAULT_FATAL, settle=settle)
            except LinkTimeout:
                raise LinkTimeout(f"{self.name}: no login prompt or shell prompt on the console within "
                                  f"{timeout:g} s; last console lines:\n{self.tail()}") from None
            state = match.lastgroup
            if state == "prompt":
                self.log.info("%s: logged in (shell prompt)", self.name)
                return
            if state == "incorrect":
                raise BoardError(f"{self.name}: console login as {self.user!r} failed (Login incorrect): "
                                 f"wrong user name or password for this board")
            if state == "password":
                if self.password is None:
                    raise BoardError(f"{self.name}: the console asks for a password for {self.user!r} "
                                     f"but none is configured for this board")
                self.send(self.password + "\n", secret=True)
                password_sent = True
            else:
                users_sent += 1
                if users_sent > 3:
                    raise BoardError(f"{self.name}: the console keeps asking for a login name; "
                                     f"last console lines:\n{self.tail()}")
                self.send(self.user + "\n")

    def run(self, command: str, timeout: float, *, not_matching: list[str] | None = None) -> ShellResult:
        """Run ``command`` in the console's shell; stdout and stderr come merged, exit code from the marker."""
        if not command.strip():
            raise ConfigError(f"{self.name}: empty command")
        token = secrets.token_hex(6)
        start, end = f"{_MARK}S{token}", f"{_MARK}E{token}"
        # Markers are split in two words on the line, so only printf's output joins them; the braces let the
        # command span lines or end in '&' or ';'.
        line = (f"printf '%s%s\\n' {_MARK}S {token}; {{ {command}\n}}; "
                f"printf '\\n%s%s %d\\n' {_MARK}E {token} $?\n")
        fatal = DEFAULT_FATAL if not_matching is None else not_matching
        began = time.monotonic()
        self._skip_pending(fatal)
        self.send(line)
        try:
            self._wait(re.escape(start) + r"\n", timeout, fatal)
            match = self._wait(r"\n" + re.escape(end) + r" (\d+)\n",
                               max(0.0, timeout - (time.monotonic() - began)), fatal)
        except LinkTimeout:
            self.send("\x03")
            self._recover_prompt()
            self.log.warning("%s: %r timed out after %g s, sent ^C", self.name, command, timeout)
            raise LinkTimeout(f"{self.name}: {command!r} did not finish within {timeout:g} s (sent ^C); "
                              f"last console lines:\n{self.tail()}") from None
        output, code = match.string[:match.start()], int(match.group(1))
        self._recover_prompt()
        duration = time.monotonic() - began
        self.log.info("%s: %r -> exit %d in %.3f s", self.name, command, code, duration)
        return ShellResult(command=command, stdout=output, stderr="", exit_code=code, duration_s=duration,
                           link=self.name)

    def _recover_prompt(self) -> None:
        """Consume the prompt after a command so the next expect starts clean (a changed PS1 only costs 2 s)."""
        try:
            self._wait(self.prompt, 2.0, [])
        except LinkTimeout:
            self.log.debug("%s: no prompt after the command", self.name)


def _first_line(exc: BaseException) -> str:
    """The cause in one line; pyserial wraps the OS error ("could not open port X: [Errno 2] ..."): keep the OS's."""
    if isinstance(getattr(exc, "errno", None), int):
        return os.strerror(exc.errno)
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
