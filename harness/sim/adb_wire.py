"""adb's wire formats, as the device side sees them: transport messages, shell v2 packets, sync frames.

Pure encode/decode, no sockets, so the framing can be tested byte for byte and reused by anything that speaks
adb. The facts (little-endian u32 headers, magic = command ^ 0xFFFFFFFF, byte-sum checksum that adb >= 1.0.1
neither sends nor checks, 1 MiB payloads) are from reference/adb-notes.md, checked against Debian adb 29.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


def _code(tag: bytes) -> int:
    return struct.unpack("<I", tag)[0]


CNXN, AUTH, OPEN, OKAY, WRTE, CLSE = (_code(t) for t in (b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"WRTE", b"CLSE"))
NAMES = {CNXN: "CNXN", AUTH: "AUTH", OPEN: "OPEN", OKAY: "OKAY", WRTE: "WRTE", CLSE: "CLSE"}

#: Protocol version that lets both sides skip the payload checksum.
VERSION = 0x01000001
#: Largest payload we offer; the connection uses min(host's, ours).
MAX_PAYLOAD = 1024 * 1024
#: The device banner must fit in this (adb's MAX_PAYLOAD_V1).
MAX_BANNER = 4096
HEADER = struct.Struct("<6I")


class WireError(ValueError):
    """A message that breaks the framing rules: the connection must be dropped, as adb itself does."""


@dataclass(frozen=True)
class Message:
    command: int
    arg0: int
    arg1: int
    data: bytes = b""

    @property
    def name(self) -> str:
        return NAMES.get(self.command, f"0x{self.command:08x}")


def header(command: int, arg0: int, arg1: int, data: bytes = b"", *, checksum: bool = False) -> bytes:
    """The 24-byte header for ``data``. Only hosts older than VERSION want the checksum (costly in Python)."""
    check = sum(data) & 0xFFFFFFFF if checksum else 0
    return HEADER.pack(command, arg0, arg1, len(data), check, command ^ 0xFFFFFFFF)


def encode(command: int, arg0: int, arg1: int, data: bytes = b"", *, checksum: bool = False) -> bytes:
    """One whole message: header then payload."""
    return header(command, arg0, arg1, data, checksum=checksum) + data


def decode_header(header: bytes, max_payload: int = MAX_PAYLOAD) -> tuple[int, int, int, int]:
    """``(command, arg0, arg1, data_length)`` of a 24-byte header; raises WireError on bad magic or size."""
    if len(header) != HEADER.size:
        raise WireError(f"short header ({len(header)} bytes)")
    command, arg0, arg1, length, _check, magic = HEADER.unpack(header)
    if magic != command ^ 0xFFFFFFFF:
        raise WireError(f"bad magic 0x{magic:08x} for command 0x{command:08x}")
    if length > max_payload:
        raise WireError(f"payload of {length} bytes exceeds the maximum of {max_payload}")
    return command, arg0, arg1, length


def banner(state: str, props: dict[str, str], features: list[str]) -> bytes:
    """The CNXN payload ``state::k=v;k=v;features=a,b``, checked against adb's size limit."""
    body = "".join(f"{k}={v};" for k, v in props.items()) + "features=" + ",".join(features)
    data = f"{state}::{body}".encode()
    if len(data) > MAX_BANNER:
        raise WireError(f"banner of {len(data)} bytes exceeds {MAX_BANNER}")
    return data


def parse_service(data: bytes) -> str:
    """The service name of an OPEN payload (NUL-terminated text)."""
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


# -- shell protocol v2: 1-byte id, u32 length, data ------------------------------------------------------------
SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT, SHELL_CLOSE_STDIN, SHELL_WINSIZE = range(6)
SHELL_HEADER = struct.Struct("<BI")


def shell_packet(packet_id: int, data: bytes) -> bytes:
    return SHELL_HEADER.pack(packet_id, len(data)) + data


def split_shell_packets(buffer: bytearray) -> list[tuple[int, bytes]]:
    """Remove every complete shell v2 packet from ``buffer`` and return them; a partial one stays."""
    packets = []
    while len(buffer) >= SHELL_HEADER.size:
        packet_id, length = SHELL_HEADER.unpack_from(buffer)
        if len(buffer) < SHELL_HEADER.size + length:
            break
        packets.append((packet_id, bytes(buffer[SHELL_HEADER.size:SHELL_HEADER.size + length])))
        del buffer[:SHELL_HEADER.size + length]
    return packets


def parse_winsize(data: bytes) -> tuple[int, int, int, int] | None:
    """``b"24x80,0x0"`` (rows x cols, xpixels x ypixels) -> (rows, cols, xpix, ypix); None when malformed."""
    try:
        chars, pixels = data.rstrip(b"\0").decode().split(",")
        rows, cols = (int(v) for v in chars.split("x"))
        xpix, ypix = (int(v) for v in pixels.split("x"))
    except ValueError:
        return None
    return rows, cols, xpix, ypix


# -- sync protocol: requests are id + u32 length + path; replies as below ---------------------------------------
SYNC_REQUEST = struct.Struct("<4sI")
SYNC_MAX_PATH = 1024
SYNC_DATA_MAX = 64 * 1024
STAT_V1 = struct.Struct("<4sIII")                 # id, mode, size, mtime
STAT_V2 = struct.Struct("<4sIQQIIIIQqqq")          # id, error, dev, ino, mode, nlink, uid, gid, size, a/m/ctime
DENT_V1 = struct.Struct("<4sIIII")                # id, mode, size, mtime, namelen (+ name)
DENT_V2 = struct.Struct("<4sIQQIIIIQqqqI")         # STAT_V2 fields + namelen (+ name)


def sync_status(tag: bytes, value: int = 0) -> bytes:
    """An 8-byte sync frame: OKAY/DONE/DATA header (``value`` is 0, an mtime or a length)."""
    return SYNC_REQUEST.pack(tag, value)


def sync_fail(message: str) -> bytes:
    data = message.encode()
    return SYNC_REQUEST.pack(b"FAIL", len(data)) + data


def stat_v2_fields(st) -> tuple:  # noqa: ANN001 - an os.stat_result
    """The stat_v2 fields after id and error, in wire order."""
    return (st.st_dev, st.st_ino, st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_size,
            int(st.st_atime), int(st.st_mtime), int(st.st_ctime))


def stat_v2(tag: bytes, st, error: int = 0) -> bytes:  # noqa: ANN001
    """STA2/LST2 reply; with ``error`` (an errno) every other field is zero, as adbd sends it."""
    if st is None:
        return STAT_V2.pack(tag, error, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return STAT_V2.pack(tag, 0, *stat_v2_fields(st))
