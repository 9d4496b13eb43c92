//! The codec against real BGP messages sent by BIRD 2, FRR and GoBGP.
//!
//! `tests/data/<router>-<n>-<type>.hex` hold one message each (comment line
//! `# <router> <version> <IPv4|IPv6> session ...: <description>`, then lowercase hex), captured
//! by `scripts/capture-peer-messages.py`: each router is AS 65000 with one IPv4 session to
//! 10.77.0.1 and one IPv6 session to fd77::1 (AS 64512, the capture listener), and exports
//! the prefixes listed below tagged with community 65000:100, large community 65000:1:2,
//! route target 65000:7 (extended community) and a MED. Every file must frame and decode;
//! every UPDATE must survive a round trip through our encoder.

use brindle_bgp::codec::{self, EncodeContext, Message, Open, Update, MAX_LEN};
use brindle_bgp::types::{Afi, AsSegment, Origin, PathAttrs, Prefix, SegmentKind};
use brindle_bgp::validate::UpdateContext;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

const COMMUNITY: u32 = (65000 << 16) | 100;
const LARGE: (u32, u32, u32) = (65000, 1, 2);
/// Route target 65000:7: two-octet-AS specific (type 0x00), subtype 0x02.
const RT_65000_7: [u8; 8] = [0x00, 0x02, 0xfd, 0xe8, 0x00, 0x00, 0x00, 0x07];
const SHUTDOWN_MESSAGE: &str = "brindle capture done";

/// What a router was configured to send (see the capture script).
struct Expect {
    router: &'static str,
    /// (prefix, MED, carries the route target)
    v4: &'static [(&'static str, u32, bool)],
    v6: &'static [(&'static str, u32, bool)],
    origin: Origin,
    /// Sends a link-local second next hop in MP_REACH (directly connected eBGP peer).
    v6_link_local: bool,
}

const BIRD: Expect = Expect {
    router: "bird",
    v4: &[
        ("10.78.1.0/24", 50, true),
        ("10.78.2.0/24", 50, true),
        ("10.78.3.128/25", 77, true),
    ],
    v6: &[
        ("fd78:1::/64", 50, true),
        ("fd78:2::/48", 50, true),
        ("fd78:3::/56", 77, true),
    ],
    origin: Origin::Igp,
    v6_link_local: true,
};

const FRR: Expect = Expect {
    router: "frr",
    v4: &[
        ("10.79.1.0/24", 50, true),
        ("10.79.2.0/24", 50, true),
        ("10.79.3.0/25", 77, true),
    ],
    v6: &[
        ("fd79:1::/64", 50, true),
        ("fd79:2::/48", 50, true),
        ("fd79:3::/56", 77, true),
    ],
    origin: Origin::Igp,
    v6_link_local: true,
};

const GOBGP: Expect = Expect {
    router: "gobgp",
    v4: &[
        ("10.80.1.0/24", 10, false),
        ("10.80.2.0/24", 10, false),
        ("10.80.3.0/24", 20, true),
    ],
    v6: &[("fd80:1::/64", 10, false)],
    // `gobgp global rib add` originates with ORIGIN INCOMPLETE
    origin: Origin::Incomplete,
    v6_link_local: false,
};

struct Captured {
    file: String,
    router: String,
    /// The file name's message type ("open", "update", ...).
    kind: String,
    comment: String,
    bytes: Vec<u8>,
}

impl Captured {
    fn afi(&self) -> Afi {
        if self.comment.contains(" IPv6 session ") {
            Afi::Ipv6
        } else {
            assert!(
                self.comment.contains(" IPv4 session "),
                "{}: comment names no session: {}",
                self.file,
                self.comment
            );
            Afi::Ipv4
        }
    }
}

fn unhex(file: &str, s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert_eq!(digits.len() % 2, 0, "{file}: odd number of hex digits");
    digits
        .chunks(2)
        .map(|p| {
            let s = std::str::from_utf8(p).unwrap();
            u8::from_str_radix(s, 16).unwrap_or_else(|e| panic!("{file}: bad hex {s:?}: {e}"))
        })
        .collect()
}

