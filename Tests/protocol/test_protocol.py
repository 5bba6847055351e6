"""Black-box tests of vtdbridged's event channel and control socket, written
from docs/PROTOCOL.md (and docs/CONFIG.md / README.md for running it) only.

One real vtdbridged (dry-run backend) runs per module. Tests whose name ends
in ``_doc_discrepancy`` assert what PROTOCOL.md says where the daemon does
something else; they fail on purpose, and their message names the section.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from vtdbridge_client import (  # noqa: E402
    AW_3LEVEL, BAD_STATE, CAP_CM, CAP_SAGAW_3LEVEL, CAPABILITY, DEFAULT_CAP,
    DEFAULT_ECAP, DESCRIPTOR, ECAP_PT, ECAP_QI, FDS, HEADER_SIZE, HELLO,
    HELLO_FLAG_NOTIFIER, INVALIDATE, MALFORMED, MAX_PAYLOAD, MEMORY, MEMORY_LOST, NOTIFY, OK,
    PERM_NONE, PERM_READ, PERM_RW, PING, READY, REPLY_BIT, SET_MEM_TABLE,
    SET_ROOT_TABLE, SET_TRANSLATION, TOO_LARGE, TT_PASS_THROUGH, UNKNOWN_TYPE,
    VERSION, BatchResult, ControlClient, EventChannel, FailureRecord, GuestMemory,
    NotifyEntry, Region, VTdTables, cc_inv, cc_inv_device, context_entry,
    decode_reply, encode_frame, encode_header, hello_payload, hexaddr,
    invalidate_payload, iotlb_inv, iotlb_inv_domain, iotlb_inv_page, make_cap,
    mem_table_payload, notify_payload, parse_bdf, root_table_payload, sl_entry,
    translation_payload, wait_desc,
)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("VTDBRIDGE_BIN", os.path.join(REPO, ".build", "debug"))
DAEMON = os.path.join(BIN, "vtdbridged")
CTL = os.path.join(BIN, "vtdbridgectl")

NAME = "proto"
GUEST = "00:03.0"
HOST = "0000:01:00.0"
SID = parse_bdf(GUEST)            # 0x0018
DID = 5                           # domain id written into our context entries
RAM = 8 << 20                     # 8 MiB of guest RAM at GPA 0
TABLES = (0x1000, 0x100000)       # table pages live in [4 KiB, 1 MiB)

EMPTY_BATCH = BatchResult(0, -1, 0, 0, 0, ())


# ---------------------------------------------------------------------------
# the daemon
# ---------------------------------------------------------------------------

class Daemon:
    def __init__(self, directory: str, devices: list[str]):
        self.dir = directory
        self.event = os.path.join(directory, "event.sock")
        self.control = os.path.join(directory, "control.sock")
        self.log_path = os.path.join(directory, "daemon.log")
        if not os.access(DAEMON, os.X_OK):
            pytest.fail(f"{DAEMON} is missing: run `swift build` in {REPO}", pytrace=False)
        args = [DAEMON, "--backend", "dry-run", "--name", NAME,
                "--event-socket", self.event, "--control-socket", self.control,
                "--state-directory", os.path.join(directory, "state")]
        for d in devices:
            args += ["--device", d]
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"vtdbridged exited with status {self.proc.returncode} "
                            f"before it was ready:\n{self.read_log()}", pytrace=False)
            if os.path.exists(self.control) and os.path.exists(self.event):
                try:
                    with ControlClient(self.control, timeout=2) as c:
                        c.call("status")
                    break
                except OSError:
                    pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"vtdbridged did not open its sockets within 15 s:\n"
                            f"{self.read_log()}", pytrace=False)
            time.sleep(0.05)

    def read_log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def ctl(self) -> ControlClient:
        return ControlClient(self.control)

    def status(self) -> dict:
        with self.ctl() as c:
            return c.call("status")

    def vmm_status(self) -> dict:
        return self.status()["vmm"]

    def device_status(self, guest: str = GUEST) -> dict:
        for d in self.status()["devices"]:
            if d["guest"] == guest:
                return d
        raise KeyError(guest)

    def mappings(self, guest: str = GUEST) -> dict:
        with self.ctl() as c:
            return c.call("mappings", guest=guest)

    def wait_vmm_disconnected(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self.vmm_status()["connected"]:
            if time.monotonic() > deadline:
                pytest.fail("the daemon still reports a VMM connection 5 s after close")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def daemon():
    with tempfile.TemporaryDirectory(prefix="vtdbridge-proto-") as d:
        dm = Daemon(d, [f"{HOST}={GUEST}"])
        try:
            yield dm
        finally:
            dm.stop()


@pytest.fixture
def vmm(daemon):
    """A fresh VMM connection (no HELLO yet); closed and awaited afterwards."""
    daemon.wait_vmm_disconnected()
    ev = EventChannel(daemon.event)
    try:
        yield ev
    finally:
        ev.close()
        daemon.wait_vmm_disconnected()


@pytest.fixture
def guest():
    mem = GuestMemory(RAM)
    tables = VTdTables(mem, *TABLES)
    tables.set_context(SID, DID)
    try:
        yield mem, tables
    finally:
        mem.close()


def start_session(ev: EventChannel, mem: GuestMemory, tables: VTdTables, *,
                  flags: int = 0, ready: bool = True) -> None:
    r = ev.hello(DEFAULT_CAP, DEFAULT_ECAP, flags=flags)
    assert (r.status, r.message) == (OK, ""), r
    for r in (ev.set_mem_table([mem.region()], [mem.fd]),
              ev.set_root_table(tables.root),
              ev.set_translation(True)):
        assert (r.status, r.message, r.body) == (OK, "", b""), r
    if ready:
        r = ev.ready()
        assert (r.status, r.message, r.body) == (OK, "", b""), r


@pytest.fixture
def session(vmm, guest):
    """HELLO, SET_MEM_TABLE, SET_ROOT_TABLE, SET_TRANSLATION(1), READY done."""
    mem, tables = guest
    start_session(vmm, mem, tables)
    return vmm, mem, tables


def m(iova: int, gpa: int, size: int = 0x1000, read: bool = True, write: bool = True) -> dict:
    """One entry of the control socket's `mappings` list (§2.3)."""
    return {"iova": hexaddr(iova), "gpa": hexaddr(gpa), "size": hexaddr(size),
            "read": read, "write": write}


def mapped(daemon, guest: str = GUEST) -> list[dict]:
    return sorted(daemon.mappings(guest)["mappings"], key=lambda e: int(e["iova"], 16))


def assert_batch(r, *, status=OK, waits=0, rejected=-1, maps=0, unmaps=0, faults=0):
    assert r.status == status, r
    if status == OK:
        assert r.message == "", r
    else:
        assert r.message, f"a failed reply must say what was wrong (§1.4): {r}"
    b = r.batch()
    assert (b.waits, b.rejected_index, b.maps, b.unmaps, b.faults, b.failures) == \
        (waits, rejected, maps, unmaps, faults, ()), b
    assert len(r.body) == 24, "no failure records: body is exactly 24 bytes (§1.6)"
    return b


# ---------------------------------------------------------------------------
# CAP / ECAP and the structures we build (VT-d spec values the doc names)
# ---------------------------------------------------------------------------

def test_cap_ecap_encoding():
    cap = DEFAULT_CAP
    assert cap & CAP_CM and cap >> 7 & 1 == 1                  # CM, bit 7
    assert cap >> 8 & 0x1F == 0b00100                          # SAGAW: 4-level only (bit 10)
    assert cap >> 16 & 0x3F == 47                              # MGAW = 48 bits - 1
    assert cap >> 34 & 0xF == 0b0001                           # SLLPS: 2 MiB
    assert cap >> 39 & 1 == 1                                  # PSI (MAMV is meaningful)
    assert cap >> 48 & 0x3F == 18                              # MAMV
    assert cap == 0x0012_0084_002F_0482
    assert DEFAULT_ECAP == ECAP_QI | ECAP_PT == 0x42           # QI bit 1, PT bit 6


def test_descriptor_encoding():
    # context-cache, device-selective: type 1, G=3 (bits 5:4), DID 31:16, SID 47:32
    assert cc_inv_device(5, 0x18) == (0x0000_0018_0005_0031, 0)
    # IOTLB page-selective: type 2, G=3; high: ADDR 63:12, AM 5:0
    assert iotlb_inv_page(5, 0x12000, am=2) == (0x0005_0032, 0x12002)
    # invalidation wait: type 5, SW bit 5, status data 63:32
    assert wait_desc(status_data=1) == (0x1_0000_0025, 0)


def test_table_encoding(guest):
    mem, tables = guest
    ct = tables.context_table(0)            # bus 0's context table
    low, high = struct.unpack_from("<QQ", mem.mem, tables.root)
    assert (low, high) == (ct | 1, 0)                          # root entry, bus 0
    low, high = struct.unpack_from("<QQ", mem.mem, ct + 16 * SID)
    assert low & 1 == 1 and low >> 2 & 3 == 0                  # present, TT=0
    assert high & 7 == 2 and high >> 8 & 0xFFFF == DID         # AW=2 (4-level), DID


# ---------------------------------------------------------------------------
# §1.6 HELLO
# ---------------------------------------------------------------------------

