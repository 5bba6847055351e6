"""A client for vtdbridged's two protocols, written from docs/PROTOCOL.md alone.

- ``EventChannel``: the binary event channel (§1): 16-byte frame header,
  little-endian, one reply per request in order, SCM_RIGHTS on SET_MEM_TABLE.
- ``ControlClient``: the control socket (§2): JSON lines.
- VT-d helpers: CAP/ECAP register values, legacy-mode root/context entries,
  second-level page-table entries and 128-bit queued-invalidation descriptors
  (Intel VT-d spec, rev. 3.x, §9 and §6.5.2), and ``GuestMemory``, a memfd
  the tables are written into.

Standard library only.
"""

from __future__ import annotations

import json
import mmap
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any, Sequence

# ---------------------------------------------------------------------------
# §1.2 framing
# ---------------------------------------------------------------------------

HEADER = struct.Struct("<IIQ")  # type, length, tag
HEADER_SIZE = HEADER.size  # 16
MAX_PAYLOAD = 1_048_576
REPLY_BIT = 0x8000_0000
MAX_FDS = 64

# §1.6 request types
HELLO = 1
SET_MEM_TABLE = 2
SET_ROOT_TABLE = 3
SET_TRANSLATION = 4
RESET = 5
READY = 6
INVALIDATE = 7
NOTIFY = 8
PING = 9

# §1.7 status codes
OK = 0
MALFORMED = 1
UNKNOWN_TYPE = 2
BAD_STATE = 3
VERSION = 4
CAPABILITY = 5
FDS = 6
MEMORY = 7
PARTIAL = 8
DESCRIPTOR = 9
TOO_LARGE = 10
INTERNAL = 11
SHUTTING_DOWN = 12
MEMORY_LOST = 13

STATUS_NAMES = {
    0: "OK", 1: "MALFORMED", 2: "UNKNOWN_TYPE", 3: "BAD_STATE", 4: "VERSION",
    5: "CAPABILITY", 6: "FDS", 7: "MEMORY", 8: "PARTIAL", 9: "DESCRIPTOR",
    10: "TOO_LARGE", 11: "INTERNAL", 12: "SHUTTING_DOWN",
    13: "MEMORY_LOST",
}

# §1.6 NOTIFY permissions, failure-record operations
PERM_NONE, PERM_READ, PERM_WRITE, PERM_RW = 0, 1, 2, 3
OP_MAP, OP_UNMAP, OP_UNMAP_ALL = 1, 2, 3

HELLO_FLAG_NOTIFIER = 1 << 0


class ProtocolError(Exception):
    """The daemon sent something the document does not allow."""


def encode_header(type_: int, length: int, tag: int) -> bytes:
    return HEADER.pack(type_, length, tag)


def encode_frame(type_: int, payload: bytes = b"", tag: int = 0) -> bytes:
    return encode_header(type_, len(payload), tag) + payload


# ---------------------------------------------------------------------------
# §1.6 request payloads
# ---------------------------------------------------------------------------

def hello_payload(cap: int, ecap: int, *, version: int = 1, flags: int = 0) -> bytes:
    return struct.pack("<IIQQ", version, flags, cap, ecap)


@dataclass(frozen=True)
class Region:
    gpa: int
    size: int
    offset: int = 0


def mem_table_payload(regions: Sequence[Region], *, count: int | None = None,
                      reserved: int = 0) -> bytes:
    n = len(regions) if count is None else count
    out = struct.pack("<II", n, reserved)
    for r in regions:
        out += struct.pack("<QQQ", r.gpa, r.size, r.offset)
    return out


def root_table_payload(rtaddr: int) -> bytes:
    return struct.pack("<Q", rtaddr)


def translation_payload(enabled: bool | int, reserved: int = 0) -> bytes:
    return struct.pack("<II", int(enabled), reserved)


def invalidate_payload(descriptors: Sequence[tuple[int, int]], *,
                       count: int | None = None, reserved: int = 0) -> bytes:
    n = len(descriptors) if count is None else count
    out = bytearray(struct.pack("<II", n, reserved))
    for low, high in descriptors:
        out += struct.pack("<QQ", low, high)
    return bytes(out)


@dataclass(frozen=True)
class NotifyEntry:
    iova: int
    translated_addr: int
    address_mask: int
    source_id: int
    permission: int