/// All captured messages, sorted by file name (that is by router, then capture order).
fn load_all() -> Vec<Captured> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = e.unwrap().path();
        if path.extension().and_then(|x| x.to_str()) != Some("hex") {
            continue;
        }
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        let text = std::fs::read_to_string(&path).unwrap();
        let comment = text
            .lines()
            .find(|l| l.starts_with('#'))
            .unwrap_or_else(|| panic!("{file}: no comment line"))
            .to_string();
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("");
        let stem = file.trim_end_matches(".hex");
        let mut parts = stem.splitn(3, '-');
        let router = parts.next().unwrap().to_string();
        let _n = parts.next().expect("<router>-<n>-<type>.hex");
        let kind = parts.next().expect("<router>-<n>-<type>.hex").to_string();
        out.push(Captured {
            bytes: unhex(&file, &body),
            file,
            router,
            kind,
            comment,
        });
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    assert!(!out.is_empty(), "no captured messages in {}", dir.display());
    out
}

fn load(router: &str) -> Vec<Captured> {
    let v: Vec<Captured> = load_all()
        .into_iter()
        .filter(|c| c.router == router)
        .collect();
    assert!(!v.is_empty(), "no captured messages from {router}");
    v
}

/// The receiving session's context: eBGP from AS 65000, 4-octet AS, both families.
fn ctx() -> UpdateContext {
    UpdateContext {
        asn4: true,
        ebgp: true,
        peer_as: 65000,
        afis: vec![Afi::Ipv4, Afi::Ipv6],
        enforce_first_as: true,
    }
}

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// frame + decode one captured message; panics with the file, bytes and error.
fn decode(c: &Captured) -> Message {
    decode_bytes(&c.file, &c.bytes)
}

fn decode_bytes(what: &str, bytes: &[u8]) -> Message {
    match codec::frame(bytes, MAX_LEN) {
        Ok(Some(n)) => assert_eq!(
            n,
            bytes.len(),
            "{what}: frame() length {n} differs from the message's {} bytes",
            bytes.len()
        ),
        Ok(None) => panic!("{what}: frame() wants more bytes: {}", hexs(bytes)),
        Err(n) => panic!("{what}: frame() failed with {n}: {}", hexs(bytes)),
    }
    codec::decode(bytes, &ctx())
        .unwrap_or_else(|n| panic!("{what}: decode() failed with {n}: {}", hexs(bytes)))
}

fn open_of(c: &Captured) -> Open {
    match decode(c) {
        Message::Open(o) => o,
        m => panic!("{}: expected OPEN, got {}", c.file, m.kind()),
    }
}

fn update_of(c: &Captured) -> Update {
    match decode(c) {
        Message::Update(u) => {
            assert_eq!(u.treat_as_withdraw, None, "{}: {}", c.file, hexs(&c.bytes));
            assert!(
                u.discarded.is_empty(),
                "{}: attributes discarded: {:?}",
                c.file,
                u.discarded
            );
            u
        }
        m => panic!("{}: expected UPDATE, got {}", c.file, m.kind()),
    }
}

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

// --------------------------------------------------------------------------- every file

#[test]
fn every_captured_message_frames_and_decodes() {
    let all = load_all();
    let mut per_router: BTreeMap<String, BTreeMap<&'static str, usize>> = BTreeMap::new();
    for c in &all {
        assert!(
            c.comment.starts_with(&format!("# {} ", c.router)),
            "{}: comment does not name the router: {}",
            c.file,
            c.comment
        );
        let m = decode(c);
        assert_eq!(
            m.kind().to_lowercase(),
            c.kind,
            "{}: file name type vs decoded type",
            c.file
        );
        *per_router
            .entry(c.router.clone())
            .or_default()
            .entry(m.kind())
            .or_default() += 1;
    }
    for r in ["bird", "frr", "gobgp"] {
        let k = per_router
            .get(r)
            .unwrap_or_else(|| panic!("no messages from {r}"));
        // one OPEN and one KEEPALIVE per session, UPDATEs including End-of-RIB
        assert_eq!(k.get("OPEN"), Some(&2), "{r}: {k:?}");
        assert!(k.get("KEEPALIVE").copied().unwrap_or(0) >= 2, "{r}: {k:?}");
        assert!(k.get("UPDATE").copied().unwrap_or(0) >= 4, "{r}: {k:?}");
    }
}