def test_hello_reply(vmm):
    tag = vmm.send(HELLO, hello_payload(DEFAULT_CAP, DEFAULT_ECAP), tag=0x1122_3344_5566_7788)
    type_, rtag, payload = vmm.recv_frame()
    assert type_ == REPLY_BIT | HELLO == 0x8000_0001
    assert rtag == tag == 0x1122_3344_5566_7788
    assert len(payload) == 8 + 12
    status, mlen, version, max_payload, devices = struct.unpack("<IIIII", payload)
    assert (status, mlen) == (OK, 0)
    assert (version, max_payload, devices) == (1, 1_048_576, 1)


def test_hello_refusals(vmm):
    r = vmm.hello(DEFAULT_CAP & ~CAP_CM, DEFAULT_ECAP)
    assert r.status == CAPABILITY and r.message and r.body == b"", r
    r = vmm.hello(make_cap(sagaw=0), DEFAULT_ECAP)              # no 3- or 4-level
    assert r.status == CAPABILITY and r.body == b"", r
    r = vmm.hello(DEFAULT_CAP, DEFAULT_ECAP, version=2)
    assert r.status == VERSION and r.body == b"", r
    r = vmm.hello(DEFAULT_CAP, DEFAULT_ECAP, flags=0b10)        # other flag bits are 0
    assert r.status == MALFORMED and r.body == b"", r
    r = vmm.request(HELLO, hello_payload(DEFAULT_CAP, DEFAULT_ECAP) + b"\0")
    assert r.status == MALFORMED, r
    # none of these started a session (§1.5: nothing else before HELLO)
    assert vmm.ping().status == BAD_STATE
    # §1.6/§1.7: SAGAW must offer a 3-, 4- or 5-level depth; 2-level (bit 8)
    # and the reserved bit 12 alone are not walkable
    for sagaw in (1 << 8, 1 << 12, 1 << 8 | 1 << 12):
        r = vmm.hello(make_cap(sagaw=sagaw), DEFAULT_ECAP)
        assert r.status == CAPABILITY and "SAGAW" in r.message, (sagaw, r)
    # 3-level-only guests are usable
    r = vmm.hello(make_cap(sagaw=CAP_SAGAW_3LEVEL), DEFAULT_ECAP)
    assert r.status == OK and r.hello().version == 1, r


def test_requests_before_hello(vmm, guest):
    mem, _ = guest
    assert vmm.ping().status == BAD_STATE
    assert vmm.ready().status == BAD_STATE
    assert vmm.set_root_table(0x1000).status == BAD_STATE
    assert vmm.set_mem_table([mem.region()], [mem.fd]).status == BAD_STATE
    r = vmm.invalidate([wait_desc()])
    assert r.status == BAD_STATE and r.batch() == EMPTY_BATCH, r
    assert vmm.hello(DEFAULT_CAP, DEFAULT_ECAP).status == OK
    r = vmm.ping()
    assert (r.type, r.status, r.message, r.body) == (0x8000_0009, OK, "", b"")


# ---------------------------------------------------------------------------
# §1.5 session, guest memory, tables
# ---------------------------------------------------------------------------

def test_session_maps_what_the_tables_say(daemon, vmm, guest):
    mem, tables = guest
    tables.map_4k(SID, 0x10000, 0x200000)                          # rw
    tables.map_4k(SID, 0x11000, 0x201000, write=False)             # r-
    tables.map_2m(SID, 0x4000_0000, 0x400000, write=False)         # 2 MiB, SLLPS
    before = daemon.device_status()["maps"]
    start_session(vmm, mem, tables, ready=False)
    # loading: state recorded, nothing mapped (§1.5 step 2)
    assert daemon.device_status()["maps"] == before
    vmm_state = daemon.vmm_status()
    assert vmm_state["session"] == "loading"
    r = vmm.ready()
    assert (r.type, r.status, r.message, r.body) == (0x8000_0006, OK, "", b"")
    assert mapped(daemon) == [m(0x10000, 0x200000),
                              m(0x11000, 0x201000, write=False),
                              m(0x4000_0000, 0x400000, 0x200000, write=False)]
    shadow = daemon.mappings()
    assert (shadow["device"], shadow["domain"], shadow["levels"], shadow["mode"]) == \
        (GUEST, DID, 4, "translated")
    v = daemon.vmm_status()
    assert v["connected"] is True and v["session"] == "ready"
    assert v["notifier-mode"] is False and v["translation"] is True
    assert v["root-table"] == hexaddr(tables.root) == "0x1000"
    assert (v["memory-regions"], v["memory-bytes"]) == (1, RAM)
    dev = daemon.device_status()
    assert (dev["guest"], dev["host"], dev["mappings"], dev["mapped-bytes"]) == \
        (GUEST, HOST, 3, 0x1000 + 0x1000 + 0x200000)


def test_invalidate_maps(daemon, session):
    ev, mem, tables = session
    tables.map_4k(SID, 0x20000, 0x300000)
    tables.map_4k(SID, 0x21000, 0x301000, write=False)
    r = ev.invalidate([cc_inv_device(DID, SID),
                       iotlb_inv_page(DID, 0x20000),
                       iotlb_inv_page(DID, 0x21000),
                       wait_desc()])
    assert r.type == 0x8000_0007
    assert_batch(r, waits=1, maps=2)
    assert mapped(daemon) == [m(0x20000, 0x300000), m(0x21000, 0x301000, write=False)]


def test_invalidate_unmap(daemon, session):
    ev, mem, tables = session
    tables.map_4k(SID, 0x20000, 0x300000)
    tables.map_4k(SID, 0x21000, 0x301000)
    assert_batch(ev.invalidate([iotlb_inv_page(DID, 0x20000, am=1), wait_desc()]),
                 waits=1, maps=2)
    tables.unmap_4k(SID, 0x20000)
    assert_batch(ev.invalidate([iotlb_inv_page(DID, 0x20000), wait_desc()]),
                 waits=1, unmaps=1)
    assert mapped(daemon) == [m(0x21000, 0x301000)]
    # a permission change is an unmap and a map
    tables.map_4k(SID, 0x21000, 0x301000, write=False)
    assert_batch(ev.invalidate([iotlb_inv_page(DID, 0x21000), wait_desc()]),
                 waits=1, maps=1, unmaps=1)
    assert mapped(daemon) == [m(0x21000, 0x301000, write=False)]


def test_invalidate_address_mask_and_domain(daemon, session):
    ev, mem, tables = session
    for i in range(4):
        tables.map_4k(SID, 0x40000 + i * 0x1000, 0x500000 + i * 0x1000)
    tables.map_4k(SID, 0x80000, 0x600000)
    # AM=2: 4 pages from 0x40000; the page at 0x80000 is outside it
    assert_batch(ev.invalidate([iotlb_inv_page(DID, 0x40000, am=2), wait_desc()]),
                 waits=1, maps=4)
    # another domain's invalidation does not touch this device
    assert_batch(ev.invalidate([iotlb_inv_domain(DID + 1), wait_desc()]), waits=1)
    # domain-selective for our DID picks it up
    assert_batch(ev.invalidate([iotlb_inv_domain(DID), wait_desc()]), waits=1, maps=1)
    assert len(mapped(daemon)) == 5


def test_context_cache_invalidation(daemon, session):
    ev, mem, tables = session
    tables.map_4k(SID, 0x10000, 0x200000)
    assert_batch(ev.invalidate([iotlb_inv_page(DID, 0x10000), wait_desc()]), waits=1, maps=1)
    # point the context entry at a new second-level table
    tables.set_context(SID, DID, new_table=True)
    tables.map_4k(SID, 0x30000, 0x210000)
    assert_batch(ev.invalidate([cc_inv_device(DID, SID), wait_desc()]),
                 waits=1, maps=1, unmaps=1)
    assert mapped(daemon) == [m(0x30000, 0x210000)]
    # an AW the guest's SAGAW does not advertise makes the context entry unusable
    tables.set_context(SID, DID, aw=AW_3LEVEL)
    assert_batch(ev.invalidate([cc_inv_device(DID, SID), wait_desc()]), waits=1, unmaps=1)
    assert mapped(daemon) == []


def test_wait_and_no_action_descriptors(session):
    ev, mem, tables = session
    # device-TLB (3) and interrupt-entry-cache (4): accepted, no action
    assert_batch(ev.invalidate([(3, 0), (4, 0), wait_desc(), wait_desc(status_write=False,
                                                                         interrupt=True)]),
                 waits=2)
    # a batch with no wait descriptor is still executed
    tables.map_4k(SID, 0x50000, 0x220000)
    assert_batch(ev.invalidate([iotlb_inv_page(DID, 0x50000)]), waits=0, maps=1)
    # global IOTLB invalidation
    assert_batch(ev.invalidate([iotlb_inv(1), cc_inv(1), wait_desc()]), waits=1)


def test_invalidate_largest_batch(session):
    ev, *_ = session
    r = ev.invalidate([wait_desc()] * 65_535)              # 8 + 16·65535 ≤ 1 MiB
    assert_batch(r, waits=65_535)


