#!/usr/bin/env python3
"""Capture the BGP messages real routers (BIRD 2, FRR, GoBGP) send, for codec tests.

For each router this script:
  1. creates two network namespaces joined by a veth pair
     (capture side 10.77.0.1/24 + fd77::1/64, router side 10.77.0.2/24 + fd77::2/64);
  2. runs a minimal passive BGP listener in the capture namespace (this same script with
     --listen) that answers the router's OPEN with its own (AS 64512, 4-octet AS,
     multiprotocol IPv4 + IPv6 unicast, route refresh) and KEEPALIVEs, and records every
     message the router sends;
  3. starts the router as AS 65000 with one IPv4 session (to 10.77.0.1) and one IPv6 session
     (to fd77::1), exporting a few prefixes tagged with communities, a large community, an
     extended community (route target) and a MED;
  4. records for --duration seconds after both sessions are up, then stops the router (the
     NOTIFICATION it sends on the way down is recorded too), stops the listener and deletes
     the namespaces;
  5. writes each message to <out>/<router>-<n>-<type>.hex: a comment line
     "# <router> <version> <description>", then the message as lowercase hex.
     A router's old files are replaced only after a complete capture.

Usage (as root): scripts/capture-peer-messages.py --router bird|frr|gobgp|all
Python 3 standard library only. The root network namespace is never touched.
"""

import argparse
import glob
import json
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.normpath(os.path.join(HERE, "..", "bgp", "tests", "data"))

CAP_V4, RTR_V4 = "10.77.0.1", "10.77.0.2"
CAP_V6, RTR_V6 = "fd77::1", "fd77::2"
CAP_AS, RTR_AS = 64512, 65000

MSG_NAMES = {1: "open", 2: "update", 3: "notification", 4: "keepalive", 5: "route-refresh"}

# Prefixes each router originates (bgp/tests/captured.rs checks for exactly these).
BIRD_V4 = ["10.78.1.0/24", "10.78.2.0/24", "10.78.3.128/25"]
BIRD_V6 = ["fd78:1::/64", "fd78:2::/48", "fd78:3::/56"]
FRR_V4 = ["10.79.1.0/24", "10.79.2.0/24", "10.79.3.0/25"]
FRR_V6 = ["fd79:1::/64", "fd79:2::/48", "fd79:3::/56"]
GOBGP_V4 = ["10.80.1.0/24", "10.80.2.0/24"]
GOBGP_V4_RT = "10.80.3.0/24"  # also carries route target 65000:7, MED 20
GOBGP_V6 = ["fd80:1::/64"]
SHUTDOWN_MESSAGE = "brindle capture done"


def log(*a):
    print("[capture]", *a, file=sys.stderr, flush=True)