#[test]
fn frame_finds_each_message_in_a_concatenated_stream() {
    // What the socket delivers: a router's messages back to back.
    for r in ["bird", "frr", "gobgp"] {
        let msgs = load(r);
        let stream: Vec<u8> = msgs.iter().flat_map(|c| c.bytes.clone()).collect();
        let mut at = 0;
        for c in &msgs {
            let n = codec::frame(&stream[at..], MAX_LEN)
                .unwrap_or_else(|e| panic!("{}: {e}", c.file))
                .unwrap_or_else(|| panic!("{}: incomplete", c.file));
            assert_eq!(&stream[at..at + n], &c.bytes[..], "{}", c.file);
            // a truncated message asks for more bytes
            assert_eq!(
                codec::frame(&stream[at..at + n - 1], MAX_LEN),
                Ok(None),
                "{}",
                c.file
            );
            at += n;
        }
        assert_eq!(at, stream.len());
    }
}

// --------------------------------------------------------------------------- OPEN

/// Checks common to every router's two OPENs; returns them as (IPv4 session, IPv6 session).
fn check_opens(router: &str) -> (Open, Open) {
    let msgs = load(router);
    let opens: Vec<(Afi, Open, &Captured)> = msgs
        .iter()
        .filter(|c| c.kind == "open")
        .map(|c| (c.afi(), open_of(c), c))
        .collect();
    assert_eq!(opens.len(), 2, "{router}: one OPEN per session");
    for (afi, o, c) in &opens {
        let f = &c.file;
        assert_eq!(o.version, 4, "{f}");
        assert_eq!(o.my_as, 65000, "{f}");
        assert_eq!(o.asn(), 65000, "{f}");
        assert_eq!(
            o.caps.four_octet_as,
            Some(65000),
            "{f}: 4-octet AS capability"
        );
        assert!(o.caps.route_refresh, "{f}: route refresh");
        assert_eq!(
            o.caps.afis,
            vec![*afi],
            "{f}: the session's family (and only it)"
        );
        assert_eq!(o.router_id, Ipv4Addr::new(10, 77, 0, 2), "{f}");
        assert!(o.hold_time >= 3, "{f}");
    }
    let v4 = opens.iter().find(|o| o.0 == Afi::Ipv4).unwrap().1.clone();
    let v6 = opens.iter().find(|o| o.0 == Afi::Ipv6).unwrap().1.clone();
    (v4, v6)
}

#[test]
fn bird_open() {
    for o in <[Open; 2]>::from(check_opens("bird")) {
        assert_eq!(o.hold_time, 240);
        assert!(o.caps.enhanced_route_refresh);
        assert!(!o.caps.extended_message);
        // BIRD advertises graceful restart (aware, no restart in progress, no families)
        let gr = o
            .caps
            .graceful_restart
            .expect("graceful restart capability");
        assert!(!gr.restart_state);
        assert!(gr.afis.is_empty(), "{gr:?}");
        assert!(o.caps.add_path.is_empty());
        assert_eq!(o.caps.hostname, None);
        // long-lived graceful restart (71) is not interpreted
        assert_eq!(o.caps.other, vec![71]);
    }
}

