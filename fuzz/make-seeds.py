#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/.

Seeds come from the project's real material: the datagrams captured from
the 6.1 kernel (ipvs-netlink/tests/fixtures/*.hex), the command lines and
tables of the differential suite (vm-tests/tests/differential.rs) and rows
of /proc/net/ip_vs_conn as the 6.1 kernel prints them. Run it again after
the fixtures or the differential suite change; AFL keeps what it adds in
its own output directory, not here.
"""
import os
import re
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "corpus")
PORT_ID = 0x00424242  # tests/src/lib.rs PORT_ID
FIRST_OP_SEQ = 2  # tests/src/fuzz.rs FIRST_OP_SEQ
# tests/src/fuzz.rs HANDLE_OPS
OPS = ["info", "services", "service", "destinations", "timeouts", "daemons",
       "add_service", "add_destination", "flush", "zero"]
FIXTURE_OP = {
    "get_info": "info", "get_service_dump": "services",
    "get_service_doit": "service", "get_service_esrch": "service",
    "get_dest_dump": "destinations", "get_dest_dump_v6": "destinations",
    "get_dest_dump_missing": "destinations", "new_service": "add_service",
    "error_eexist": "add_service", "set_service": "add_service",
    "del_service": "add_service", "new_dest": "add_destination",
    "set_dest": "add_destination", "del_dest": "add_destination",
    "flush": "flush",
}


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def messages(datagram):
    at = 0
    while at + 4 <= len(datagram):
        (length,) = struct.unpack_from("=I", datagram, at)
        if length < 16:
            return
        yield at, datagram[at:at + length]
        at += (length + 3) & ~3


def readdressed(datagram):
    """The datagram with every message's sequence number and port set to
    what the fuzzed handle expects."""
    out = bytearray(datagram)
    for at, _ in messages(datagram):
        struct.pack_into("=II", out, at + 8, FIRST_OP_SEQ, PORT_ID)
    return bytes(out)


def fixtures():
    d = os.path.join(ROOT, "ipvs-netlink", "tests", "fixtures")
    for name in sorted(os.listdir(d)):
        if name.endswith(".hex"):
            with open(os.path.join(d, name)) as f:
                lines = [line.split() for line in f if line.strip()]
            yield name[:-4], [(mark, bytes.fromhex(h)) for mark, h in lines]


def netlink_seeds():
    for name, datagrams in fixtures():
        n = 0
        for mark, datagram in datagrams:
            for _, msg in messages(datagram):
                kind = "req" if mark == ">" else "reply"
                write("netlink_packet", f"{name}-{kind}-{n}", msg)
                n += 1
        replies = [readdressed(d) for mark, d in datagrams if mark == "<"]
        op = OPS.index(FIXTURE_OP[name])
        data = bytes([op]) + b"".join(struct.pack("<H", len(r)) + r for r in replies)
        write("handle_reply", name, data)


def differential():
    with open(os.path.join(ROOT, "vm-tests", "tests", "differential.rs")) as f:
        text = f.read()
    return re.findall(r'"((?:[^"\\]|\\.)*)"', text)


def cli_seeds():
    strings = [s for s in differential() if s.startswith("-")]
    lines = sorted(set(strings))
    for i, line in enumerate(lines):
        write("argv", f"differential-{i:03}", "\0".join(line.split()).encode())
    # Restore files: the differential suite's tables as rules, and every
    # command line as a one-line file, with and without `ipvsadm`.
    text = open(os.path.join(ROOT, "vm-tests", "tests", "differential.rs")).read()
    for table in ("SEED", "RICH"):
        m = re.search(rf"const {table}: &\[&str\] = &\[(.*?)\];", text, re.S)
        rules = re.findall(r'"([^"]*)"', m.group(1))
        write("restore", f"table-{table.lower()}", ("\n".join(rules) + "\n").encode())
        write("restore", f"table-{table.lower()}-prefixed",
              "".join(f"ipvsadm {r}\r\n" for r in rules).encode())
    write("restore", "mixed", b"-C\n-A -t 10.0.0.1:80 -s rr\n-Q\n\t \n-a -t 10.0.0.1:80 -r 10.0.0.2 -m  \n-L -n")
    for i, line in enumerate(lines[::4]):
        write("restore", f"line-{i:03}", (line + "\n").encode())


CONN_ROWS = [
    "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData",
    "TCP 0A000001 9C40 0A616161 0050 0AF40127 0050 ESTABLISHED     899",
    "UDP 0A000001 13C4 0A000002 13C4 0A000003 13C4 UDP             179 sip abc",
    "TCP 2001:0db8:0000:0000:0000:0000:0000:0001 D431 2001:0db8:0000:0000:0000:0000:0000:0002 01BB 2001:0db8:0000:0000:0000:0000:0000:0010 01BB SYN_RECV         59",
    "SCTP 0A000001 0F1C 0A000003 0F1C 0A000004 0F1C ESTABLISHED     899",
    "IP  0A000001 0000 0A000002 0000 0A000003 0000 NONE            60",
]


def conn_seeds():
    for i, row in enumerate(CONN_ROWS):
        write("conn_line", f"row-{i}", b"\0" + row.encode() + b"\n")
        write("conn_line", f"row-{i}-pe", b"\1" + row.encode() + b"\n")
    write("conn_line", "all", b"\1" + "\n".join(CONN_ROWS).encode())


if __name__ == "__main__":
    netlink_seeds()
    cli_seeds()
    conn_seeds()
    for t in sorted(os.listdir(OUT)):
        print(t, len(os.listdir(os.path.join(OUT, t))), file=sys.stderr)