def test_faults_are_counted_not_mapped(daemon, session):
    ev, mem, tables = session
    tables.map_4k(SID, 0x60000, RAM + 0x10000000)            # leaf outside guest RAM
    assert_batch(ev.invalidate([iotlb_inv_page(DID, 0x60000), wait_desc()]),
                 waits=1, faults=1)
    assert mapped(daemon) == []
    assert daemon.device_status()["faults"].get("leaf-outside-ram", 0) >= 1
    tables.map_4k(SID, 0x60000, 0x230000)
    assert_batch(ev.invalidate([iotlb_inv_page(DID, 0x60000), wait_desc()]), waits=1, maps=1)
    assert mapped(daemon) == [m(0x60000, 0x230000)]


def test_pass_through(daemon, vmm, guest):
    mem, tables = guest
    tables.set_context(SID, DID, tt=TT_PASS_THROUGH)        # ECAP.PT is set
    start_session(vmm, mem, tables)
    assert mapped(daemon) == [m(0, 0, RAM)]


def test_five_level_tables(daemon, vmm, guest):
    """§1.6 HELLO: the daemon walks 3-, 4- and 5-level tables, so a 5-level-only
    guest (SAGAW bit 11) is accepted and its tables are walked."""
    mem, tables = guest
    pml4 = tables.set_context(SID, DID)
    pml5 = tables.alloc()
    iova = 3 << 48 | 0x10000
    tables.map_4k(SID, iova, 0x200000)              # the PML4 walk uses bits 47:0
    mem.write_u64(pml5 + 8 * (iova >> 48 & 0x1FF), sl_entry(pml4))
    mem.write_entry128(tables.context_table(0) + 16 * SID, context_entry(pml5, DID, aw=3))
    r = vmm.hello(make_cap(sagaw=1 << 11, mgaw_bits=57), DEFAULT_ECAP)
    assert r.status == OK, r
    for r in (vmm.set_mem_table([mem.region()], [mem.fd]), vmm.set_root_table(tables.root),
              vmm.set_translation(True), vmm.ready()):
        assert r.status == OK, r
    shadow = daemon.mappings()
    assert (shadow["levels"], shadow["mappings"]) == (5, [m(iova, 0x200000)])


def test_translation_off_and_reset(daemon, session):
    ev, mem, tables = session
    tables.map_4k(SID, 0x10000, 0x200000)
    assert_batch(ev.invalidate([iotlb_inv_page(DID, 0x10000), wait_desc()]), waits=1, maps=1)
    r = ev.set_translation(False)
    assert (r.status, r.body) == (OK, b"")
    assert mapped(daemon) == [] and daemon.vmm_status()["translation"] is False
    assert ev.set_translation(True).status == OK
    assert mapped(daemon) == [m(0x10000, 0x200000)]
    r = ev.reset()
    assert (r.type, r.status, r.body) == (0x8000_0005, OK, b"")
    v = daemon.vmm_status()
    assert v["root-table"] is None and v["translation"] is False   # doc: "no root table"
    assert mapped(daemon) == []


def test_set_mem_table_while_ready_keeps_unchanged_mappings(daemon, session):
    ev, mem, tables = session
    tables.map_4k(SID, 0x10000, 0x200000)
    assert_batch(ev.invalidate([iotlb_inv_page(DID, 0x10000), wait_desc()]), waits=1, maps=1)
    d0 = daemon.device_status()
    assert ev.set_mem_table([mem.region()], [mem.fd]).status == OK   # same file
    d1 = daemon.device_status()
    assert (d1["maps"], d1["unmaps"]) == (d0["maps"], d0["unmaps"])
    # new backing file, same contents: host address changes, so remapped
    copy = GuestMemory(RAM)
    try:
        copy.mem[:] = mem.mem[:]
        assert ev.set_mem_table([copy.region()], [copy.fd]).status == OK
        d2 = daemon.device_status()
        assert (d2["maps"] - d1["maps"], d2["unmaps"] - d1["unmaps"]) == (1, 1)
        assert mapped(daemon) == [m(0x10000, 0x200000)]
    finally:
        copy.close()


def test_reconnect_keeps_mappings_and_unchanged_ready_costs_nothing(daemon, vmm, guest):
    mem, tables = guest
    tables.map_4k(SID, 0x10000, 0x200000)
    start_session(vmm, mem, tables)
    assert mapped(daemon) == [m(0x10000, 0x200000)]
    vmm.close()
    daemon.wait_vmm_disconnected()
    assert daemon.vmm_status()["session"] == "none"
    assert mapped(daemon) == [m(0x10000, 0x200000)]             # §1.1: kept
    d0 = daemon.device_status()
    with EventChannel(daemon.event) as ev:
        start_session(ev, mem, tables)
        d1 = daemon.device_status()
        assert (d1["maps"], d1["unmaps"]) == (d0["maps"], d0["unmaps"])  # no unmap window
        with daemon.ctl() as c:
            assert c.call("replay", all=True) == {"maps": 0, "unmaps": 0, "faults": 0,
                                                  "failures": []}
    daemon.wait_vmm_disconnected()


def test_pipelined_requests(daemon, vmm, guest):
    mem, tables = guest
    tables.map_4k(SID, 0x10000, 0x200000)
    vmm.send(HELLO, hello_payload(DEFAULT_CAP, DEFAULT_ECAP), tag=10)
    vmm.send(PING, tag=11)
    vmm.send(SET_MEM_TABLE, mem_table_payload([mem.region()]), tag=12, fds=[mem.fd])
    vmm.send(SET_ROOT_TABLE, root_table_payload(tables.root), tag=13)
    vmm.send(SET_TRANSLATION, translation_payload(1), tag=14)
    vmm.send(INVALIDATE, invalidate_payload([wait_desc()]), tag=15)   # still loading
    vmm.send(READY, tag=16)
    vmm.send(INVALIDATE, invalidate_payload([wait_desc()]), tag=17)
    got = [vmm.recv_reply() for _ in range(8)]
    assert [(r.type & ~REPLY_BIT, r.tag) for r in got] == \
        [(1, 10), (9, 11), (2, 12), (3, 13), (4, 14), (7, 15), (6, 16), (7, 17)]
    assert [r.status for r in got] == [OK, OK, OK, OK, OK, BAD_STATE, OK, OK]
    assert got[5].batch() == EMPTY_BATCH
    assert got[7].batch() == BatchResult(1, -1, 0, 0, 0, ())
    assert mapped(daemon) == [m(0x10000, 0x200000)]


# ---------------------------------------------------------------------------
# §1.6 INVALIDATE refusals
# ---------------------------------------------------------------------------

def test_descriptor_with_reserved_bit(daemon, session):
    ev, mem, tables = session
    tables.map_4k(SID, 0x70000, 0x240000)
    tables.map_4k(SID, 0x71000, 0x241000)
    bad_cc = (cc_inv_device(DID, SID)[0], 1)                 # high word is reserved
    r = ev.invalidate([iotlb_inv_page(DID, 0x70000), bad_cc,
                       iotlb_inv_page(DID, 0x71000), wait_desc()])
    # the descriptor before it ran; it and those after did not
    assert_batch(r, status=DESCRIPTOR, rejected=1, maps=1, waits=0)
    assert mapped(daemon) == [m(0x70000, 0x240000)]
    # reserved bit 12 of a wait descriptor, at index 0
    r = ev.invalidate([(wait_desc()[0] | 1 << 12, 0), wait_desc()])
    assert_batch(r, status=DESCRIPTOR, rejected=0)
    # unknown descriptor type 6 after a wait: the wait is reached
    r = ev.invalidate([wait_desc(), (6, 0), wait_desc()])
    assert_batch(r, status=DESCRIPTOR, rejected=1, waits=1)
    # reserved granularity 0
    assert_batch(ev.invalidate([iotlb_inv(0, DID)]), status=DESCRIPTOR, rejected=0)
    # the connection is kept
    assert ev.ping().status == OK


def test_invalidate_malformed(session):
    ev, *_ = session
    r = ev.request(INVALIDATE, b"\1\0\0\0")
    assert r.status == MALFORMED and r.batch() == EMPTY_BATCH, r
    r = ev.request(INVALIDATE, invalidate_payload([wait_desc()], count=2))
    assert r.status == MALFORMED and r.batch() == EMPTY_BATCH, r
    r = ev.request(INVALIDATE, invalidate_payload([wait_desc()], reserved=1))
    assert r.status == MALFORMED and r.batch() == EMPTY_BATCH, r
    r = ev.request(INVALIDATE, invalidate_payload([], count=0))
    assert r.status == MALFORMED and r.batch() == EMPTY_BATCH, r


def test_invalidate_count_limit_message_doc_discrepancy(session):
    ev, *_ = session
    r = ev.request(INVALIDATE, invalidate_payload([], count=0))
    assert r.status == MALFORMED
    assert "65536" not in r.message, (
        "PROTOCOL.md §1.6 INVALIDATE: count is '1 to 65,535 (the most that fit a 1 MiB "
        "payload)' (8 + 16·65536 = 1,048,584 > 1,048,576), but the daemon's MALFORMED "
        f"message tells the client {r.message!r}; a client that follows it and sends "
        "65,536 descriptors gets TOO_LARGE and loses its connection")


def test_invalidate_before_ready(vmm, guest):
    mem, tables = guest
    start_session(vmm, mem, tables, ready=False)
    r = vmm.invalidate([iotlb_inv_page(DID, 0x10000), wait_desc()])
    assert r.type == 0x8000_0007 and r.status == BAD_STATE and r.message, r
    assert r.batch() == EMPTY_BATCH
    assert vmm.ready().status == OK
    assert vmm.ready().status == BAD_STATE              # READY outside loading