#[test]
fn frr_open() {
    let (v4, v6) = check_opens("frr");
    for (afi, o) in [(Afi::Ipv4, &v4), (Afi::Ipv6, &v6)] {
        assert_eq!(o.hold_time, 180);
        assert!(o.caps.enhanced_route_refresh);
        assert!(o.caps.extended_message);
        assert_eq!(o.caps.hostname.as_deref(), Some("capfrr"));
        // ADD-PATH Send/Receive = 1: willing to receive, not sending (RFC 7911 §4)
        assert_eq!(o.caps.add_path, vec![(afi, false, true)]);
        // flags 0xc: Restart State and Notification bits (RFC 8538), 120 s, no families
        let gr = o.caps.graceful_restart.as_ref().expect("graceful restart");
        assert!(gr.restart_state && gr.notification, "{gr:?}");
        assert_eq!(gr.time, 120);
        assert!(gr.afis.is_empty(), "{gr:?}");
        // long-lived graceful restart (71) is not interpreted
        assert_eq!(o.caps.other, vec![71]);
    }
}

#[test]
fn gobgp_open() {
    let (v4, v6) = check_opens("gobgp");
    for o in [&v4, &v6] {
        assert_eq!(o.hold_time, 90);
        assert!(!o.caps.enhanced_route_refresh);
        // configured with graceful restart so that it sends End-of-RIB
        let gr = o.caps.graceful_restart.as_ref().expect("graceful restart");
        assert_eq!(gr.time, 120);
        assert!(!gr.restart_state && !gr.notification, "{gr:?}");
        assert!(o.caps.hostname.is_some(), "FQDN capability");
    }
    // per-family entry, forwarding state not preserved
    assert_eq!(
        v4.caps.graceful_restart.as_ref().unwrap().afis,
        vec![(Afi::Ipv4, false)]
    );
    assert_eq!(
        v6.caps.graceful_restart.as_ref().unwrap().afis,
        vec![(Afi::Ipv6, false)]
    );
    // on the IPv4 session GoBGP also offers extended next hop (RFC 8950, code 5)
    assert_eq!(v4.caps.other, vec![5]);
    assert_eq!(v6.caps.other, Vec::<u8>::new());
}

#[test]
fn opens_round_trip_through_encoder() {
    // encode_open writes what Brindle uses; capabilities it does not interpret (`other`)
    // and the FQDN are not re-sent.
    for c in load_all().iter().filter(|c| c.kind == "open") {
        let o = open_of(c);
        let re = codec::encode_open(&o);
        let back = match decode_bytes(&format!("{} re-encoded", c.file), &re) {
            Message::Open(b) => b,
            m => panic!("{}: re-encoded OPEN decodes as {}", c.file, m.kind()),
        };
        let mut want = o.clone();
        want.caps.other.clear();
        want.caps.hostname = None;
        assert_eq!(back, want, "{}: re-encoded {}", c.file, hexs(&re));
    }
}

// --------------------------------------------------------------------------- UPDATE

/// Every announced prefix of a session with its attributes, in arrival order, and the
/// End-of-RIB markers seen, with the index of the UPDATE that carried them.
struct SessionUpdates {
    routes: BTreeMap<Prefix, PathAttrs>,
    last_announce: Option<usize>,
    eor: Vec<(usize, Afi)>,
}

fn session_updates(msgs: &[Captured], afi: Afi) -> SessionUpdates {
    let mut s = SessionUpdates {
        routes: BTreeMap::new(),
        last_announce: None,
        eor: Vec::new(),
    };
    for (i, c) in msgs.iter().enumerate() {
        if c.kind != "update" || c.afi() != afi {
            continue;
        }
        let u = update_of(c);
        assert!(u.withdrawn.is_empty(), "{}: {:?}", c.file, u.withdrawn);
        if let Some(e) = u.end_of_rib {
            assert!(u.announced.is_empty(), "{}", c.file);
            assert_eq!(u.attrs, None, "{}", c.file);
            s.eor.push((i, e));
            continue;
        }
        assert!(
            !u.announced.is_empty(),
            "{}: UPDATE with nothing in it",
            c.file
        );
        let attrs = u.attrs.clone().expect("attributes with announcements");
        for pf in &u.announced {
            assert_eq!(pf.afi(), afi, "{}: {pf} on the {afi:?} session", c.file);
            assert!(
                s.routes.insert(*pf, attrs.clone()).is_none(),
                "{}: {pf} announced twice",
                c.file
            );
        }
        s.last_announce = Some(i);
    }
    s
}