def notify_payload(entries: Sequence[NotifyEntry], *, count: int | None = None) -> bytes:
    n = len(entries) if count is None else count
    out = bytearray(struct.pack("<II", n, 0))
    for e in entries:
        out += struct.pack("<QQQHB5x", e.iova, e.translated_addr, e.address_mask,
                           e.source_id, e.permission)
    return bytes(out)


# ---------------------------------------------------------------------------
# §1.4 replies
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class FailureRecord:
    source_id: int
    operation: int
    reserved: int
    errno: int
    iova: int
    size: int
    reason: str

    RECORD = struct.Struct("<HBBiQQII")  # 32 bytes


@dataclass(frozen=True)
class BatchResult:
    waits: int
    rejected_index: int
    maps: int
    unmaps: int
    faults: int
    failures: tuple[FailureRecord, ...]

    FIXED = struct.Struct("<IiIIII")  # 24 bytes

    @classmethod
    def decode(cls, body: bytes) -> "BatchResult":
        if len(body) < cls.FIXED.size:
            raise ProtocolError(f"batch result of {len(body)} bytes, expected >= 24")
        waits, rejected, maps, unmaps, faults, count = cls.FIXED.unpack_from(body, 0)
        pos = cls.FIXED.size
        records = []
        for _ in range(count):
            if len(body) < pos + FailureRecord.RECORD.size:
                raise ProtocolError("failure record truncated")
            sid, op, res, err, iova, size, rlen, res2 = FailureRecord.RECORD.unpack_from(body, pos)
            pos += FailureRecord.RECORD.size
            if rlen > 1024 or len(body) < pos + rlen:
                raise ProtocolError(f"failure reason length {rlen} invalid")
            reason = body[pos:pos + rlen].decode("utf-8")
            pos += rlen
            records.append(FailureRecord(sid, op, res | res2, err, iova, size, reason))
        if pos != len(body):
            raise ProtocolError(f"{len(body) - pos} trailing bytes after batch result")
        return cls(waits, rejected, maps, unmaps, faults, tuple(records))


@dataclass(frozen=True)
class HelloBody:
    version: int
    max_payload: int
    devices: int

    @classmethod
    def decode(cls, body: bytes) -> "HelloBody":
        if len(body) != 12:
            raise ProtocolError(f"HELLO body of {len(body)} bytes, expected 12")
        return cls(*struct.unpack("<III", body))


@dataclass
class Reply:
    type: int
    tag: int
    status: int
    message: str
    body: bytes

    @property
    def request_type(self) -> int:
        return self.type & ~REPLY_BIT

    @property
    def status_name(self) -> str:
        return STATUS_NAMES.get(self.status, f"?{self.status}")

    def batch(self) -> BatchResult:
        return BatchResult.decode(self.body)

    def hello(self) -> HelloBody:
        return HelloBody.decode(self.body)

    def __repr__(self) -> str:
        return (f"Reply(type={self.type:#x}, tag={self.tag}, status={self.status_name}, "
                f"message={self.message!r}, body={len(self.body)} bytes)")


def decode_reply(type_: int, tag: int, payload: bytes) -> Reply:
    if len(payload) < 8:
        raise ProtocolError(f"reply payload of {len(payload)} bytes, expected >= 8")
    status, mlen = struct.unpack_from("<II", payload, 0)
    if mlen > 4096 or 8 + mlen > len(payload):
        raise ProtocolError(f"message_length {mlen} invalid for payload {len(payload)}")
    message = payload[8:8 + mlen].decode("utf-8")
    return Reply(type_, tag, status, message, payload[8 + mlen:])


# ---------------------------------------------------------------------------
# §1.1-1.3 the event channel
# ---------------------------------------------------------------------------