# ---------------------------------------------------------------------------
# §1.2 framing errors, §1.7 status codes
# ---------------------------------------------------------------------------

def test_unknown_type(session):
    ev, *_ = session
    r = ev.request(0x77)
    assert (r.type, r.status, r.body) == (0x8000_0077, UNKNOWN_TYPE, b""), r
    assert r.message
    r = ev.request(0x1234_5678, b"payload")
    assert (r.type, r.status) == (0x9234_5678, UNKNOWN_TYPE), r
    assert ev.ping().status == OK                      # kept


def test_wrong_payload_length(session):
    ev, *_ = session
    for type_, payload in [(PING, b"x"), (READY, b"\0" * 4), (SET_ROOT_TABLE, b"\0" * 4),
                           (SET_TRANSLATION, b"\0" * 12), (HELLO, b"\0" * 23),
                           (SET_MEM_TABLE, b"\1\0\0\0\0\0\0\0" + b"\0" * 23)]:
        r = ev.request(type_, payload)
        assert (r.type, r.status) == (REPLY_BIT | type_, MALFORMED), r
        assert r.message
    r = ev.request(SET_TRANSLATION, translation_payload(2))           # enabled not 0/1
    assert r.status == MALFORMED
    r = ev.request(SET_TRANSLATION, translation_payload(1, reserved=1))
    assert r.status == MALFORMED
    assert ev.ping().status == OK


def test_set_root_table_values(daemon, session):
    ev, *_ = session
    assert ev.set_root_table(0x1000 | 1 << 10).status == MALFORMED    # scalable mode
    assert ev.set_root_table(0x1001).status == MALFORMED              # bits 11:0
    assert ev.set_root_table(0).status == OK                          # no root table
    assert daemon.vmm_status()["root-table"] is None
    assert mapped(daemon) == []


def test_fds_on_frame_that_takes_none(session):
    ev, mem, _ = session
    r = ev.request(PING, fds=[mem.fd])
    assert (r.status, r.body) == (FDS, b""), r
    r = ev.request(INVALIDATE, invalidate_payload([wait_desc()]), fds=[mem.fd])
    assert r.status == FDS and r.batch() == EMPTY_BATCH, r
    r = ev.request(SET_ROOT_TABLE, root_table_payload(0x1000), fds=[mem.fd, mem.fd])
    assert r.status == FDS, r
    assert ev.ping().status == OK


def test_set_mem_table_fd_count(session):
    ev, mem, _ = session
    r = ev.request(SET_MEM_TABLE, mem_table_payload([mem.region()]))
    assert (r.type, r.status) == (0x8000_0002, FDS), r
    r = ev.request(SET_MEM_TABLE, mem_table_payload([mem.region()]), fds=[mem.fd, mem.fd])
    assert r.status == FDS, r
    regions = [Region(i * 0x1000, 0x1000, i * 0x1000) for i in range(64)]
    r = ev.request(SET_MEM_TABLE, mem_table_payload(regions), fds=[mem.fd] * 63)
    assert r.status == FDS, r
    r = ev.request(SET_MEM_TABLE, mem_table_payload(regions), fds=[mem.fd] * 64)
    assert r.status == OK, r                                       # at most 64: allowed
    assert ev.set_mem_table([mem.region()], [mem.fd]).status == OK


def test_set_mem_table_65_fds_doc_discrepancy(daemon, vmm, guest):
    mem, tables = guest
    start_session(vmm, mem, tables)
    regions = [Region(i * 0x1000, 0x1000, i * 0x1000) for i in range(64)]
    vmm.send(SET_MEM_TABLE, mem_table_payload(regions), tag=65, fds=[mem.fd] * 65)
    try:
        frame = vmm.recv_frame()
    except OSError as e:
        frame = e
    assert isinstance(frame, tuple), (
        "PROTOCOL.md §1.3 says descriptors 'more ... than a SET_MEM_TABLE announces are "
        "closed by the daemon and the request fails with status FDS', §1.2 that every "
        "request gets exactly one reply, and §1.7 that FDS keeps the connection; with 65 "
        "descriptors on a 64-region SET_MEM_TABLE the daemon sends no reply and closes the "
        f"connection (got {'EOF' if frame is None else repr(frame)}; its log says 'descriptors "
        "were discarded ... the stream is lost'). The doc says 'at most 64 descriptors per "
        "frame' but not what happens above that")
    r = decode_reply(*frame)
    assert (r.tag, r.status) == (65, FDS), r


def test_fds_belong_to_the_frame_where_recvmsg_ends(session):
    ev, mem, _ = session
    frame = encode_frame(SET_MEM_TABLE, mem_table_payload([mem.region()]), 21)
    # header first without descriptors, then the payload with them
    ev.send_raw(frame[:HEADER_SIZE])
    time.sleep(0.1)
    ev.send_raw(frame[HEADER_SIZE:], [mem.fd])
    r = ev.recv_reply()
    assert (r.tag, r.status) == (21, OK), r
    # a sendmsg carrying SET_MEM_TABLE and a following PING: the descriptors
    # go to the PING (where the bytes end); both fail with FDS
    ev.send_raw(encode_frame(SET_MEM_TABLE, mem_table_payload([mem.region()]), 22)
                + encode_frame(PING, b"", 23), [mem.fd])
    r1, r2 = ev.recv_reply(), ev.recv_reply()
    assert (r1.tag, r1.status, r2.tag, r2.status) == (22, FDS, 23, FDS), (r1, r2)


def test_memory_refused(session):
    ev, mem, _ = session
    cases = [[Region(0x800, 0x1000)],                    # gpa not 4 KiB-aligned
             [Region(0, 0x1800)],                        # size not a multiple
             [Region(0, 0)],                             # zero size
             [Region(0, 0x1000, 0x800)],                 # offset not aligned
             [Region(0, 2 * RAM)],                       # file too short
             [Region(0, 0x2000), Region(0x1000, 0x2000)]]  # overlap
    for regions in cases:
        r = ev.set_mem_table(regions, [mem.fd] * len(regions))
        assert r.status == MEMORY and r.message, (regions, r)
    r = ev.request(SET_MEM_TABLE, mem_table_payload([mem.region()], reserved=1), fds=[mem.fd])
    assert r.status == MALFORMED
    assert ev.set_mem_table([Region(0, 0x100000), Region(1 << 32, 0x100000, 0x100000)],
                            [mem.fd, mem.fd]).status == OK


def test_too_large_closes(daemon, session):
    ev, mem, tables = session
    tables.map_4k(SID, 0x10000, 0x200000)
    assert_batch(ev.invalidate([iotlb_inv_page(DID, 0x10000), wait_desc()]), waits=1, maps=1)
    ev.send_raw(encode_header(PING, MAX_PAYLOAD + 1, 0xABCD))
    type_, tag, payload = ev.recv_frame()
    r = decode_reply(type_, tag, payload)
    assert (r.type, r.tag, r.status, r.body) == (0x8000_0009, 0xABCD, TOO_LARGE, b""), r
    assert ev.at_eof(), "TOO_LARGE closes the connection (§1.2)"
    daemon.wait_vmm_disconnected()
    assert mapped(daemon) == [m(0x10000, 0x200000)]         # mappings kept


def test_too_large_invalidate_of_65536_descriptors(daemon, vmm, guest):
    mem, tables = guest
    start_session(vmm, mem, tables)
    payload = invalidate_payload([wait_desc()] * 65_536)
    assert len(payload) == 1_048_584
    # send only the header: the daemon must refuse on the length alone
    vmm.send_raw(encode_header(INVALIDATE, len(payload), 77))
    r = vmm.recv_reply()
    assert (r.type, r.tag, r.status) == (0x8000_0007, 77, TOO_LARGE), r
    assert vmm.at_eof()


def test_second_vmm_is_refused(daemon, session):
    ev, *_ = session
    with EventChannel(daemon.event) as second:
        type_, tag, payload = second.recv_frame()
        r = decode_reply(type_, tag, payload)
        assert (r.type, r.tag, r.status, r.body) == (0x8000_0000, 0, BAD_STATE, b""), r
        assert r.message
        assert second.at_eof()
    assert ev.ping().status == OK                           # the first one is untouched


def test_partial_frame_is_ignored(daemon, vmm, guest):
    mem, tables = guest
    start_session(vmm, mem, tables)
    frame = encode_frame(SET_ROOT_TABLE, root_table_payload(0x7000), 5)
    vmm.send_raw(frame[:HEADER_SIZE + 4])
    time.sleep(0.1)
    vmm.close()
    daemon.wait_vmm_disconnected()
    assert daemon.vmm_status()["root-table"] == hexaddr(tables.root)


# ---------------------------------------------------------------------------
# §1.6 NOTIFY (notifier mode)
# ---------------------------------------------------------------------------

def test_notify_outside_notifier_mode(session):
    ev, *_ = session
    r = ev.notify([NotifyEntry(0x10000, 0x200000, 0xFFF, SID, PERM_RW)])
    assert r.status == BAD_STATE and r.batch() == EMPTY_BATCH, r


