#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into fuzz/corpus/<target>/.

Seeds come from the project's real material: the datagrams captured from
the 6.1 kernel (ipvs-netlink/tests/fixtures/*.hex), the command lines and
tables of the differential suite (vm-tests/tests/differential.rs), rows
of /proc/net/ip_vs_conn as the 6.1 kernel prints them, and the Kubernetes
dumps of the --from-k8s tests (ipvs-k8s/tests/dumps/*.json, whole and cut
into one Service with its slices) with hand-made edge cases. Run it again
after the fixtures, the differential suite or the dumps change
(`make-seeds.py [netlink|cli|conn|k8s]...` writes only those groups); AFL
keeps what it adds in its own output directory, not here.
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
        if name not in FIXTURE_OP:
            continue  # no handle operation of the target sends this request
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


def svc(name, spec, ns="default", labels=None, status=None):
    meta = {"name": name, "namespace": ns}
    if labels:
        meta["labels"] = labels
    item = {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}
    if status is not None:
        item["status"] = status
    return item


def eps(name, service, family, endpoints, ports, ns="default", labels=None):
    meta = {"name": name, "namespace": ns,
            "labels": {"kubernetes.io/service-name": service, **(labels or {})}}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": meta, "addressType": family, "endpoints": endpoints,
            "ports": ports}


def ep(addr, ready=True, node=None, serving=None, terminating=None):
    cond = {"ready": ready}
    if serving is not None:
        cond["serving"] = serving
    if terminating is not None:
        cond["terminating"] = terminating
    e = {"addresses": addr if isinstance(addr, list) else [addr], "conditions": cond}
    if node:
        e["nodeName"] = node
    return e


def k8s_list(*items):
    return {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": list(items)}


HTTP = [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "web"}]
SLICE_HTTP = [{"name": "http", "port": 8080, "protocol": "TCP"}]

# Hand-made edge cases of the reader and the mapping (the node of the
# target is 192.168.0.10 / fd00::10, named node-a, scheduler rr).
K8S_EDGES = {
    "empty-object": {},
    "items-null": {"kind": "List", "items": None},
    "items-number": {"kind": "List", "items": 5},
    "kind-number": {"kind": 5},
    "item-no-kind": k8s_list({"metadata": {"name": "x"}}),
    "item-other-kind": k8s_list({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
    "single-service": svc("one", {"clusterIP": "10.96.0.5", "ports": HTTP}),
    "no-name": k8s_list(svc("", {"clusterIP": "10.96.0.5", "ports": HTTP})),
    "no-spec": k8s_list({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "n"}}),
    "bad-cluster-ip": k8s_list(svc("bad", {"clusterIP": "10.96.0.500", "ports": HTTP})),
    "headless-externalname": k8s_list(
        svc("h", {"clusterIP": "None", "ports": HTTP}),
        svc("x", {"type": "ExternalName", "externalName": "example.org"}),
        svc("o", {"clusterIP": "10.96.0.7", "ports": HTTP},
            labels={"service.kubernetes.io/service-proxy-name": "other"})),
    "ports-out-of-range": k8s_list(svc("p", {"clusterIP": "10.96.0.8", "type": "NodePort",
        "ports": [{"port": 70000, "protocol": "TCP"}, {"port": 80, "nodePort": -1},
                  {"port": 0, "protocol": "ICMP"}]})),
    "affinity": k8s_list(
        svc("a", {"clusterIP": "10.96.0.9", "ports": HTTP, "sessionAffinity": "ClientIP",
                  "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 86401}}}),
        svc("b", {"clusterIP": "10.96.0.10", "ports": HTTP, "sessionAffinity": "ClientIP"}),
        svc("c", {"clusterIP": "10.96.0.11", "ports": HTTP, "sessionAffinity": "Sticky"})),
    "dual-stack-everything": k8s_list(
        svc("d", {"clusterIP": "10.96.0.12", "clusterIPs": ["10.96.0.12", "fd00:96::12"],
                  "type": "LoadBalancer", "externalIPs": ["203.0.113.1", "2001:db8::1"],
                  "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Local",
                  "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080},
                            {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
                            {"name": "sig", "port": 9, "protocol": "SCTP"}]},
            status={"loadBalancer": {"ingress": [{"ip": "203.0.113.1"},
                                                 {"ip": "198.51.100.2", "ipMode": "Proxy"},
                                                 {"hostname": "lb.example.org"},
                                                 {"ip": "2001:db8::2", "ipMode": "VIP"}]}}),
        eps("d-4", "d", "IPv4", [ep("10.0.0.1", node="node-a"), ep("10.0.0.2", ready=False,
            serving=True, terminating=True, node="node-b"), ep(["10.0.0.3", "10.0.0.4"])],
            [{"name": "http", "port": 8080, "protocol": "TCP"},
             {"name": "dns", "port": 5353, "protocol": "UDP"}]),
        eps("d-6", "d", "IPv6", [ep("fd00::1", node="node-a"), ep("fd00::1")],
            [{"name": "http", "port": 8080, "protocol": "TCP"}]),
        eps("d-f", "d", "FQDN", [ep("a.example.org")], SLICE_HTTP)),
    "lb-no-node-ports": k8s_list(svc("l", {"clusterIP": "10.96.0.13", "type": "LoadBalancer",
        "allocateLoadBalancerNodePorts": False,
        "ports": [{"name": "http", "port": 80, "nodePort": 30081}]})),
    "two-want-one-address": k8s_list(
        svc("e1", {"clusterIP": "10.96.0.14", "externalIPs": ["203.0.113.9"], "ports": HTTP}),
        svc("e2", {"clusterIP": "10.96.0.15", "externalIPs": ["203.0.113.9"], "ports": HTTP}),
        svc("e3", {"clusterIP": "10.96.0.14", "ports": HTTP})),
    "only-terminating": k8s_list(
        svc("t", {"clusterIP": "10.96.0.16", "ports": HTTP}),
        eps("t-1", "t", "IPv4", [ep("10.0.1.1", ready=False, serving=True, terminating=True),
                                  ep("10.0.1.2", ready=False, serving=False)], SLICE_HTTP),
        eps("t-2", "t", "IPv4", [ep("10.0.1.1", ready=False, serving=True, terminating=True)],
            SLICE_HTTP, labels={"service.kubernetes.io/headless": ""})),
    "slice-wrong-family-address": k8s_list(
        svc("w", {"clusterIP": "10.96.0.17", "ports": HTTP}),
        eps("w-1", "w", "IPv4", [ep("fd00::5"), ep("not-an-ip"), ep([])],
            [{"name": "http", "port": 99999, "protocol": "TCP"}, {"protocol": "UDP"}])),
}
# Texts JSON's structure alone does not give.
K8S_TEXTS = {
    "deep-nesting": "[" * 200 + "]" * 200,
    "big-numbers": '{"kind":"List","items":[{"kind":"Service","metadata":{"name":"n"},'
                   '"spec":{"clusterIP":"10.96.0.1","ports":[{"port":1e400}]}}]}',
    "unicode-names": r'{"kind":"Service","metadata":{"name":"\u00e9\ud83d\ude00","namespace":"\u0000"},'
                     r'"spec":{"clusterIP":"10.96.0.1","ports":[{"port":80,"name":"\u2028"}]}}',
    "duplicate-keys": '{"kind":"Service","kind":"Pod","metadata":{"name":"a","name":"b"}}',
}


def k8s_seeds():
    import json
    compact = lambda v: json.dumps(v, separators=(",", ":")).encode()
    src = os.path.join(ROOT, "ipvsadm-rs", "tests", "k8s")
    for name in sorted(os.listdir(src)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(src, name)) as f:
            dump = json.load(f)
        base = name[:-len(".json")]
        write("k8s_json", f"test-{base}", compact(dump))
        # One Service with its slices per seed: small inputs, one path each.
        items = dump.get("items", [])
        for item in items:
            if item.get("kind") != "Service":
                continue
            meta = item.get("metadata", {})
            ns, svc_name = meta.get("namespace", "default"), meta.get("name")
            slices = [i for i in items if i.get("kind") == "EndpointSlice"
                      and i.get("metadata", {}).get("namespace", "default") == ns
                      and i.get("metadata", {}).get("labels", {})
                          .get("kubernetes.io/service-name") == svc_name]
            write("k8s_json", f"test-{base}-{ns}-{svc_name}", compact(k8s_list(item, *slices)))
    for name, value in K8S_EDGES.items():
        write("k8s_json", f"edge-{name}", compact(value))
    for name, text in K8S_TEXTS.items():
        write("k8s_json", f"edge-{name}", text.encode())


GROUPS = {"netlink": netlink_seeds, "cli": cli_seeds, "conn": conn_seeds,
          "k8s": k8s_seeds}


if __name__ == "__main__":
    # make-seeds.py [group...]: only those groups (netlink, cli, conn, k8s).
    for group in sys.argv[1:] or GROUPS:
        GROUPS[group]()
    for t in sorted(os.listdir(OUT)):
        print(t, len(os.listdir(os.path.join(OUT, t))), file=sys.stderr)