fn check_updates(e: &Expect) {
    let msgs = load(e.router);
    for (afi, want) in [(Afi::Ipv4, e.v4), (Afi::Ipv6, e.v6)] {
        let s = session_updates(&msgs, afi);
        let got: Vec<Prefix> = s.routes.keys().copied().collect();
        let mut want_p: Vec<Prefix> = want.iter().map(|(x, _, _)| p(x)).collect();
        want_p.sort();
        assert_eq!(got, want_p, "{} {afi:?}: announced prefixes", e.router);
        for (pfx, med, rt) in want {
            let a = &s.routes[&p(pfx)];
            let what = format!("{} {pfx}", e.router);
            assert_eq!(a.origin, Some(e.origin), "{what}");
            assert_eq!(
                a.as_path,
                vec![AsSegment {
                    kind: SegmentKind::Sequence,
                    asns: vec![65000]
                }],
                "{what}"
            );
            assert_eq!(a.med, Some(*med), "{what}: MED");
            assert_eq!(a.local_pref, None, "{what}: no LOCAL_PREF over eBGP");
            assert_eq!(
                a.communities,
                vec![COMMUNITY],
                "{what}: community 65000:100"
            );
            assert_eq!(a.large_communities, vec![LARGE], "{what}: large community");
            let want_ext: Vec<[u8; 8]> = if *rt { vec![RT_65000_7] } else { vec![] };
            assert_eq!(a.ext_communities, want_ext, "{what}: route target 65000:7");
            assert!(!a.atomic_aggregate, "{what}");
            assert_eq!(a.aggregator, None, "{what}");
            assert!(a.unknown.is_empty(), "{what}: {:?}", a.unknown);
            match afi {
                Afi::Ipv4 => {
                    assert_eq!(
                        a.next_hop,
                        Some(IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2))),
                        "{what}"
                    );
                    assert_eq!(a.next_hop_local, None, "{what}");
                }
                Afi::Ipv6 => {
                    assert_eq!(
                        a.next_hop,
                        Some(IpAddr::V6("fd77::2".parse().unwrap())),
                        "{what}: IPv6 global next hop"
                    );
                    if e.v6_link_local {
                        let ll: Ipv6Addr = a.next_hop_local.expect("link-local next hop");
                        assert_eq!(ll.segments()[0] & 0xffc0, 0xfe80, "{what}: {ll}");
                    } else {
                        assert_eq!(a.next_hop_local, None, "{what}");
                    }
                }
            }
        }
        // End-of-RIB for the session's family, after the announcements
        assert_eq!(
            s.eor.iter().map(|x| x.1).collect::<Vec<_>>(),
            vec![afi],
            "{} {afi:?}: one End-of-RIB",
            e.router
        );
        assert!(
            s.eor[0].0 > s.last_announce.unwrap(),
            "{} {afi:?}: End-of-RIB before the routes",
            e.router
        );
    }
}

#[test]
fn bird_updates() {
    check_updates(&BIRD);
}

#[test]
fn frr_updates() {
    check_updates(&FRR);
}

#[test]
fn gobgp_updates() {
    check_updates(&GOBGP);
}

#[test]
fn end_of_rib_markers_match_ours() {
    // RFC 4724 §2: IPv4 = empty UPDATE; IPv6 = UPDATE with only an empty MP_UNREACH.
    for c in load_all().iter().filter(|c| c.kind == "update") {
        let u = update_of(c);
        if let Some(afi) = u.end_of_rib {
            assert_eq!(afi, c.afi(), "{}", c.file);
            let ours = codec::encode_end_of_rib(afi);
            match decode_bytes("our End-of-RIB", &ours) {
                Message::Update(o) => assert_eq!(o.end_of_rib, Some(afi)),
                m => panic!("{}", m.kind()),
            }
            // all three routers send exactly the bytes we do (MP_UNREACH flags 0x80)
            assert_eq!(hexs(&ours), hexs(&c.bytes), "{}", c.file);
        }
    }
}