def test_notifier_mode(daemon, vmm, guest):
    mem, tables = guest
    start_session(vmm, mem, tables, flags=HELLO_FLAG_NOTIFIER, ready=False)
    r = vmm.notify([NotifyEntry(0x10000, 0x200000, 0xFFF, SID, PERM_RW)])
    assert r.status == BAD_STATE and r.batch() == EMPTY_BATCH   # refused while loading
    assert vmm.ready().status == OK
    assert daemon.vmm_status()["notifier-mode"] is True
    r = vmm.notify([NotifyEntry(0x10000, 0x200000, 0xFFF, SID, PERM_RW),
                    NotifyEntry(0x200000, 0x400000, 0x1FFFFF, SID, PERM_READ)])
    assert r.type == 0x8000_0008
    assert_batch(r, maps=2)
    assert mapped(daemon) == [m(0x10000, 0x200000),
                              m(0x200000, 0x400000, 0x200000, write=False)]
    # re-sent unchanged: costs nothing
    assert_batch(vmm.notify([NotifyEntry(0x10000, 0x200000, 0xFFF, SID, PERM_RW)]))
    # an unmap that would cut the 2 MiB mapping in two is refused
    r = vmm.notify([NotifyEntry(0x10000, 0, 0xFFF, SID, PERM_NONE),
                    NotifyEntry(0x201000, 0, 0xFFF, SID, PERM_NONE)])
    assert_batch(r, status=DESCRIPTOR, rejected=1, unmaps=1)
    assert mapped(daemon) == [m(0x200000, 0x400000, 0x200000, write=False)]
    # malformed entries
    for e in [NotifyEntry(0x10800, 0x200000, 0xFFF, SID, PERM_RW),      # misaligned
              NotifyEntry(0x10000, 0x200000, 0x17FF, SID, PERM_RW),     # not 2^n - 1
              NotifyEntry(0x10000, 0x200000, 0xFFF, SID, 4)]:           # permission
        r = vmm.notify([e])
        assert r.status == MALFORMED and r.batch() == EMPTY_BATCH, (e, r)
    r = vmm.request(NOTIFY, notify_payload([], count=0))
    assert r.status == MALFORMED
    # INVALIDATE is not for notifier sessions
    assert vmm.invalidate([wait_desc()]).status == BAD_STATE
    # reconnect: mappings kept, re-sending costs nothing
    vmm.close()
    daemon.wait_vmm_disconnected()
    with EventChannel(daemon.event) as ev:
        start_session(ev, mem, tables, flags=HELLO_FLAG_NOTIFIER)
        assert mapped(daemon) == [m(0x200000, 0x400000, 0x200000, write=False)]
        assert_batch(ev.notify([NotifyEntry(0x200000, 0x400000, 0x1FFFFF, SID, PERM_READ)]))
        assert_batch(ev.notify([NotifyEntry(0x200000, 0, 0x1FFFFF, SID, PERM_NONE)]), unmaps=1)
    daemon.wait_vmm_disconnected()
    assert mapped(daemon) == []


def test_notify_count_limit_message_doc_discrepancy(vmm, guest):
    mem, tables = guest
    start_session(vmm, mem, tables, flags=HELLO_FLAG_NOTIFIER)
    r = vmm.request(NOTIFY, notify_payload([], count=0))
    assert r.status == MALFORMED
    assert "32768" not in r.message, (
        "PROTOCOL.md §1.6 NOTIFY: count is '1 to 32,767 (the most that fit a 1 MiB "
        "payload)' (8 + 32·32768 = 1,048,584 > 1,048,576), but the daemon's MALFORMED "
        f"message says {r.message!r}")


# ---------------------------------------------------------------------------
# §1.6 batch result: failure records (the dry-run backend never fails a
# kernel call, so the decoder is checked against bytes laid out per the doc)
# ---------------------------------------------------------------------------

def test_batch_result_with_failure_records():
    reason1 = "VFIO_IOMMU_MAP_DMA: Cannot allocate memory (errno 12); raise RLIMIT_MEMLOCK"
    reason2 = ""
    body = struct.pack("<IiIIII", 2, -1, 3, 1, 0, 2)
    for sid, op, err, iova, size, reason in [(0x18, 1, 12, 0x10000, 0x1000, reason1),
                                             (0x20, 3, 0, 0, 1 << 48, reason2)]:
        rb = reason.encode()
        body += struct.pack("<HBBiQQII", sid, op, 0, err, iova, size, len(rb), 0) + rb
    message = "2 kernel calls failed".encode()
    payload = struct.pack("<II", 8, len(message)) + message + body
    r = decode_reply(0x8000_0007, 9, payload)
    assert (r.status, r.message) == (8, "2 kernel calls failed")
    b = r.batch()
    assert (b.waits, b.rejected_index, b.maps, b.unmaps, b.faults) == (2, -1, 3, 1, 0)
    assert b.failures == (
        FailureRecord(0x18, 1, 0, 12, 0x10000, 0x1000, reason1),
        FailureRecord(0x20, 3, 0, 0, 0, 1 << 48, reason2))
    assert FailureRecord.RECORD.size == 32 and BatchResult.FIXED.size == 24


# ---------------------------------------------------------------------------
# §2 control socket
# ---------------------------------------------------------------------------

def test_control_status(daemon):
    # CONFIG.md / PROTOCOL.md §2.1: both sockets mode 0660
    assert os.stat(daemon.control).st_mode & 0o777 == 0o660
    assert os.stat(daemon.event).st_mode & 0o777 == 0o660
    with daemon.ctl() as c:
        reply = c.raw({"execute": "status", "arguments": {}, "id": 7})
    assert reply["id"] == 7 and "error" not in reply
    st = reply["return"]
    assert st["name"] == NAME and st["backend"] == "dry-run"
    assert isinstance(st["version"], str) and st["version"]
    assert {"connected", "session", "notifier-mode", "root-table", "translation",
            "memory-regions", "memory-bytes"} <= set(st["vmm"])
    [dev] = [d for d in st["devices"] if d["guest"] == GUEST]
    assert dev["host"] == HOST
    for key in ("mappings", "mapped-bytes", "maps", "unmaps", "syncs"):
        assert isinstance(dev[key], int), key
    assert isinstance(dev["faults"], dict) and isinstance(dev["recent-faults"], list)


def test_control_mappings_and_replay(daemon, session):
    ev, mem, tables = session
    tables.map_4k(SID, 0xABC000, 0x7FF000, write=False)
    assert_batch(ev.invalidate([iotlb_inv_page(DID, 0xABC000), wait_desc()]), waits=1, maps=1)
    with daemon.ctl() as c:
        reply = c.raw({"execute": "mappings", "arguments": {"guest": GUEST}, "id": "m"})
        assert reply["id"] == "m"
        shadow = reply["return"]
        assert shadow["mappings"] == [{"iova": "0xabc000", "gpa": "0x7ff000",
                                       "size": "0x1000", "read": True, "write": False}]
        assert {"device", "domain", "levels", "mode", "mappings", "faults"} <= set(shadow)
        assert c.call("replay", guest=GUEST) == {"maps": 0, "unmaps": 0, "faults": 0,
                                                 "failures": []}
        assert c.call("replay", all=True) == {"maps": 0, "unmaps": 0, "faults": 0,
                                              "failures": []}
        # a change the guest did not invalidate is picked up by a replay
        tables.map_4k(SID, 0xABD000, 0x7FE000)
        assert c.call("replay", guest=GUEST) == {"maps": 1, "unmaps": 0, "faults": 0,
                                                 "failures": []}
        err = c.raw({"execute": "mappings", "id": 1})["error"]
        assert err["code"] == "missing-argument" and "guest" in err["message"]
        err = c.raw({"execute": "mappings", "arguments": {"guest": None}, "id": 1})["error"]
        assert err["code"] == "missing-argument"                  # null counts as absent
        err = c.raw({"execute": "mappings", "arguments": {"guest": 3}, "id": 1})["error"]
        assert err["code"] == "invalid-argument" and "guest" in err["message"]
        err = c.raw({"execute": "mappings", "arguments": {"guest": "00:1f.7"}, "id": 1})["error"]
        assert err["code"] == "not-attached"
        err = c.raw({"execute": "replay", "arguments": {"all": "yes"}, "id": 1})["error"]
        assert err["code"] == "invalid-argument" and "all" in err["message"]


def test_mappings_is_what_walk_prints(daemon, vmm, guest):
    mem, tables = guest
    fresh = "00:06.0"
    sid = parse_bdf(fresh)
    tables.set_context(sid, 9)
    tables.map_4k(sid, 0x1000, 0x250000)
    tables.map_2m(sid, 0x20_0000, 0x60_0000, write=False)
    with daemon.ctl() as c:
        a = c.call("attach", host="0000:06:00.0", guest=fresh)
        assert (a["guest"], a["host"], a["backend"], a["mappings"], a["device-fd"],
                a["already-attached"]) == (fresh, "0000:06:00.0", "dry-run", 0, False, False)
        try:
            start_session(vmm, mem, tables)
            assert daemon.mappings(fresh) == walk(mem, tables, fresh)
        finally:
            assert c.call("detach", guest=fresh) == {"guest": fresh, "unmapped": 2}


