#!/usr/bin/env python3
"""A deliberately misbehaving BGP peer for tests/malformed_peer.rs.

Connects to NODE:179 from ME as AS 65000 and, one phase per line read on stdin, sends
good and malformed messages; prints one result line per phase on stdout.
"""
import socket
import struct
import sys

NODE, ME = sys.argv[1], sys.argv[2]


def msg(t, body, marker=b"\xff" * 16):
    return marker + struct.pack("!HB", 19 + len(body), t) + body


def open_msg(asn=65000, hold=90):
    caps = bytes([65, 4]) + struct.pack("!I", asn) + bytes([1, 4, 0, 1, 0, 1])
    params = bytes([2, len(caps)]) + caps
    my_as = asn if asn < 65536 else 23456
    body = struct.pack("!BHH4sB", 4, my_as, hold, socket.inet_aton(ME), len(params)) + params
    return msg(1, body)


def update(prefixes, origin=0, next_hop=None, extra=b""):
    attrs = bytes([0x40, 1, 1, origin])
    attrs += bytes([0x40, 2, 6, 2, 1]) + struct.pack("!I", 65000)
    attrs += bytes([0x40, 3, 4]) + socket.inet_aton(next_hop or ME)
    attrs += extra
    nlri = b""
    for p in prefixes:
        addr, plen = p.split("/")
        plen = int(plen)
        nlri += bytes([plen]) + socket.inet_aton(addr)[: (plen + 7) // 8]
    return msg(2, struct.pack("!H", 0) + struct.pack("!H", len(attrs)) + attrs + nlri)


def read_msg(s):
    hdr = b""
    while len(hdr) < 19:
        chunk = s.recv(19 - len(hdr))
        if not chunk:
            raise EOFError("connection closed")
        hdr += chunk
    length, typ = struct.unpack("!HB", hdr[16:19])
    body = b""
    while len(body) < length - 19:
        chunk = s.recv(length - 19 - len(body))
        if not chunk:
            raise EOFError("connection closed")
        body += chunk
    return typ, body


def until_notification(s):
    while True:
        typ, body = read_msg(s)
        if typ == 3:
            return "NOTIFICATION %d %d" % (body[0], body[1])


def connect():
    s = socket.create_connection((NODE, 179), timeout=10, source_address=(ME, 0))
    return s


def establish():
    s = connect()
    s.sendall(open_msg())
    typ, _ = read_msg(s)
    assert typ == 1, typ
    s.sendall(msg(4, b""))
    while read_msg(s)[0] != 4:
        pass
    return s


def step(name):
    line = sys.stdin.readline()
    if not line:
        sys.exit(0)
    return line.strip()


def say(text):
    print(text, flush=True)


try:
    step("connect")
    s = establish()
    say("ESTABLISHED")

    step("good update")
    s.sendall(update(["192.0.2.0/24", "198.51.100.0/24"]))
    say("SENT good")

    step("bad origin")  # RFC 7606: treat-as-withdraw, the session stays up
    s.sendall(update(["192.0.2.0/24"], origin=7))
    s.settimeout(1.5)
    try:
        typ, body = read_msg(s)
        say("GOT %d %s" % (typ, body.hex()) if typ == 3 else "STILL UP")
    except socket.timeout:
        say("STILL UP")
    s.settimeout(10)

    step("own next hop")  # RFC 4271 §6.3: a NEXT_HOP of the receiver's own is ignored
    s.sendall(update(["203.0.113.0/24"], next_hop=NODE))
    say("SENT own next hop")

    # RFC 7606 §7.10: a CLUSTER_LIST (of a bad length, too) from an external peer is
    # discarded; the route is taken
    step("ebgp cluster list")
    s.sendall(update(["203.0.113.128/25"], extra=bytes([0x80, 10, 5, 1, 2, 3, 4, 5])))
    say("SENT ebgp cluster list")

    step("bad marker")  # RFC 4271 §6.1: Connection Not Synchronized
    s.sendall(msg(4, b"", marker=b"\x00" * 16))
    say(until_notification(s))
    s.close()

    step("hold time 1")  # RFC 4271 §6.2: Unacceptable Hold Time
    s = connect()
    s.sendall(open_msg(hold=1))
    say(until_notification(s))
    s.close()

    step("wrong AS")  # Bad Peer AS
    s = connect()
    s.sendall(open_msg(asn=65001))
    say(until_notification(s))
    s.close()

    step("bad length")  # header error: KEEPALIVE with length 20
    s = establish()
    s.sendall(b"\xff" * 16 + struct.pack("!HB", 20, 4) + b"\x00")
    say(until_notification(s))
    s.close()

    # RFC 7606 §7.11: IPv4 NLRI in MP_REACH_NLRI with a 16-octet next hop (no extended
    # next hop capability): the NLRI cannot be located: session reset, UPDATE error 3/9
    step("mp reach v6 next hop")
    s = establish()
    mp = struct.pack("!HBB", 1, 1, 16) + socket.inet_pton(socket.AF_INET6, "fd00::2") + b"\x00"
    mp += bytes([24, 192, 0, 2])
    attrs = bytes([0x40, 1, 1, 0]) + bytes([0x40, 2, 6, 2, 1]) + struct.pack("!I", 65000)
    attrs += bytes([0x80, 14, len(mp)]) + mp
    s.sendall(msg(2, struct.pack("!H", 0) + struct.pack("!H", len(attrs)) + attrs))
    say(until_notification(s))
    s.close()
except Exception as e:  # noqa: BLE001 - report anything to the test
    say("ERROR %s: %s" % (type(e).__name__, e))