#[test]
fn updates_round_trip_through_encoder() {
    let enc = EncodeContext {
        asn4: true,
        max_len: MAX_LEN,
    };
    let mut n = 0;
    let mut identical = Vec::new();
    for c in load_all().iter().filter(|c| c.kind == "update") {
        let u = update_of(c);
        if u.announced.is_empty() {
            continue;
        }
        let attrs = u.attrs.clone().unwrap();
        let out = codec::encode_announce(&enc, &attrs, &u.announced);
        assert_eq!(
            out.len(),
            1,
            "{}: re-encoded into {} UPDATEs",
            c.file,
            out.len()
        );
        let what = format!("{} re-encoded as {}", c.file, hexs(&out[0]));
        let back = match decode_bytes(&what, &out[0]) {
            Message::Update(b) => b,
            m => panic!("{what}: decodes as {}", m.kind()),
        };
        assert_eq!(back.treat_as_withdraw, None, "{what}");
        assert!(back.discarded.is_empty(), "{what}: {:?}", back.discarded);
        assert_eq!(back.withdrawn, Vec::<Prefix>::new(), "{what}");
        assert_eq!(back.announced, u.announced, "{what}: prefixes");
        assert_eq!(back.attrs.as_ref(), Some(&attrs), "{what}: attributes");
        assert_eq!(back.end_of_rib, None, "{what}");
        if out[0] == c.bytes {
            identical.push(c.file.clone());
        }
        n += 1;
    }
    // at least two UPDATEs (two MEDs) per session, GoBGP's single IPv6 route in one
    assert!(n >= 11, "only {n} UPDATEs with routes");
    eprintln!(
        "{n} UPDATEs round-tripped; byte-identical to the router's: {}",
        if identical.is_empty() {
            "none".to_string()
        } else {
            identical.join(", ")
        }
    );
}

// --------------------------------------------------------------------------- the rest

#[test]
fn keepalives() {
    for c in load_all().iter().filter(|c| c.kind == "keepalive") {
        assert_eq!(decode(c), Message::Keepalive, "{}", c.file);
        assert_eq!(c.bytes, codec::encode_keepalive(), "{}", c.file);
    }
}

#[test]
fn notifications_sent_on_shutdown() {
    let mut seen = BTreeMap::new();
    for c in load_all().iter().filter(|c| c.kind == "notification") {
        let n = match decode(c) {
            Message::Notification(n) => n,
            m => panic!("{}: {}", c.file, m.kind()),
        };
        assert_eq!(n.code, 6, "{}: Cease", c.file);
        assert_eq!(codec::encode_notification(&n), c.bytes, "{}", c.file);
        seen.entry(c.router.clone())
            .or_insert_with(Vec::new)
            .push((c.afi(), n));
    }
    let shutdown = {
        let mut d = vec![SHUTDOWN_MESSAGE.len() as u8];
        d.extend_from_slice(SHUTDOWN_MESSAGE.as_bytes());
        d
    };
    // BIRD and FRR: `disable`/`neighbor shutdown message` on the IPv4 session (RFC 8203
    // shutdown communication), a plain administrative shutdown on the IPv6 one.
    for r in ["bird", "frr"] {
        let v = &seen[r];
        assert_eq!(v.len(), 2, "{r}: {v:?}");
        for (afi, n) in v {
            assert_eq!(n.subcode, 2, "{r} {afi:?}: Administrative Shutdown");
            if *afi == Afi::Ipv4 {
                assert_eq!(n.data, shutdown, "{r}");
                assert!(n.describe().contains(SHUTDOWN_MESSAGE), "{}", n.describe());
            } else {
                assert!(n.data.is_empty(), "{r}: {:?}", n.data);
            }
        }
    }
    // GoBGP on SIGTERM: Peer De-configured on both sessions
    let v = &seen["gobgp"];
    assert_eq!(v.len(), 2, "gobgp: {v:?}");
    for (afi, n) in v {
        assert_eq!((n.subcode, n.data.len()), (3, 0), "gobgp {afi:?}");
    }
}