def test_mappings_faults_are_the_recent_history(daemon, vmm, guest):
    """PROTOCOL.md §2.3 `mappings`: `faults` is the device's most recent faults,
    gathered over every sync; `walk` shows those of its one walk."""
    mem, tables = guest
    fresh = "00:07.0"
    sid = parse_bdf(fresh)
    tables.set_context(sid, 11)
    tables.map_4k(sid, 0x1000, RAM + 0x1000)               # outside guest RAM: a fault
    with daemon.ctl() as c:
        c.call("attach", host="0000:07:00.0", guest=fresh)
        try:
            start_session(vmm, mem, tables)
            assert daemon.mappings(fresh) == walk(mem, tables, fresh)     # both list the fault
            tables.map_4k(sid, 0x1000, 0x260000)          # the guest fixes its entry
            assert_batch(vmm.invalidate([iotlb_inv_page(11, 0x1000), wait_desc()]),
                         waits=1, maps=1)
            assert c.call("replay", guest=fresh)["faults"] == 0
            shadow, walked = daemon.mappings(fresh), walk(mem, tables, fresh)
            assert walked["faults"] == []
            assert shadow["mappings"] == walked["mappings"]
            assert [f["reason"] for f in shadow["faults"]] == ["leaf-outside-ram"], shadow["faults"]
        finally:
            c.call("detach", guest=fresh)