def run(cmd, check=True, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


# --------------------------------------------------------------------------- BGP wire bits

def header(length, ty):
    return b"\xff" * 16 + struct.pack("!HB", length, ty)


def msg(ty, body=b""):
    return header(19 + len(body), ty) + body


def our_open(hold=90, graceful_restart=True):
    caps = b""
    caps += bytes([1, 4]) + struct.pack("!HBB", 1, 0, 1)  # MP IPv4 unicast
    caps += bytes([1, 4]) + struct.pack("!HBB", 2, 0, 1)  # MP IPv6 unicast
    caps += bytes([2, 0])  # route refresh
    caps += bytes([65, 4]) + struct.pack("!I", CAP_AS)  # 4-octet AS
    if graceful_restart:
        # RFC 4724 receiving-speaker ("helper") form: restart time 120, no families.
        # FRR (and GoBGP) send End-of-RIB only to peers that advertise this.
        caps += bytes([64, 2]) + struct.pack("!H", 120)
    params = bytes([2, len(caps)]) + caps
    body = struct.pack("!BHH4sB", 4, CAP_AS, hold, socket.inet_aton(CAP_V4), len(params))
    return msg(1, body + params)


KEEPALIVE = msg(4)
CEASE_ADMIN_SHUTDOWN = msg(3, bytes([6, 2]))


def end_of_rib(afi):
    if afi == 1:
        return msg(2, b"\x00\x00\x00\x00")
    attr = bytes([0x80, 15, 3]) + struct.pack("!HB", afi, 1)
    return msg(2, struct.pack("!H", 0) + struct.pack("!H", len(attr)) + attr)


def open_families(body):
    """(AFI, SAFI) pairs of the MP capabilities in an OPEN body; IPv4 unicast if none."""
    fams = []
    if len(body) < 10:
        return [(1, 1)]
    plen = body[9]
    p = body[10:10 + plen]
    while len(p) >= 2:
        t, l = p[0], p[1]
        v = p[2:2 + l]
        if t == 2:
            c = v
            while len(c) >= 2:
                code, cl = c[0], c[1]
                cv = c[2:2 + cl]
                if code == 1 and cl == 4:
                    fams.append((struct.unpack("!H", cv[:2])[0], cv[3]))
                c = c[2 + cl:]
        p = p[2 + l:]
    return fams or [(1, 1)]


# --------------------------------------------------------------------------- descriptions

CAP_NAMES = {1: "MP", 2: "route-refresh", 5: "extended-nexthop", 6: "extended-message",
             64: "graceful-restart", 65: "4-octet-AS", 69: "add-path",
             70: "enhanced-route-refresh", 71: "long-lived-GR", 73: "FQDN",
             75: "software-version", 128: "route-refresh(old)"}
AFI_NAMES = {(1, 1): "ipv4-unicast", (2, 1): "ipv6-unicast"}


def fam_name(afi, safi):
    return AFI_NAMES.get((afi, safi), f"afi{afi}/safi{safi}")


def parse_prefixes(afi, b):
    out, i = [], 0
    while i < len(b):
        plen = b[i]
        n = (plen + 7) // 8
        raw = b[i + 1:i + 1 + n]
        if afi == 1:
            a = socket.inet_ntop(socket.AF_INET, raw + b"\x00" * (4 - len(raw)))
        else:
            a = socket.inet_ntop(socket.AF_INET6, raw + b"\x00" * (16 - len(raw)))
        out.append(f"{a}/{plen}")
        i += 1 + n
    return out


def describe_open(body):
    ver, asn, hold = body[0], *struct.unpack("!HH", body[1:5])
    rid = socket.inet_ntoa(body[5:9])
    caps = []
    p = body[10:10 + body[9]]
    while len(p) >= 2:
        t, l = p[0], p[1]
        if t == 2:
            c = p[2:2 + l]
            while len(c) >= 2:
                code, cl = c[0], c[1]
                cv = c[2:2 + cl]
                name = CAP_NAMES.get(code, f"cap{code}")
                if code == 1 and cl == 4:
                    name += "(" + fam_name(struct.unpack("!H", cv[:2])[0], cv[3]) + ")"
                elif code == 65 and cl == 4:
                    name += f"({struct.unpack('!I', cv)[0]})"
                elif code == 73 and cl >= 1:
                    name += f"({cv[1:1 + cv[0]].decode(errors='replace')})"
                caps.append(name)
                c = c[2 + cl:]
        p = p[2 + l:]
    return f"OPEN v{ver} AS {asn} hold {hold} id {rid}; capabilities: {', '.join(caps)}"


def describe_update(body):
    wl = struct.unpack("!H", body[:2])[0]
    withdrawn = parse_prefixes(1, body[2:2 + wl])
    al = struct.unpack("!H", body[2 + wl:4 + wl])[0]
    attrs = body[4 + wl:4 + wl + al]
    nlri = parse_prefixes(1, body[4 + wl + al:])
    if not withdrawn and not attrs and not nlri:
        return "UPDATE End-of-RIB ipv4-unicast"
    parts = []
    i = 0
    codes = []
    while i + 3 <= len(attrs):
        flags, code = attrs[i], attrs[i + 1]
        if flags & 0x10:
            l = struct.unpack("!H", attrs[i + 2:i + 4])[0]
            v = attrs[i + 4:i + 4 + l]
            i += 4 + l
        else:
            l = attrs[i + 2]
            v = attrs[i + 3:i + 3 + l]
            i += 3 + l
        codes.append(code)
        if code == 1:
            parts.append("ORIGIN " + ["IGP", "EGP", "INCOMPLETE"][v[0]] if v and v[0] < 3 else "ORIGIN ?")
        elif code == 2:
            asns = []
            j = 0
            while j + 2 <= len(v):
                n = v[j + 1]
                asns += [str(x) for x in struct.unpack(f"!{n}I", v[j + 2:j + 2 + 4 * n])]
                j += 2 + 4 * n
            parts.append("AS_PATH " + " ".join(asns))
        elif code == 3:
            parts.append("NEXT_HOP " + socket.inet_ntoa(v))
        elif code == 4:
            parts.append(f"MED {struct.unpack('!I', v)[0]}")
        elif code == 5:
            parts.append(f"LOCAL_PREF {struct.unpack('!I', v)[0]}")
        elif code == 8:
            cs = [struct.unpack("!I", v[k:k + 4])[0] for k in range(0, len(v), 4)]
            parts.append("COMMUNITIES " + " ".join(f"{c >> 16}:{c & 0xffff}" for c in cs))
        elif code == 16:
            parts.append("EXT_COMMUNITIES " + " ".join(v[k:k + 8].hex() for k in range(0, len(v), 8)))
        elif code == 32:
            ls = [struct.unpack("!III", v[k:k + 12]) for k in range(0, len(v), 12)]
            parts.append("LARGE_COMMUNITIES " + " ".join(f"{a}:{b}:{c}" for a, b, c in ls))
        elif code == 14:
            afi, safi, nhl = struct.unpack("!HBB", v[:4])
            nh = v[4:4 + nhl]
            fam = socket.AF_INET6 if nhl in (16, 32) else socket.AF_INET
            step = 16 if fam == socket.AF_INET6 else 4
            nhs = [socket.inet_ntop(fam, nh[k:k + step]) for k in range(0, len(nh), step)]
            pfx = parse_prefixes(afi, v[5 + nhl:])
            parts.append(f"MP_REACH {fam_name(afi, safi)} next hop {' '.join(nhs)} NLRI {' '.join(pfx)}")
        elif code == 15:
            afi, safi = struct.unpack("!HB", v[:3])
            pfx = parse_prefixes(afi, v[3:])
            if not pfx and al == i and not withdrawn and not nlri and len(codes) == 1:
                return f"UPDATE End-of-RIB {fam_name(afi, safi)} (empty MP_UNREACH)"
            parts.append(f"MP_UNREACH {fam_name(afi, safi)} {' '.join(pfx)}")
        else:
            parts.append(f"attr{code}({v.hex()})")
    s = "UPDATE"
    if withdrawn:
        s += " withdrawn " + " ".join(withdrawn) + ";"
    if parts:
        s += " " + "; ".join(parts)
    if nlri:
        s += "; NLRI " + " ".join(nlri)
    return s


def describe(m):
    ty = m[18]
    body = m[19:]
    try:
        if ty == 1:
            return describe_open(body)
        if ty == 2:
            return describe_update(body)
        if ty == 3:
            d = f"NOTIFICATION {body[0]}/{body[1]}"
            if body[0] == 6 and body[1] in (2, 4) and len(body) > 2:
                n = body[2]
                d += f" shutdown message {body[3:3 + n].decode(errors='replace')!r}"
            elif len(body) > 2:
                d += f" data {body[2:].hex()}"
            return d
        if ty == 4:
            return "KEEPALIVE"
        if ty == 5:
            afi, sub, safi = struct.unpack("!HBB", body[:4])
            return f"ROUTE-REFRESH {fam_name(afi, safi)} subtype {sub}"
    except Exception as e:  # a description is a comment: never fail the capture for it
        return f"{MSG_NAMES.get(ty, ty)} (undescribed: {e})"
    return f"message type {ty}"


# --------------------------------------------------------------------------- listener

class Session:
    def __init__(self, conn, peer):
        self.conn = conn
        self.peer = peer
        self.t0 = time.monotonic()
        self.msgs = []  # (seconds since accept, hex)
        self.established = False
        self.closed = False
        self.lock = threading.Lock()

    def send(self, data):
        with self.lock:
            try:
                self.conn.sendall(data)
            except OSError:
                pass


def listener_main(args):
    out_lock = threading.Lock()

    def say(*a):
        with out_lock:
            print(*a, flush=True)

    sessions = []
    socks = []
    for addr in args.bind:
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, args.port))
        s.listen(4)
        socks.append(s)

    def keepalives(sess):
        while not sess.closed:
            time.sleep(args.keepalive)
            if not sess.closed:
                sess.send(KEEPALIVE)

    def handle(sess):
        buf = b""
        sent_open = False
        fams = []
        try:
            while True:
                data = sess.conn.recv(65536)
                if not data:
                    break
                buf += data
                while len(buf) >= 19:
                    if buf[:16] != b"\xff" * 16:
                        say("ERROR", sess.peer, "bad marker", buf[:19].hex())
                        sess.msgs.append((time.monotonic() - sess.t0, buf.hex()))
                        buf = b""
                        break
                    length = struct.unpack("!H", buf[16:18])[0]
                    if length < 19:
                        say("ERROR", sess.peer, "bad length", buf[:19].hex())
                        sess.msgs.append((time.monotonic() - sess.t0, buf.hex()))
                        buf = b""
                        break
                    if len(buf) < length:
                        break
                    m, buf = buf[:length], buf[length:]
                    sess.msgs.append((round(time.monotonic() - sess.t0, 3), m.hex()))
                    ty = m[18]
                    if ty == 1 and not sent_open:
                        fams = [f for f in open_families(m[19:]) if f in ((1, 1), (2, 1))]
                        sess.send(our_open(args.hold, not args.no_gr) + KEEPALIVE)
                        sent_open = True
                        threading.Thread(target=keepalives, args=(sess,), daemon=True).start()
                    elif ty == 4 and sent_open and not sess.established:
                        sess.established = True
                        # our (empty) Adj-RIB-Out: End-of-RIB for each common family
                        for afi, _ in fams:
                            sess.send(end_of_rib(afi))
                        say("ESTABLISHED", sess.peer)
                    elif ty == 3:
                        say("NOTIFICATION", sess.peer, m[19:].hex())
        except OSError as e:
            say("ERROR", sess.peer, repr(e))
        finally:
            sess.closed = True
            say("CLOSED", sess.peer)

    def acceptor(s):
        while True:
            try:
                conn, peer = s.accept()
            except OSError:
                return
            sess = Session(conn, peer[0])
            sessions.append(sess)
            say("ACCEPTED", sess.peer)
            threading.Thread(target=handle, args=(sess,), daemon=True).start()

    for s in socks:
        threading.Thread(target=acceptor, args=(s,), daemon=True).start()
    say("LISTENING")
    for line in sys.stdin:
        if line.strip() == "quit":
            break
    for s in socks:
        s.close()
    for sess in sessions:
        if not sess.closed:
            sess.send(CEASE_ADMIN_SHUTDOWN)
            try:
                sess.conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    time.sleep(0.2)
    result = [{"peer": s.peer, "messages": s.msgs, "established": s.established} for s in sessions]
    say("RESULT", json.dumps(result))