class EventChannel:
    """A VMM connection to the event channel."""

    def __init__(self, path: str, timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self._buf = bytearray()
        self._next_tag = 1

    # -- context manager ------------------------------------------------
    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "EventChannel":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- raw I/O --------------------------------------------------------
    def tag(self) -> int:
        t = self._next_tag
        self._next_tag += 1
        return t

    def send_raw(self, data: bytes, fds: Sequence[int] = ()) -> None:
        """One sendmsg for the whole buffer, with fds as SCM_RIGHTS (§1.3)."""
        if fds:
            sent = socket.send_fds(self.sock, [data], list(fds))
            if sent != len(data):
                # The rest goes without descriptors; the recvmsg that got the
                # descriptors still ends inside this frame, so they stay its (§1.3).
                self.sock.sendall(data[sent:])
        else:
            self.sock.sendall(data)

    def send(self, type_: int, payload: bytes = b"", *, tag: int | None = None,
             fds: Sequence[int] = ()) -> int:
        t = self.tag() if tag is None else tag
        self.send_raw(encode_frame(type_, payload, t), fds)
        return t

    def _fill(self, n: int) -> bool:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return False
            self._buf += chunk
        return True

    def recv_frame(self) -> tuple[int, int, bytes] | None:
        """Next frame (type, tag, payload), or None at a clean EOF."""
        if not self._fill(HEADER_SIZE):
            if self._buf:
                raise ProtocolError(f"EOF inside a frame header ({len(self._buf)} bytes)")
            return None
        type_, length, tag = HEADER.unpack_from(self._buf, 0)
        if length > MAX_PAYLOAD:
            raise ProtocolError(f"reply length {length} above the limit")
        if not self._fill(HEADER_SIZE + length):
            raise ProtocolError("EOF inside a frame payload")
        payload = bytes(self._buf[HEADER_SIZE:HEADER_SIZE + length])
        del self._buf[:HEADER_SIZE + length]
        return type_, tag, payload

    def recv_reply(self) -> Reply:
        frame = self.recv_frame()
        if frame is None:
            raise ProtocolError("connection closed while a reply was expected")
        return decode_reply(*frame)

    def at_eof(self, timeout: float = 5.0) -> bool:
        """True when the daemon has closed the connection (no more bytes)."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            if self._buf:
                return False
            try:
                data = self.sock.recv(1)
            except ConnectionResetError:
                return True
            if data:
                self._buf += data
                return False
            return True
        finally:
            self.sock.settimeout(old)

    # -- request/reply ----------------------------------------------------
    def request(self, type_: int, payload: bytes = b"", *, fds: Sequence[int] = (),
                tag: int | None = None) -> Reply:
        t = self.send(type_, payload, tag=tag, fds=fds)
        r = self.recv_reply()
        if r.type != (REPLY_BIT | type_) or r.tag != t:
            raise ProtocolError(f"reply {r!r} does not answer type {type_} tag {t}")
        return r

    def hello(self, cap: int, ecap: int, *, version: int = 1, flags: int = 0) -> Reply:
        return self.request(HELLO, hello_payload(cap, ecap, version=version, flags=flags))

    def set_mem_table(self, regions: Sequence[Region], fds: Sequence[int]) -> Reply:
        return self.request(SET_MEM_TABLE, mem_table_payload(regions), fds=fds)

    def set_root_table(self, rtaddr: int) -> Reply:
        return self.request(SET_ROOT_TABLE, root_table_payload(rtaddr))

    def set_translation(self, enabled: bool) -> Reply:
        return self.request(SET_TRANSLATION, translation_payload(enabled))

    def reset(self) -> Reply:
        return self.request(RESET)

    def ready(self) -> Reply:
        return self.request(READY)

    def invalidate(self, descriptors: Sequence[tuple[int, int]]) -> Reply:
        return self.request(INVALIDATE, invalidate_payload(descriptors))

    def notify(self, entries: Sequence[NotifyEntry]) -> Reply:
        return self.request(NOTIFY, notify_payload(entries))

    def ping(self) -> Reply:
        return self.request(PING)


# ---------------------------------------------------------------------------
# §2 the control socket
# ---------------------------------------------------------------------------

class ControlError(Exception):
    def __init__(self, reply: dict):
        self.reply = reply
        self.code = reply["error"]["code"]
        self.message = reply["error"].get("message", "")
        super().__init__(f"{self.code}: {self.message}")


class ControlClient:
    def __init__(self, path: str, timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self._buf = bytearray()
        self._next_id = 1
        # descriptors that came with reply bytes (attach with return-fd, §2.3)
        self.received_fds: list[int] = []

    def close(self) -> None:
        for fd in self.received_fds:
            os.close(fd)
        self.received_fds.clear()
        self.sock.close()

    def __enter__(self) -> "ControlClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send_line(self, line: bytes | str) -> None:
        if isinstance(line, str):
            line = line.encode()
        self.sock.sendall(line + b"\n")

    def recv_line(self) -> dict | None:
        while b"\n" not in self._buf:
            chunk, fds, _flags, _addr = socket.recv_fds(self.sock, 65536, 8)
            self.received_fds += fds
            if not chunk:
                if self._buf:
                    raise ProtocolError("EOF inside a reply line")
                return None
            self._buf += chunk
        i = self._buf.index(b"\n")
        line = bytes(self._buf[:i])
        del self._buf[:i + 1]
        return json.loads(line)

    def raw(self, request: dict) -> dict:
        """Send a request object as is; return the reply object."""
        self.send_line(json.dumps(request, separators=(",", ":")))
        reply = self.recv_line()
        if reply is None:
            raise ProtocolError("control connection closed")
        return reply

    def call(self, command: str, **arguments: Any) -> Any:
        """Run a command; return its `return` object or raise ControlError."""
        rid = self._next_id
        self._next_id += 1
        req: dict[str, Any] = {"execute": command, "id": rid}
        if arguments:
            req["arguments"] = {k.replace("_", "-"): v for k, v in arguments.items()}
        reply = self.raw(req)
        if reply.get("id") != rid:
            raise ProtocolError(f"reply id {reply.get('id')!r}, expected {rid}")
        if "error" in reply:
            raise ControlError(reply)
        return reply["return"]

    def attach(self, guest: str, *, host: str | None = None, group: int | None = None,
               return_fd: bool = False, quota: int | None = None) -> tuple[dict, int | None]:
        """`attach`; returns the reply object and, with "device-fd": true, the
        VFIO device descriptor that came with the reply line (caller closes it)."""
        args: dict[str, Any] = {"guest": guest}
        if host is not None:
            args["host"] = host
        if group is not None:
            args["group"] = group
        if return_fd:
            args["return-fd"] = True
        if quota is not None:
            args["quota"] = quota
        for stale in self.received_fds:
            os.close(stale)
        self.received_fds.clear()
        reply = self.call("attach", **args)
        fd = None
        if reply.get("device-fd"):
            if len(self.received_fds) != 1:
                raise ProtocolError(f"device-fd true but {len(self.received_fds)} descriptors")
            fd = self.received_fds.pop()
        return reply, fd


# ---------------------------------------------------------------------------
# VT-d registers and structures (Intel VT-d spec §10.4, §9, §6.5.2)
# ---------------------------------------------------------------------------

# CAP_REG
CAP_CM = 1 << 7
CAP_SAGAW_3LEVEL = 1 << 9    # 39-bit AGAW
CAP_SAGAW_4LEVEL = 1 << 10   # 48-bit AGAW
CAP_SAGAW_SHIFT = 8
CAP_MGAW_SHIFT = 16          # bits 21:16, value = width - 1
CAP_SLLPS_SHIFT = 34         # bits 37:34: bit 34 = 2 MiB, bit 35 = 1 GiB
CAP_SLLPS_2M = 1 << 34
CAP_SLLPS_1G = 1 << 35
CAP_PSI = 1 << 39
CAP_MAMV_SHIFT = 48          # bits 53:48

# ECAP_REG
ECAP_C = 1 << 0
ECAP_QI = 1 << 1
ECAP_DT = 1 << 2
ECAP_IR = 1 << 3
ECAP_PT = 1 << 6
ECAP_SC = 1 << 7


def make_cap(*, cm: bool = True, sagaw: int = CAP_SAGAW_4LEVEL, mgaw_bits: int = 48,
             sllps: int = CAP_SLLPS_2M, psi: bool = True, mamv: int = 18,
             nd: int = 2) -> int:
    cap = nd & 0x7
    if cm:
        cap |= CAP_CM
    cap |= sagaw
    cap |= ((mgaw_bits - 1) & 0x3F) << CAP_MGAW_SHIFT
    cap |= sllps
    if psi:
        cap |= CAP_PSI
    cap |= (mamv & 0x3F) << CAP_MAMV_SHIFT
    return cap


def make_ecap(*, qi: bool = True, pt: bool = True, dt: bool = False,
              sc: bool = False) -> int:
    e = 0
    if qi:
        e |= ECAP_QI
    if pt:
        e |= ECAP_PT
    if dt:
        e |= ECAP_DT
    if sc:
        e |= ECAP_SC
    return e


DEFAULT_CAP = make_cap()
DEFAULT_ECAP = make_ecap()


def source_id(bus: int, device: int, function: int) -> int:
    return (bus << 8) | (device << 3) | function


def parse_bdf(text: str) -> int:
    bus, rest = text.split(":")
    dev, fn = rest.split(".")
    return source_id(int(bus, 16), int(dev, 16), int(fn, 16))


# -- root / context entries (legacy mode, §9.1, §9.3) -----------------------

def root_entry(context_table: int, present: bool = True) -> tuple[int, int]:
    low = (context_table & ~0xFFF & ((1 << 64) - 1)) | int(present)
    return low, 0


TT_TRANSLATED = 0       # untranslated requests, second-level tables
TT_DEVICE_TLB = 1
TT_PASS_THROUGH = 2
AW_3LEVEL = 1
AW_4LEVEL = 2


def context_entry(slptptr: int, domain_id: int, *, aw: int = AW_4LEVEL,
                  tt: int = TT_TRANSLATED, present: bool = True,
                  fpd: bool = False) -> tuple[int, int]:
    low = int(present) | (int(fpd) << 1) | ((tt & 3) << 2) | (slptptr & ~0xFFF & ((1 << 64) - 1))
    high = (aw & 7) | ((domain_id & 0xFFFF) << 8)
    return low, high


# -- second-level paging entries (§9.8) --------------------------------------

SL_R = 1 << 0
SL_W = 1 << 1
SL_PS = 1 << 7
SL_ADDR_MASK = ((1 << 52) - 1) & ~0xFFF  # bits 51:12


def sl_entry(addr: int, *, read: bool = True, write: bool = True,
             large: bool = False) -> int:
    e = addr & SL_ADDR_MASK
    if read:
        e |= SL_R
    if write:
        e |= SL_W
    if large:
        e |= SL_PS
    return e


def sl_indices(iova: int) -> tuple[int, int, int, int]:
    """PML4, PDPT, PD, PT indices of an IOVA in a 4-level table."""
    return ((iova >> 39) & 0x1FF, (iova >> 30) & 0x1FF,
            (iova >> 21) & 0x1FF, (iova >> 12) & 0x1FF)


# -- queued-invalidation descriptors (§6.5.2) --------------------------------

QI_CC = 1
QI_IOTLB = 2
QI_DEV_TLB = 3
QI_IEC = 4
QI_WAIT = 5

GRAN_GLOBAL = 1
GRAN_DOMAIN = 2
GRAN_DEVICE = 3   # context cache: device-selective
GRAN_PAGE = 3     # IOTLB: page-selective


def cc_inv(granularity: int, domain_id: int = 0, sid: int = 0, fm: int = 0) -> tuple[int, int]:
    low = QI_CC | ((granularity & 3) << 4) | ((domain_id & 0xFFFF) << 16) \
        | ((sid & 0xFFFF) << 32) | ((fm & 3) << 48)
    return low, 0


def cc_inv_device(domain_id: int, sid: int) -> tuple[int, int]:
    return cc_inv(GRAN_DEVICE, domain_id, sid)


def iotlb_inv(granularity: int, domain_id: int = 0, addr: int = 0, am: int = 0,
              ih: bool = False, dr: bool = False, dw: bool = False) -> tuple[int, int]:
    low = QI_IOTLB | ((granularity & 3) << 4) | (int(dw) << 6) | (int(dr) << 7) \
        | ((domain_id & 0xFFFF) << 16)
    high = (am & 0x3F) | (int(ih) << 6) | (addr & ~0xFFF & ((1 << 64) - 1))
    return low, high


def iotlb_inv_page(domain_id: int, addr: int, am: int = 0) -> tuple[int, int]:
    return iotlb_inv(GRAN_PAGE, domain_id, addr, am)


def iotlb_inv_domain(domain_id: int) -> tuple[int, int]:
    return iotlb_inv(GRAN_DOMAIN, domain_id)


def wait_desc(*, status_write: bool = True, interrupt: bool = False, fence: bool = False,
              status_data: int = 1, status_addr: int = 0) -> tuple[int, int]:
    low = QI_WAIT | (int(interrupt) << 4) | (int(status_write) << 5) | (int(fence) << 6) \
        | ((status_data & 0xFFFF_FFFF) << 32)
    high = status_addr & ~0x3 & ((1 << 64) - 1)
    return low, high


# ---------------------------------------------------------------------------
# Guest memory: a memfd holding guest RAM, with a tiny VT-d table writer
# ---------------------------------------------------------------------------

class GuestMemory:
    """Guest RAM as a memfd, mapped here MAP_SHARED; one region at ``gpa``."""

    def __init__(self, size: int, gpa: int = 0, name: str = "vtd-guest-ram"):
        self.size = size
        self.gpa = gpa
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC)
        os.ftruncate(self.fd, size)
        self.mem = mmap.mmap(self.fd, size, mmap.MAP_SHARED,
                             mmap.PROT_READ | mmap.PROT_WRITE)

    def close(self) -> None:
        self.mem.close()
        os.close(self.fd)

    def region(self) -> Region:
        return Region(self.gpa, self.size, 0)

    def _off(self, gpa: int, n: int) -> int:
        off = gpa - self.gpa
        if off < 0 or off + n > self.size:
            raise ValueError(f"gpa {gpa:#x} outside guest RAM")
        return off

    def write_u64(self, gpa: int, value: int) -> None:
        struct.pack_into("<Q", self.mem, self._off(gpa, 8), value)

    def read_u64(self, gpa: int) -> int:
        return struct.unpack_from("<Q", self.mem, self._off(gpa, 8))[0]

    def write_entry128(self, gpa: int, entry: tuple[int, int]) -> None:
        struct.pack_into("<QQ", self.mem, self._off(gpa, 16), *entry)

    def zero(self, gpa: int, n: int) -> None:
        off = self._off(gpa, n)
        self.mem[off:off + n] = bytes(n)


class VTdTables:
    """Legacy-mode root/context tables and 4-level second-level tables in
    guest memory, with a bump allocator for table pages."""

    def __init__(self, mem: GuestMemory, table_base: int, table_limit: int):
        self.mem = mem
        self._next = table_base
        self._limit = table_limit
        self.root = self.alloc()
        self._context: dict[int, int] = {}   # bus -> context table gpa
        self._slpt: dict[int, int] = {}      # sid -> PML4 gpa

    def alloc(self) -> int:
        page = self._next
        if page + 0x1000 > self._limit:
            raise MemoryError("table area exhausted")
        self._next += 0x1000
        self.mem.zero(page, 0x1000)
        return page

    def context_table(self, bus: int) -> int:
        if bus not in self._context:
            ct = self.alloc()
            self._context[bus] = ct
            self.mem.write_entry128(self.root + 16 * bus, root_entry(ct))
        return self._context[bus]

    def set_context(self, sid: int, domain_id: int, *, aw: int = AW_4LEVEL,
                    tt: int = TT_TRANSLATED, present: bool = True,
                    new_table: bool = False) -> int:
        """Point device sid at its PML4 (a new, empty one when it has none or
        when new_table); returns the PML4's gpa."""
        ct = self.context_table(sid >> 8)
        pml4 = None if new_table else self._slpt.get(sid)
        if pml4 is None:
            pml4 = self.alloc()
            self._slpt[sid] = pml4
        self.mem.write_entry128(ct + 16 * (sid & 0xFF),
                                context_entry(pml4, domain_id, aw=aw, tt=tt, present=present))
        return pml4

    def _next_level(self, table: int, index: int) -> int:
        e = self.mem.read_u64(table + 8 * index)
        if e & (SL_R | SL_W):
            return e & SL_ADDR_MASK
        nxt = self.alloc()
        self.mem.write_u64(table + 8 * index, sl_entry(nxt, read=True, write=True))
        return nxt

    def leaf_slot(self, sid: int, iova: int, *, level: int = 1) -> int:
        """GPA of the entry mapping iova: level 1 = PTE (4K), 2 = PDE (2M)."""
        table = self._slpt[sid]
        idx = sl_indices(iova)
        for depth in range(4 - level):
            table = self._next_level(table, idx[depth])
        return table + 8 * idx[4 - level]

    def map_4k(self, sid: int, iova: int, gpa: int, *, read: bool = True,
               write: bool = True) -> None:
        self.mem.write_u64(self.leaf_slot(sid, iova), sl_entry(gpa, read=read, write=write))

    def map_2m(self, sid: int, iova: int, gpa: int, *, read: bool = True,
               write: bool = True) -> None:
        self.mem.write_u64(self.leaf_slot(sid, iova, level=2),
                           sl_entry(gpa, read=read, write=write, large=True))

    def unmap_4k(self, sid: int, iova: int) -> None:
        self.mem.write_u64(self.leaf_slot(sid, iova), 0)

    def unmap_2m(self, sid: int, iova: int) -> None:
        self.mem.write_u64(self.leaf_slot(sid, iova, level=2), 0)


def hexaddr(value: int) -> str:
    """The control socket's address spelling (§2.3): a "0x…" string."""
    return f"{value:#x}"