def walk(mem: GuestMemory, tables: VTdTables, device: str) -> dict:
    out = subprocess.run(
        [CTL, "walk", "--memory", f"/proc/{os.getpid()}/fd/{mem.fd}",
         "--root-table", hexaddr(tables.root), "--device", device,
         "--cap", hexaddr(DEFAULT_CAP), "--ecap", hexaddr(DEFAULT_ECAP), "--json"],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_attach_detach_quota(daemon, vmm, guest):
    mem, tables = guest
    g = "00:04.0"
    sid = parse_bdf(g)
    tables.set_context(sid, 7)
    tables.map_4k(sid, 0x1000, 0x300000)
    tables.map_4k(sid, 0x2000, 0x301000)
    with daemon.ctl() as c:
        a = c.raw({"execute": "attach", "id": 1,
                   "arguments": {"host": "0000:02:00.0", "guest": g, "quota": 1}})
        assert a == {"id": 1, "return": {"guest": g, "host": "0000:02:00.0", "group": None,
                                         "backend": "dry-run", "mappings": 0,
                                         "device-fd": False, "already-attached": False, "vfio-user": None}}
        try:
            assert vmm.hello(DEFAULT_CAP, DEFAULT_ECAP).hello().devices == 2
            assert vmm.set_mem_table([mem.region()], [mem.fd]).status == OK
            assert vmm.set_root_table(tables.root).status == OK
            assert vmm.set_translation(True).status == OK
            assert vmm.ready().status == OK
            assert len(mapped(daemon, g)) == 1                        # quota: 1 mapping
            # the same host to the same guest again: not an error
            again, fd = c.attach(g, host="0000:02:00.0")
            assert fd is None and again["device-fd"] is False
            assert (again["already-attached"], again["guest"], again["host"]) == \
                (True, g, "0000:02:00.0")
            # the same host to another guest, another host to the same guest: errors
            err = c.raw({"execute": "attach", "id": 2,
                         "arguments": {"host": "0000:02:00.0", "guest": "00:05.0"}})["error"]
            assert err["code"] == "already-attached"
            err = c.raw({"execute": "attach", "id": 2,
                         "arguments": {"host": "0000:09:00.0", "guest": g}})["error"]
            assert err["code"] == "already-attached"
            err = c.raw({"execute": "attach", "id": 3, "arguments": {"guest": "00:05.0"}})
            assert err["error"]["code"] == "missing-argument"
        finally:
            assert c.call("detach", guest=g) == {"guest": g, "unmapped": 1}
        err = c.raw({"execute": "detach", "arguments": {"guest": g}, "id": 4})["error"]
        assert err["code"] == "not-attached"


def test_control_log_level(daemon):
    with daemon.ctl() as c:
        assert c.raw({"execute": "log-level", "arguments": {"level": "debug"}, "id": 1}) == \
            {"return": {"level": "debug"}, "id": 1}
        assert c.call("log-level") == {"level": "debug"}
        assert c.call("log-level", level=None) == {"level": "debug"}   # null = absent
        err = c.raw({"execute": "log-level", "arguments": {"level": "loud"}, "id": 2})
        assert err["error"]["code"] == "invalid-argument" and "level" in err["error"]["message"]
        err = c.raw({"execute": "log-level", "arguments": {"level": 3}, "id": 3})
        assert err["error"]["code"] == "invalid-argument" and "level" in err["error"]["message"]
        for level in ("trace", "notice", "warning", "error", "critical", "info"):
            assert c.call("log-level", level=level) == {"level": level}


def test_control_errors_and_id_echo(daemon):
    with daemon.ctl() as c:
        for rid in (7, "seven", [1, 2], {"k": None}, None, 1.5, True):
            reply = c.raw({"execute": "no-such-command", "id": rid})
            assert reply["id"] == rid and "id" in reply
            assert reply["error"]["code"] == "unknown-command" and reply["error"]["message"]
        assert "id" not in c.raw({"execute": "log-level"})
        # not JSON / not an object
        c.send_line(b"{not json")
        assert c.recv_line()["error"]["code"] == "parse-error"
        c.send_line(b"[1, 2]")
        assert c.recv_line()["error"]["code"] == "parse-error"
        # other top-level members and unknown argument names
        err = c.raw({"execute": "status", "extra": 1, "id": 1})["error"]
        assert err["code"] == "invalid-argument" and "extra" in err["message"]
        err = c.raw({"execute": "replay", "arguments": {"all": True, "bogus": 1}, "id": 1})["error"]
        assert err["code"] == "invalid-argument" and "bogus" in err["message"]
        err = c.raw({"execute": 5, "id": 1})["error"]
        assert err["code"] == "invalid-argument" and "execute" in err["message"]
        err = c.raw({"id": 1})["error"]
        assert err["code"] == "missing-argument"
        # connection still usable; blank lines ignored; replies in request order
        c.send_line(b"")
        c.send_line(b"   ")
        c.send_line(b'{"execute":"log-level","id":"a"}\n{"execute":"x","id":"b"}\n'
                    b'{"execute":"metrics","id":"c"}')
        r1, r2, r3 = c.recv_line(), c.recv_line(), c.recv_line()
        assert (r1["id"], r2["id"], r3["id"]) == ("a", "b", "c")
        assert "return" in r1 and r2["error"]["code"] == "unknown-command"
        assert "# TYPE " in r3["return"]["text"]


def test_control_line_limit(daemon):
    with daemon.ctl() as c:
        line = b'{"execute":"status","id":1}'
        c.send_line(line + b" " * (65_536 - len(line)))          # exactly the limit
        assert c.recv_line()["id"] == 1
    with daemon.ctl() as c:
        c.send_line(b" " * 65_537)
        assert c.recv_line()["error"]["code"] == "line-too-long"
        assert c.recv_line() is None                              # then closed


def test_peer_credentials(daemon):
    if os.geteuid() != 0:
        pytest.skip("needs root to connect as another uid")
    rd, wr = os.pipe()
    paths = (daemon.dir, daemon.event, daemon.control)
    modes = {p: os.stat(p).st_mode & 0o777 for p in paths}
    os.chmod(daemon.dir, 0o711)              # let uid 65534 reach the sockets at all
    os.chmod(daemon.event, 0o666)
    os.chmod(daemon.control, 0o666)
    try:
        pid = os.fork()
        if pid == 0:                          # child: uid/gid 65534, not allowed
            try:
                os.close(rd)
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
                result = {}
                with ControlClient(daemon.control) as c:
                    result["control"] = c.recv_line()
                    result["control-after"] = c.recv_line()
                with EventChannel(daemon.event) as ev:
                    result["event"] = ev.recv_frame()
                os.write(wr, json.dumps(result).encode())
            finally:
                os._exit(0)
        os.close(wr)
        data = b""
        while chunk := os.read(rd, 65536):
            data += chunk
        os.waitpid(pid, 0)
    finally:
        for p, mode in modes.items():
            os.chmod(p, mode)
    result = json.loads(data)
    assert result["control"]["error"]["code"] == "permission-denied"
    assert result["control-after"] is None
    assert result["event"] is None                           # closed without a reply


# ---------------------------------------------------------------------------
# §2.2 no-vmm (its own daemon: no VMM may have sent anything yet)
# ---------------------------------------------------------------------------

def test_replay_before_any_vmm_is_no_vmm():
    """PROTOCOL.md §2.2/§2.3: `no-vmm` when the command needs the guest IOMMU
    state and no VMM has sent it; `replay` before the first SET_MEM_TABLE."""
    with tempfile.TemporaryDirectory(prefix="vtdbridge-proto-nv-") as d:
        dm = Daemon(d, [f"{HOST}={GUEST}"])
        mem = GuestMemory(RAM)
        try:
            tables = VTdTables(mem, *TABLES)
            tables.set_context(SID, DID)
            with dm.ctl() as c:
                for arguments in ({"all": True}, {"guest": GUEST}):
                    err = c.raw({"execute": "replay", "arguments": arguments, "id": 1})
                    assert err["id"] == 1 and err["error"]["code"] == "no-vmm", err
                    assert err["error"]["message"]
                err = c.raw({"execute": "replay", "arguments": {"guest": "00:1f.0"}})["error"]
                assert err["code"] == "not-attached"                 # named before the VMM
                assert c.call("mappings", guest=GUEST)["mappings"] == []   # needs no VMM
                with EventChannel(dm.event) as ev:
                    assert ev.hello(DEFAULT_CAP, DEFAULT_ECAP).status == OK
                    err = c.raw({"execute": "replay", "arguments": {"all": True}})["error"]
                    assert err["code"] == "no-vmm"                   # HELLO alone is no state
                    assert ev.set_mem_table([mem.region()], [mem.fd]).status == OK
                    assert c.call("replay", all=True) == {"maps": 0, "unmaps": 0, "faults": 0,
                                                          "failures": []}
                dm.wait_vmm_disconnected()
                # that session ended before READY: it does not count (§1.5)
                err = c.raw({"execute": "replay", "arguments": {"all": True}})["error"]
                assert err["code"] == "no-vmm"
                with EventChannel(dm.event) as ev:
                    start_session(ev, mem, tables)
                dm.wait_vmm_disconnected()
                # what a completed session sent stays after it leaves: a replay walks it
                assert c.call("replay", guest=GUEST)["failures"] == []
        finally:
            mem.close()
            dm.stop()


# ---------------------------------------------------------------------------
# §2.3 shutdown (its own daemon)
# ---------------------------------------------------------------------------

def test_shutdown():
    with tempfile.TemporaryDirectory(prefix="vtdbridge-proto-sd-") as d:
        dm = Daemon(d, [f"{HOST}={GUEST}"])
        try:
            with EventChannel(dm.event) as ev:
                assert ev.hello(DEFAULT_CAP, DEFAULT_ECAP).status == OK
                with dm.ctl() as c:
                    assert c.raw({"execute": "shutdown", "id": 1}) == {"return": {}, "id": 1}
                assert dm.proc.wait(10) == 0
                assert ev.at_eof()
        finally:
            dm.stop()


# ---------------------------------------------------------------------------
# gaps a third-party client found (issue 13, section 5)
# ---------------------------------------------------------------------------

def test_invalidate_in_notifier_mode_is_bad_state(daemon, vmm, guest):
    """§1.6 INVALIDATE is for table mode; §1.7 lists it under BAD_STATE."""
    mem, tables = guest
    start_session(vmm, mem, tables, flags=HELLO_FLAG_NOTIFIER)
    tables.map_4k(SID, 0x10000, 0x200000)
    r = vmm.invalidate([iotlb_inv_page(DID, 0x10000), wait_desc()])
    assert r.status == BAD_STATE and "notifier" in r.message and r.batch() == EMPTY_BATCH, r
    assert mapped(daemon) == []
    assert vmm.ping().status == OK                                 # kept


def test_notifier_mode_maps_nothing_while_translation_is_disabled(daemon, vmm, guest):
    """§1.6 SET_TRANSLATION: nothing is mapped while translation is disabled, in
    notifier mode too; NOTIFY is BAD_STATE until SET_TRANSLATION 1."""
    mem, tables = guest
    assert vmm.hello(DEFAULT_CAP, DEFAULT_ECAP, flags=HELLO_FLAG_NOTIFIER).status == OK
    assert vmm.set_mem_table([mem.region()], [mem.fd]).status == OK
    assert vmm.set_translation(False).status == OK
    assert vmm.ready().status == OK
    entry = NotifyEntry(0x10000, 0x200000, 0xFFF, SID, PERM_RW)
    r = vmm.notify([entry])
    assert r.status == BAD_STATE and "translation" in r.message and r.batch() == EMPTY_BATCH, r
    assert mapped(daemon) == []
    assert vmm.set_translation(True).status == OK
    assert mapped(daemon) == []                     # the refused entry was not kept
    assert_batch(vmm.notify([entry]), maps=1)
    assert mapped(daemon) == [m(0x10000, 0x200000)]
    # disabling unmaps and forgets; enabling again maps nothing by itself
    assert vmm.set_translation(False).status == OK
    assert mapped(daemon) == []
    assert vmm.set_translation(True).status == OK
    assert mapped(daemon) == []


def test_mappings_mode_of_a_notifier_device(daemon, vmm, guest):
    """§2.3 mappings: a notifier-mode device has mode "notifier", no domain or levels."""
    mem, tables = guest
    tables.map_4k(SID, 0x10000, 0x200000)
    start_session(vmm, mem, tables)
    assert daemon.mappings()["mode"] == "translated"
    vmm.close()
    daemon.wait_vmm_disconnected()
    with EventChannel(daemon.event) as ev:
        start_session(ev, mem, tables, flags=HELLO_FLAG_NOTIFIER)
        assert_batch(ev.notify([NotifyEntry(0x30000, 0x300000, 0xFFF, SID, PERM_READ)]), maps=1)
        shadow = daemon.mappings()
        assert (shadow["mode"], shadow["domain"], shadow["levels"]) == ("notifier", None, None)
        assert shadow["mappings"] == [m(0x30000, 0x300000, write=False)]
        assert daemon.device_status()["mode"] == "notifier"
    daemon.wait_vmm_disconnected()


def test_control_clients_that_left_are_not_counted(daemon):
    """§2.1: only clients still connected count against control.max-clients (16)."""
    import socket
    for round_ in range(10):
        gone = []
        for _ in range(16):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(daemon.control)
            gone.append(s)
        for s in gone:
            s.close()
        with daemon.ctl() as c:
            reply = c.raw({"execute": "status", "id": round_})
        assert "return" in reply, f"round {round_}: the 17th client was refused: {reply}"
    # the limit still holds for clients that stay
    live = [daemon.ctl() for _ in range(16)]
    try:
        for c in live:
            assert "return" in c.raw({"execute": "log-level", "id": 1})
        with daemon.ctl() as c:
            err = c.recv_line()["error"]
            assert err["code"] == "internal" and "control.max-clients" in err["message"], err
    finally:
        for c in live:
            c.close()


def _device_counts(daemon) -> tuple[int, int, int]:
    d = daemon.device_status()
    return d["maps"], d["unmaps"], d["mappings"]


def test_unfinished_session_does_not_count(daemon, vmm, guest):
    """§1.5: a session that ends before READY is dropped; the next READY compares
    against the last completed session and unmaps nothing."""
    mem, tables = guest
    for i in range(17):
        tables.map_4k(SID, 0x100000 + i * 0x1000, 0x200000 + i * 0x1000)
    start_session(vmm, mem, tables)
    assert len(mapped(daemon)) == 17
    vmm.close()
    daemon.wait_vmm_disconnected()
    before = _device_counts(daemon)
    state = daemon.vmm_status()
    other = GuestMemory(RAM // 2)
    try:
        with EventChannel(daemon.event) as ev:                    # loading, then gone
            assert ev.hello(DEFAULT_CAP, DEFAULT_ECAP, flags=HELLO_FLAG_NOTIFIER).status == OK
            assert ev.set_mem_table([other.region()], [other.fd]).status == OK
            assert ev.set_root_table(0).status == OK
            assert ev.set_translation(False).status == OK
            assert daemon.vmm_status()["session"] == "loading"
        daemon.wait_vmm_disconnected()
    finally:
        other.close()
    after = daemon.vmm_status()
    for key in ("notifier-mode", "root-table", "translation", "memory-regions", "memory-bytes"):
        assert after[key] == state[key], (key, after[key], state[key])
    assert _device_counts(daemon) == before
    assert daemon.mappings()["mode"] == "translated"
    # the next VMM sends its full state again: READY makes no kernel call
    with EventChannel(daemon.event) as ev:
        start_session(ev, mem, tables)
        assert _device_counts(daemon) == before
    daemon.wait_vmm_disconnected()
    # and one that sends only HELLO and READY gets the completed state too
    with EventChannel(daemon.event) as ev:
        assert ev.hello(DEFAULT_CAP, DEFAULT_ECAP).status == OK
        assert ev.set_root_table(0).status == OK
    daemon.wait_vmm_disconnected()
    with EventChannel(daemon.event) as ev:
        assert ev.hello(DEFAULT_CAP, DEFAULT_ECAP).status == OK
        assert ev.ready().status == OK
        assert _device_counts(daemon) == before
        # clean up for the next test: the guest unmaps all
        assert ev.set_root_table(0).status == OK
    daemon.wait_vmm_disconnected()


def test_switching_from_table_to_notifier_mode_unmaps_at_ready(daemon, vmm, guest):
    """§1.5 switching mode: the mappings of table mode are not carried into notifier
    mode; READY unmaps them and NOTIFY maps them again."""
    mem, tables = guest
    tables.map_4k(SID, 0x10000, 0x200000)
    tables.map_4k(SID, 0x11000, 0x201000)
    start_session(vmm, mem, tables)
    assert len(mapped(daemon)) == 2
    vmm.close()
    daemon.wait_vmm_disconnected()
    with EventChannel(daemon.event) as ev:
        start_session(ev, mem, tables, flags=HELLO_FLAG_NOTIFIER, ready=False)
        assert len(mapped(daemon)) == 2                  # loading: nothing changed yet
        assert ev.ready().status == OK
        assert mapped(daemon) == []
        assert_batch(ev.notify([NotifyEntry(0x10000, 0x200000, 0xFFF, SID, PERM_RW),
                                NotifyEntry(0x11000, 0x201000, 0xFFF, SID, PERM_RW)]), maps=2)
        assert mapped(daemon) == [m(0x10000, 0x200000), m(0x11000, 0x201000)]
    daemon.wait_vmm_disconnected()
    # back to table mode: the tables confirm both mappings, so nothing moves
    before = _device_counts(daemon)
    with EventChannel(daemon.event) as ev:
        start_session(ev, mem, tables)
        assert _device_counts(daemon) == before
        assert ev.set_root_table(0).status == OK
    daemon.wait_vmm_disconnected()


def test_error_precedence(vmm, guest):
    """§1.7: framing > type > descriptor count > payload > shutdown > state > execution."""
    mem, _ = guest
    short = GuestMemory(0x1000)
    try:
        # before HELLO: a file too short needs the file itself (execution): BAD_STATE
        r = vmm.set_mem_table([Region(0, 0x2000)], [short.fd])
        assert r.status == BAD_STATE, r
        # ...but the region rules are payload checks: MEMORY before the state
        r = vmm.set_mem_table([Region(0x800, 0x1000)], [short.fd])
        assert r.status == MEMORY, r
        # ...and a descriptor count that does not match the regions: FDS
        r = vmm.request(SET_MEM_TABLE, mem_table_payload([Region(0x800, 0x1000)]))
        assert r.status == FDS, r
        # descriptors on a frame that takes none, with a bad payload too: FDS
        r = vmm.request(PING, b"x", fds=[short.fd])
        assert r.status == FDS, r
        # an unknown type wins over descriptors
        r = vmm.request(0x42, b"", fds=[short.fd])
        assert r.status == UNKNOWN_TYPE, r
        # a malformed INVALIDATE is MALFORMED before HELLO, not BAD_STATE
        r = vmm.request(INVALIDATE, invalidate_payload([], count=0))
        assert r.status == MALFORMED and r.batch() == EMPTY_BATCH, r
        # HELLO: the version is checked before the flags
        r = vmm.hello(DEFAULT_CAP, DEFAULT_ECAP, version=2, flags=0b10)
        assert r.status == VERSION, r
        # layout before capability: bad flags with CM=0
        r = vmm.hello(DEFAULT_CAP & ~CAP_CM, DEFAULT_ECAP, flags=0b10)
        assert r.status == MALFORMED, r
        assert vmm.hello(DEFAULT_CAP, DEFAULT_ECAP).status == OK
        # loading, table mode: a malformed NOTIFY is MALFORMED, a good one BAD_STATE
        r = vmm.notify([NotifyEntry(0x10800, 0x200000, 0xFFF, SID, PERM_RW)])
        assert r.status == MALFORMED, r
        r = vmm.notify([NotifyEntry(0x10000, 0x200000, 0xFFF, SID, PERM_RW)])
        assert r.status == BAD_STATE, r
        # in a session, the short file is refused by its size: MEMORY
        r = vmm.set_mem_table([Region(0, 0x2000)], [short.fd])
        assert r.status == MEMORY and "0x2000" in r.message, r
    finally:
        short.close()


def test_reply_encodings_detach_and_stages(daemon, vmm, guest):
    """§2.3: addresses and sizes are "0x…" strings, counts and byte totals numbers;
    detach's `unmapped` counts mappings; `stages` counts the event channel's time."""
    mem, tables = guest
    g = "00:08.0"
    sid = parse_bdf(g)
    tables.set_context(sid, 13)
    tables.map_4k(sid, 0x1000, 0x300000)
    tables.map_4k(sid, 0x2000, 0x301000)
    tables.map_2m(sid, 0x200000, 0x400000)
    stages0 = daemon.status()["stages"]
    with daemon.ctl() as c:
        c.call("attach", host="0000:08:00.0", guest=g)
        try:
            start_session(vmm, mem, tables)                # 5 requests
            st = daemon.status()
            stages1 = st["stages"]
            assert set(stages1) == {"requests", "receive-ns", "walk-ns", "ioctl-ns", "ack-ns"}
            assert all(type(v) is int and v >= 0 for v in stages1.values()), stages1
            assert stages1["requests"] - stages0["requests"] == 5
            assert all(stages1[k] >= stages0[k] for k in stages1)
            [dev] = [d for d in st["devices"] if d["guest"] == g]
            assert dev["mapped-bytes"] == 0x202000 and type(dev["mapped-bytes"]) is int
            assert type(st["vmm"]["memory-bytes"]) is int
            assert st["vmm"]["root-table"] == "0x1000"
            shadow = daemon.mappings(g)["mappings"]
            assert [e["size"] for e in shadow] == ["0x1000", "0x1000", "0x200000"]
        finally:
            reply = c.call("detach", guest=g)
    # `unmapped` counts the three mappings the device held, not kernel calls
    assert reply == {"guest": g, "unmapped": 3}
    with daemon.ctl() as c:
        text = c.call("metrics")["text"]
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert families and all(f.startswith("vtdbridge_") for f in families), families
    assert {"vtdbridge_maps_total", "vtdbridge_unmaps_total"} <= set(families)


def _memfd_with(size: int, seals: int = 0) -> int:
    import fcntl
    fd = os.memfd_create("sealed-guest-ram", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    if seals:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


def test_set_mem_table_descriptor_kinds(session):
    """§1.6 SET_MEM_TABLE: any descriptor mmap(MAP_SHARED, read/write) accepts; seals
    not required; what mmap refuses is MEMORY."""
    import fcntl
    ev, mem, _ = session
    region = [Region(0, 0x100000)]
    # a tmpfs file (/dev/shm), unsealable
    fd = os.open("/dev/shm", os.O_RDWR | os.O_TMPFILE, 0o600)
    try:
        os.ftruncate(fd, 0x100000)
        assert ev.set_mem_table(region, [fd]).status == OK
    finally:
        os.close(fd)
    # a memfd sealed against shrinking and growing: accepted
    fd = _memfd_with(0x100000, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    try:
        assert ev.set_mem_table(region, [fd]).status == OK
    finally:
        os.close(fd)
    # refused with MEMORY: a pipe (mmap: ENODEV), a read-only descriptor (EACCES),
    # a memfd sealed against writing (EPERM)
    rd, wr = os.pipe()
    ro = os.open(f"/proc/self/fd/{mem.fd}", os.O_RDONLY)
    sealed = _memfd_with(0x100000, fcntl.F_SEAL_WRITE)
    try:
        for fd in (rd, ro, sealed):
            r = ev.set_mem_table(region, [fd])
            assert r.status == MEMORY and r.message, (fd, r)
    finally:
        for fd in (rd, wr, ro, sealed):
            os.close(fd)
    # the table in force is the last accepted one; put the guest's back
    assert ev.set_mem_table([mem.region()], [mem.fd]).status == OK


def test_shrunk_memory_is_memory_lost(daemon, vmm):
    """§1.6 SET_MEM_TABLE / §1.7 MEMORY_LOST: a file shrunk under the daemon costs the
    region, not the daemon."""
    ram = GuestMemory(RAM)
    tables = VTdTables(ram, *TABLES)
    tables.set_context(SID, DID)
    tables.map_4k(SID, 0x10000, 0x200000)
    try:
        start_session(vmm, ram, tables)
        assert mapped(daemon) == [m(0x10000, 0x200000)]
        ram.mem.close()                                 # never touch it again here
        os.ftruncate(ram.fd, 0)
        r = vmm.invalidate([iotlb_inv_domain(DID), wait_desc()])
        assert r.status == MEMORY_LOST and "SET_MEM_TABLE" in r.message, r
        assert r.batch().waits == 1
        assert mapped(daemon) == []
        lost = daemon.vmm_status()["lost-memory-regions"]
        assert [(x["gpa"], x["size"]) for x in lost] == [("0x0", hexaddr(RAM))]
        assert vmm.ping().status == OK
        # a new table brings guest RAM back
        os.ftruncate(ram.fd, RAM)
        assert vmm.set_mem_table([ram.region()], [ram.fd]).status == OK
        assert daemon.vmm_status()["lost-memory-regions"] == []
    finally:
        os.close(ram.fd)


def test_batches_cut_at_each_wait(daemon, session):
    """§1.6 INVALIDATE: a VMM cuts its batches after each wait descriptor (Linux
    submits one invalidation plus one wait per call); each reply completes its wait."""
    ev, mem, tables = session
    tables.map_4k(SID, 0x20000, 0x300000)
    tables.map_4k(SID, 0x21000, 0x301000)
    # the guest's queue: (inv, wait), (inv, wait) -- sent as two pipelined requests
    t1 = ev.send(INVALIDATE, invalidate_payload([iotlb_inv_page(DID, 0x20000), wait_desc()]))
    t2 = ev.send(INVALIDATE, invalidate_payload([iotlb_inv_page(DID, 0x21000), wait_desc()]))
    r1, r2 = ev.recv_reply(), ev.recv_reply()
    assert (r1.tag, r2.tag) == (t1, t2)
    assert_batch(r1, waits=1, maps=1)
    assert_batch(r2, waits=1, maps=1)
    assert mapped(daemon) == [m(0x20000, 0x300000), m(0x21000, 0x301000)]