# --------------------------------------------------------------------------- namespaces

class Lab:
    """Two namespaces and a veth; everything it creates is removed by close()."""

    def __init__(self, tag):
        self.cap = f"cap{os.getpid()}{tag}a"
        self.rtr = f"cap{os.getpid()}{tag}b"
        self.made = []
        self.procs = []  # Popen objects to stop
        self.pidfiles = []  # daemons that fork: (pidfile, name)
        self.tmp = tempfile.mkdtemp(prefix=f"capture-{tag}-")
        os.chmod(self.tmp, 0o755)

    def up(self):
        for ns in (self.cap, self.rtr):
            run(["ip", "netns", "add", ns])
            self.made.append(ns)
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            for k in ("all", "default"):
                run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{k}.accept_dad=0"])
        run(["ip", "-n", self.cap, "link", "add", "capv0", "type", "veth",
             "peer", "name", "capv1", "netns", self.rtr])
        for ns, dev, v4, v6 in ((self.cap, "capv0", CAP_V4, CAP_V6), (self.rtr, "capv1", RTR_V4, RTR_V6)):
            run(["ip", "-n", ns, "addr", "add", f"{v4}/24", "dev", dev])
            run(["ip", "-n", ns, "addr", "add", f"{v6}/64", "dev", dev, "nodad"])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        # wait for link-local addresses (BIRD and FRR put them in IPv6 next hops)
        for _ in range(50):
            r = run(["ip", "-n", self.rtr, "-6", "addr", "show", "dev", "capv1", "scope", "link"], check=False)
            if "fe80" in r.stdout and "tentative" not in r.stdout:
                break
            time.sleep(0.1)

    def spawn(self, ns, cmd, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", ns] + cmd, **kw)
        self.procs.append(p)
        return p

    def nsrun(self, ns, cmd, check=True):
        return run(["ip", "netns", "exec", ns] + cmd, check=check)

    def close(self):
        for pidfile, name in reversed(self.pidfiles):
            try:
                pid = int(open(pidfile).read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            stop_pid(pid, name)
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for ns in reversed(self.made):
            run(["ip", "netns", "del", ns], check=False)
        self.made = []
        shutil.rmtree(self.tmp, ignore_errors=True)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def stop_pid(pid, name, timeout=5.0):
    if not pid_alive(pid):
        return
    log(f"stopping {name} (pid {pid})")
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_file(path, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(path) and os.path.getsize(path) > 0:
            return
        time.sleep(0.05)
    raise RuntimeError(f"{path} did not appear")


# --------------------------------------------------------------------------- routers

class Bird:
    name = "bird"
    listener_first = True

    def version(self):
        r = run(["bird", "--version"], check=False)
        return (r.stdout + r.stderr).split()[-1]

    def start(self, lab):
        d = lab.tmp
        statics4 = "\n".join(f"  route {p} blackhole;" for p in BIRD_V4)
        statics6 = "\n".join(f"  route {p} blackhole;" for p in BIRD_V6)
        conf = f"""
router id {RTR_V4};
log "{d}/bird.log" all;
protocol device {{ }}
protocol static static4 {{
  ipv4;
{statics4}
}}
protocol static static6 {{
  ipv6;
{statics6}
}}
filter tag4 {{
  bgp_community.add((65000,100));
  bgp_large_community.add((65000,1,2));
  bgp_ext_community.add((rt,65000,7));
  if net = {BIRD_V4[2]} then bgp_med = 77; else bgp_med = 50;
  accept;
}}
filter tag6 {{
  bgp_community.add((65000,100));
  bgp_large_community.add((65000,1,2));
  bgp_ext_community.add((rt,65000,7));
  if net = {BIRD_V6[2]} then bgp_med = 77; else bgp_med = 50;
  accept;
}}
protocol bgp peer4 {{
  local {RTR_V4} as {RTR_AS};
  neighbor {CAP_V4} as {CAP_AS};
  connect delay time 1;
  connect retry time 2;
  ipv4 {{ import none; export filter tag4; }};
}}
protocol bgp peer6 {{
  local {RTR_V6} as {RTR_AS};
  neighbor {CAP_V6} as {CAP_AS};
  connect delay time 1;
  connect retry time 2;
  ipv6 {{ import none; export filter tag6; }};
}}
"""
        with open(f"{d}/bird.conf", "w") as f:
            f.write(conf)
        run(["bird", "-p", "-c", f"{d}/bird.conf"])
        lab.pidfiles.append((f"{d}/bird.pid", "bird"))
        lab.nsrun(lab.rtr, ["bird", "-c", f"{d}/bird.conf", "-s", f"{d}/bird.ctl", "-P", f"{d}/bird.pid"])
        wait_file(f"{d}/bird.pid")

    def populate(self, lab):
        pass  # static routes are there from the start; BIRD connects after 1 s

    def stop(self, lab):
        # IPv4 session: administrative shutdown with an RFC 8203 shutdown communication;
        # IPv6 session: whatever BIRD sends when it is terminated
        r = run(["birdc", "-s", f"{lab.tmp}/bird.ctl", f'disable peer4 "{SHUTDOWN_MESSAGE}"'], check=False)
        log("birdc:", (r.stdout + r.stderr).strip().replace("\n", " / "))
        time.sleep(0.5)
        stop_pid(int(open(f"{lab.tmp}/bird.pid").read().split()[0]), "bird")


class Frr:
    name = "frr"
    # FRR's `network` routes enter its BGP table a few seconds after start; a session that
    # is already up then gets an early End-of-RIB before the UPDATEs. Wait for the table,
    # then start the listener (FRR reconnects every 2 s).
    listener_first = False

    def version(self):
        return run(["/usr/lib/frr/bgpd", "--version"]).stdout.split("\n")[0].split()[-1]

    def start(self, lab):
        d = lab.tmp
        nets4 = "\n".join(
            f"  network {p} route-map {'TAG77' if i == 2 else 'TAG'}" for i, p in enumerate(FRR_V4))
        nets6 = "\n".join(
            f"  network {p} route-map {'TAG77' if i == 2 else 'TAG'}" for i, p in enumerate(FRR_V6))
        bgpd = f"""hostname capfrr
log file {d}/bgpd.log
!
router bgp {RTR_AS}
 bgp router-id {RTR_V4}
 no bgp ebgp-requires-policy
 no bgp network import-check
 no bgp default ipv4-unicast
 neighbor {CAP_V4} remote-as {CAP_AS}
 neighbor {CAP_V4} timers connect 2
 neighbor {CAP_V6} remote-as {CAP_AS}
 neighbor {CAP_V6} timers connect 2
 !
 address-family ipv4 unicast
{nets4}
  neighbor {CAP_V4} activate
 exit-address-family
 !
 address-family ipv6 unicast
{nets6}
  neighbor {CAP_V6} activate
 exit-address-family
!
route-map TAG permit 10
 set community 65000:100
 set large-community 65000:1:2
 set extcommunity rt 65000:7
 set metric 50
!
route-map TAG77 permit 10
 set community 65000:100
 set large-community 65000:1:2
 set extcommunity rt 65000:7
 set metric 77
!
"""
        with open(f"{d}/bgpd.conf", "w") as f:
            f.write(bgpd)
        with open(f"{d}/zebra.conf", "w") as f:
            f.write(f"hostname capfrr\nlog file {d}/zebra.log\n")
        common = ["-d", "-u", "root", "-g", "frrvty", "-P", "0"]
        lab.pidfiles.append((f"{d}/zebra.pid", "zebra"))
        lab.nsrun(lab.rtr, ["/usr/lib/frr/zebra"] + common + [
            "-f", f"{d}/zebra.conf", "-i", f"{d}/zebra.pid", "-z", f"{d}/zserv.api", "--vty_socket", d])
        wait_file(f"{d}/zebra.pid")
        lab.pidfiles.append((f"{d}/bgpd.pid", "bgpd"))
        lab.nsrun(lab.rtr, ["/usr/lib/frr/bgpd"] + common + [
            "-f", f"{d}/bgpd.conf", "-i", f"{d}/bgpd.pid", "-z", f"{d}/zserv.api", "--vty_socket", d])
        wait_file(f"{d}/bgpd.pid")

    def populate(self, lab):
        d = lab.tmp
        want = {"ipv4": set(FRR_V4), "ipv6": set(FRR_V6)}
        have = {}
        for _ in range(200):
            for fam in want:
                r = lab.nsrun(lab.rtr, ["vtysh", "--vty_socket", d, "--config_dir", d,
                                        "-c", f"show bgp {fam} unicast json"], check=False)
                try:
                    have[fam] = set(json.loads(r.stdout).get("routes", {}))
                except ValueError:
                    have[fam] = set()
            if all(want[f] <= have.get(f, set()) for f in want):
                return
            time.sleep(0.1)
        raise RuntimeError(f"FRR did not originate its networks: {have}")

    def stop(self, lab):
        # with graceful restart negotiated FRR closes silently when terminated, so shut the
        # sessions down first: IPv4 with an RFC 8203 shutdown communication, IPv6 without
        d = lab.tmp
        lab.nsrun(lab.rtr, ["vtysh", "--vty_socket", d, "--config_dir", d, "-c", "configure terminal",
                            "-c", f"router bgp {RTR_AS}",
                            "-c", f"neighbor {CAP_V4} shutdown message {SHUTDOWN_MESSAGE}",
                            "-c", f"neighbor {CAP_V6} shutdown"], check=False)
        time.sleep(0.5)
        pid = int(open(f"{lab.tmp}/bgpd.pid").read().split()[0])
        stop_pid(pid, "bgpd")
        shutil.rmtree(f"/var/tmp/frr/bgpd.{pid}", ignore_errors=True)


class GoBgp:
    name = "gobgp"
    # routes are added before the sessions come up: the listener starts afterwards and
    # GoBGP (connect-retry 2 s) connects on its next attempt
    listener_first = False

    def version(self):
        return run(["gobgpd", "--version"]).stdout.split()[-1]

    def start(self, lab):
        d = lab.tmp
        conf = f'[global.config]\n  as = {RTR_AS}\n  router-id = "{RTR_V4}"\n  port = 179\n\n'
        for addr, fam in ((CAP_V4, "ipv4-unicast"), (CAP_V6, "ipv6-unicast")):
            conf += (
                f'[[neighbors]]\n  [neighbors.config]\n    neighbor-address = "{addr}"\n'
                f"    peer-as = {CAP_AS}\n"
                f"  [neighbors.timers.config]\n    connect-retry = 2\n    idle-hold-time-after-reset = 1\n"
                # GoBGP sends End-of-RIB only when graceful restart is negotiated
                f"  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = 120\n"
                f'  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = "{fam}"\n'
                f"    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n\n"
            )
        with open(f"{d}/gobgpd.toml", "w") as f:
            f.write(conf)
        self.log = open(f"{d}/gobgpd.log", "w")
        lab.spawn(lab.rtr, ["gobgpd", "-f", f"{d}/gobgpd.toml", "-t", "toml",
                            "--api-hosts", "127.0.0.1:50051", "--pprof-disable", "-p"],
                  stdout=self.log, stderr=subprocess.STDOUT)
        self.proc = lab.procs[-1]
        for _ in range(100):
            if lab.nsrun(lab.rtr, ["gobgp", "-u", "127.0.0.1", "-p", "50051", "global"], check=False).returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("gobgpd API did not come up; log: " + open(f"{d}/gobgpd.log").read()[-2000:])

    def populate(self, lab):
        gb = ["gobgp", "-u", "127.0.0.1", "-p", "50051", "global", "rib", "add"]
        attrs = ["community", "65000:100", "large-community", "65000:1:2", "med", "10"]
        for p in GOBGP_V4:
            lab.nsrun(lab.rtr, gb + ["-a", "ipv4", p] + attrs)
        lab.nsrun(lab.rtr, gb + ["-a", "ipv4", GOBGP_V4_RT, "community", "65000:100",
                                 "large-community", "65000:1:2", "med", "20", "rt", "65000:7"])
        for p in GOBGP_V6:
            lab.nsrun(lab.rtr, gb + ["-a", "ipv6", p] + attrs)

    def stop(self, lab):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


ROUTERS = {"bird": Bird, "frr": Frr, "gobgp": GoBgp}


# --------------------------------------------------------------------------- one capture

def capture(router, out_dir, duration, tag, no_gr):
    lab = Lab(tag)
    lines = queue.Queue()
    listener = None
    try:
        lab.up()
        version = router.version()
        log(f"{router.name} {version}: namespaces {lab.cap} / {lab.rtr}")

        def start_listener():
            p = lab.spawn(lab.cap, [sys.executable, os.path.abspath(__file__), "--listen",
                                    "--bind", CAP_V4, "--bind", CAP_V6]
                          + (["--no-graceful-restart"] if no_gr else []),
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

            def reader():
                for line in p.stdout:
                    lines.put(line.rstrip("\n"))
                lines.put(None)

            threading.Thread(target=reader, daemon=True).start()
            expect(lines, "LISTENING", 10)
            return p

        if router.listener_first:
            listener = start_listener()
        router.start(lab)
        router.populate(lab)
        if not router.listener_first:
            listener = start_listener()

        # both sessions up, then record
        up = set()
        end = time.monotonic() + 60
        while len(up) < 2:
            line = next_line(lines, end)
            log("listener:", line)
            if line.startswith("ESTABLISHED"):
                up.add(line.split()[1])
        log(f"sessions established with {sorted(up)}; recording {duration} s")
        time.sleep(duration)
        router.stop(lab)
        closed = set()
        end = time.monotonic() + 8
        while len(closed) < 2 and time.monotonic() < end:
            try:
                line = next_line(lines, end)
            except TimeoutError:
                break
            log("listener:", line)
            if line.startswith("CLOSED"):
                closed.add(line.split()[1])
        listener.stdin.write("quit\n")
        listener.stdin.flush()
        result = None
        end = time.monotonic() + 10
        while result is None:
            line = next_line(lines, end)
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT "):])
            else:
                log("listener:", line)
        listener.wait(5)
    finally:
        lab.close()
    write_files(router.name, version, result, out_dir)


def next_line(lines, deadline):
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out waiting for the listener")
    try:
        line = lines.get(timeout=left)
    except queue.Empty:
        raise TimeoutError("timed out waiting for the listener")
    if line is None:
        raise RuntimeError("listener exited")
    return line


def expect(lines, word, timeout):
    end = time.monotonic() + timeout
    while True:
        line = next_line(lines, end)
        if line.startswith(word):
            return line
        log("listener:", line)


def write_files(name, version, sessions, out_dir):
    # IPv4 session first, then IPv6; each in arrival order. Only sessions that reached
    # Established (a router may open a second connection that collides, or retry).
    sessions = sorted(sessions, key=lambda s: (":" in s["peer"], s["peer"]))
    files = []
    for s in sessions:
        if not s["established"]:
            log(f"ignoring {len(s['messages'])} messages of a session from {s['peer']} that never came up")
            continue
        kind = "IPv6" if ":" in s["peer"] else "IPv4"
        seen_stop = False
        for t, hx in s["messages"]:
            m = bytes.fromhex(hx)
            ty = m[18] if len(m) >= 19 else 0
            desc = describe(m)
            note = ""
            if ty == 3:
                seen_stop = True
                note = " (sent when the router was stopped)"
            elif seen_stop:
                note = " (after NOTIFICATION)"
            files.append((MSG_NAMES.get(ty, f"type{ty}"),
                          f"# {name} {version} {kind} session from {s['peer']}, t={t:.1f}s: {desc}{note}",
                          hx))
    types = [f[0] for f in files]
    for need in ("open", "update", "keepalive"):
        if need not in types:
            raise RuntimeError(f"{name}: no {need} captured; not touching {out_dir}")
    os.makedirs(out_dir, exist_ok=True)
    for old in glob.glob(os.path.join(out_dir, f"{name}-*.hex")):
        os.remove(old)
    width = max(2, len(str(len(files))))
    for n, (ty, comment, hx) in enumerate(files, 1):
        path = os.path.join(out_dir, f"{name}-{n:0{width}d}-{ty}.hex")
        with open(path, "w") as f:
            f.write(comment + "\n")
            for i in range(0, len(hx), 64):
                f.write(hx[i:i + 64] + "\n")
    log(f"{name}: wrote {len(files)} files to {out_dir}")
    for _, comment, _ in files:
        log("  " + comment)


# --------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--router", choices=["bird", "frr", "gobgp", "all"], default="all")
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    ap.add_argument("--no-graceful-restart", dest="no_gr", action="store_true",
                    help="leave the graceful-restart capability out of our OPEN (routers may then skip End-of-RIB)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds to record after both sessions are up")
    # internal: the listener, run inside the capture namespace
    ap.add_argument("--listen", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--bind", action="append", default=[], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=179, help=argparse.SUPPRESS)
    ap.add_argument("--hold", type=int, default=90, help=argparse.SUPPRESS)
    ap.add_argument("--keepalive", type=float, default=5.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.listen:
        listener_main(args)
        return 0
    if os.geteuid() != 0:
        print("must run as root (network namespaces)", file=sys.stderr)
        return 2

    # turn SIGTERM/SIGHUP into SystemExit so the finally blocks clean up
    def bye(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, bye)
    signal.signal(signal.SIGHUP, bye)

    names = ["bird", "frr", "gobgp"] if args.router == "all" else [args.router]
    failed = []
    for name in names:
        try:
            capture(ROUTERS[name](), args.out, args.duration, name[0], args.no_gr)
        except Exception as e:
            log(f"{name}: capture failed: {e}")
            failed.append(name)
    if failed:
        log("failed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
