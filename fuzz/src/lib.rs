//! The checks behind the fuzz targets, in a library so that the libFuzzer entry points
//! (`fuzz_targets/*.rs`), the seed generator (`examples/gen_corpus.rs`) and the replay tool
//! (`examples/replay.rs`) share them. Every property is an `assert!`: a failure is a
//! crash to libFuzzer.

use brindle_bgp::codec::{
    self, encode_announce, encode_notification, encode_open, encode_withdraw, frame, EncodeContext,
    Message, Open, Update, HEADER_LEN, MAX_EXTENDED_LEN, MAX_LEN, MSG_NOTIFICATION,
};
use brindle_bgp::fsm::{Action, ConnId, Session, SessionConfig};
use brindle_bgp::status::SessionState;
use brindle_bgp::types::{Afi, Prefix};
use brindle_bgp::validate::UpdateContext;
use std::net::IpAddr;
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------------ decode

/// The session contexts every decoded frame is tried with: 4-octet AS or not, eBGP or
/// iBGP, and the families negotiated.
pub fn contexts() -> Vec<UpdateContext> {
    let mut v = Vec::new();
    for asn4 in [true, false] {
        for ebgp in [true, false] {
            for afis in [vec![Afi::Ipv4, Afi::Ipv6], vec![Afi::Ipv4], vec![Afi::Ipv6]] {
                v.push(UpdateContext {
                    asn4,
                    ebgp,
                    peer_as: 65000,
                    afis,
                    enforce_first_as: ebgp,
                });
            }
        }
    }
    v
}

/// Entry point of the `decode` target.
pub fn fuzz_decode(data: &[u8]) {
    let ctxs = contexts();
    // 1. The input as a byte stream, framed as a session would.
    for max in [MAX_LEN, MAX_EXTENDED_LEN] {
        let mut buf = data;
        loop {
            match frame(buf, max) {
                Ok(None) => break,
                Ok(Some(n)) => {
                    assert!(n >= HEADER_LEN && n <= buf.len() && n <= max, "frame {n}");
                    check_frame(&buf[..n], max, &ctxs);
                    buf = &buf[n..];
                }
                Err(notif) => {
                    check_notification_encodes(&notif);
                    break;
                }
            }
        }
    }
    // 2. A valid header (marker, length, type from the first byte) in front of the rest,
    //    so the fuzzer reaches the body parsers without having to find the marker.
    if let Some((&b0, rest)) = data.split_first() {
        let body = &rest[..rest.len().min(MAX_EXTENDED_LEN - HEADER_LEN)];
        let msg = with_header(b0 % 5 + 1, body);
        for max in [MAX_LEN, MAX_EXTENDED_LEN] {
            match frame(&msg, max) {
                Ok(Some(n)) => check_frame(&msg[..n], max, &ctxs),
                Ok(None) => unreachable!("a whole message is there"),
                Err(notif) => check_notification_encodes(&notif),
            }
        }
    }
}

/// Marker, length and type in front of `body`.
pub fn with_header(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((HEADER_LEN + body.len()) as u16).to_be_bytes());
    m.push(ty);
    m.extend_from_slice(body);
    m
}

fn check_notification_encodes(n: &brindle_bgp::types::Notification) {
    let b = encode_notification(n);
    assert_eq!(frame(&b, MAX_LEN), Ok(Some(b.len())), "NOTIFICATION frames");
    assert_eq!(b[18], MSG_NOTIFICATION);
}

/// Decodes one complete frame under every context and checks the properties.
pub fn check_frame(msg: &[u8], max: usize, ctxs: &[UpdateContext]) {
    for ctx in ctxs {
        match codec::decode(msg, ctx) {
            Err(n) => check_notification_encodes(&n),
            Ok(Message::Update(u)) => check_update(&u, ctx, max),
            Ok(Message::Open(o)) => check_open(&o, ctx),
            Ok(Message::Notification(n)) => {
                // what we decode we can send back (data truncated to fit 4096)
                let b = encode_notification(&n);
                let Ok(Message::Notification(n2)) = codec::decode(&b, ctx) else {
                    panic!("re-encoded NOTIFICATION does not decode")
                };
                assert_eq!((n2.code, n2.subcode), (n.code, n.subcode));
                assert!(n.data.starts_with(&n2.data));
            }
            Ok(Message::Keepalive) => assert_eq!(msg.len(), HEADER_LEN),
            Ok(Message::RouteRefresh { .. }) => assert_eq!(msg.len(), HEADER_LEN + 4),
        }
    }
}

fn check_open(o: &Open, ctx: &UpdateContext) {
    // Our encoder writes what the session understood; decoding it again must agree.
    let b = encode_open(o);
    assert_eq!(
        frame(&b, MAX_LEN),
        Ok(Some(b.len())),
        "re-encoded OPEN frames"
    );
    let o2 = match codec::decode(&b, ctx) {
        Ok(Message::Open(o2)) => o2,
        other => panic!("re-encoded OPEN {o:?} decodes as {other:?}"),
    };
    let mut want = o.clone();
    // not re-encoded by encode_open (we never send them)
    want.caps.hostname = None;
    want.caps.other.clear();
    assert_eq!(o2, want, "OPEN round trip");
}

/// What netgauze accepts as a unicast NLRI (the encoders silently skip the rest; the
/// decoder reports them and they end up in a treat-as-withdraw list at most).
pub fn encodable(p: &Prefix) -> bool {
    match p.addr() {
        IpAddr::V4(a) => {
            let last = u32::from(a) | u32::MAX.checked_shr(p.len() as u32).unwrap_or(0);
            // ipnet's hosts().last(): the broadcast address is excluded below /31
            let last = if p.len() < 31 { last - 1 } else { last };
            let last = std::net::Ipv4Addr::from(last);
            !(a.is_broadcast() || a.is_multicast() || last.is_broadcast() || last.is_multicast())
        }
        IpAddr::V6(a) => !a.is_multicast(),
    }
}

fn of(ps: &[Prefix], afi: Afi) -> Vec<Prefix> {
    ps.iter().copied().filter(|p| p.afi() == afi).collect()
}

fn check_update(u: &Update, ctx: &UpdateContext, max: usize) {
    if let Some(mp) = &u.mp_reach {
        // the MP_REACH half of an UPDATE that also had NLRI-field routes
        assert!(!u.announced.is_empty() && !mp.announced.is_empty(), "{u:?}");
        assert!(mp.mp_reach.is_none() && mp.withdrawn.is_empty(), "{u:?}");
        check_update(mp, ctx, max);
    }
    assert!(
        u.announced.is_empty() == u.attrs.is_none(),
        "attrs present iff prefixes announced: {u:?}"
    );
    if u.treat_as_withdraw.is_some() {
        assert!(
            u.announced.is_empty(),
            "treat-as-withdraw announces nothing"
        );
    }
    for p in u.announced.iter().chain(u.withdrawn.iter()) {
        assert!(
            ctx.afis.contains(&p.afi()) || p.afi() == Afi::Ipv4,
            "{p} of a family not negotiated"
        );
    }
    let ectx = EncodeContext {
        asn4: ctx.asn4,
        max_len: max,
    };
    // Announce round trip: what we accepted we can send on and read back, unchanged.
    if let Some(attrs) = &u.attrs {
        for afi in [Afi::Ipv4, Afi::Ipv6] {
            let ps = of(&u.announced, afi);
            if ps.is_empty() {
                continue;
            }
            for p in &ps {
                assert!(encodable(p), "announced {p} cannot be encoded");
            }
            let mut got = Vec::new();
            for m in encode_announce(&ectx, attrs, &ps) {
                let u2 = decode_own(&m, ctx, max);
                assert!(
                    u2.treat_as_withdraw.is_none(),
                    "re-encoded announce of {ps:?} with {attrs:?} is treat-as-withdraw: {:?} ({m:02x?})",
                    u2.treat_as_withdraw
                );
                assert!(u2.withdrawn.is_empty() && u2.mp_reach.is_none());
                assert_eq!(
                    u2.attrs.as_ref(),
                    Some(attrs),
                    "attributes survive a round trip ({ctx:?}, {m:02x?})"
                );
                got.extend(u2.announced);
            }
            assert_eq!(got, ps, "announced prefixes survive a round trip");
        }
    }
    // Withdraw round trip of everything the UPDATE mentioned.
    for afi in [Afi::Ipv4, Afi::Ipv6] {
        let mut ps = of(&u.withdrawn, afi);
        ps.extend(of(&u.announced, afi));
        ps.retain(encodable);
        if ps.is_empty() {
            continue;
        }
        let mut got = Vec::new();
        for m in encode_withdraw(&ectx, afi, &ps) {
            let u2 = decode_own(&m, ctx, max);
            assert!(u2.treat_as_withdraw.is_none() && u2.announced.is_empty());
            assert_eq!(u2.end_of_rib, None, "a withdraw is no End-of-RIB");
            got.extend(u2.withdrawn);
        }
        assert_eq!(got, ps, "withdrawn prefixes survive a round trip");
    }
}

/// Frames and decodes a message our own encoder produced: it must be an UPDATE.
fn decode_own(m: &[u8], ctx: &UpdateContext, max: usize) -> Update {
    assert_eq!(
        frame(m, max),
        Ok(Some(m.len())),
        "re-encoded UPDATE ({} bytes) frames under {max}",
        m.len()
    );
    match codec::decode(m, ctx) {
        Ok(Message::Update(u)) => u,
        other => panic!("re-encoded UPDATE {m:02x?} decodes as {other:?}"),
    }
}

// ----------------------------------------------------------------------------- session

pub const LOCAL_AS: u32 = 64512;
pub const PEER_AS: u32 = 65000;

pub fn session_config() -> SessionConfig {
    let mut c = SessionConfig::new(
        "10.0.0.2".parse().unwrap(),
        LOCAL_AS,
        PEER_AS,
        "10.0.0.1".parse().unwrap(),
    );
    c.hold_time = 90;
    c.afis = vec![Afi::Ipv4, Afi::Ipv6];
    c
}

/// The peer's OPEN, in one of a few flavours chosen by `opts`: 4-octet AS capability or
/// not, extended messages or not, families, hold time.
pub fn peer_open(opts: u8) -> Vec<u8> {
    let four = opts & 1 == 0;
    let afis = match (opts >> 2) & 3 {
        0 => vec![Afi::Ipv4, Afi::Ipv6],
        1 => vec![Afi::Ipv4],
        2 => vec![Afi::Ipv6],
        _ => vec![],
    };
    let hold = match (opts >> 4) & 3 {
        0 => 30,
        1 => 3,
        2 => 0,
        _ => 240,
    };
    encode_open(&Open {
        version: 4,
        my_as: PEER_AS as u16,
        hold_time: hold,
        router_id: "10.0.0.2".parse().unwrap(),
        caps: codec::Capabilities {
            afis,
            four_octet_as: four.then_some(PEER_AS),
            route_refresh: true,
            extended_message: opts & 2 != 0,
            ..Default::default()
        },
    })
}

/// Checks one batch of actions a call returned.
fn check_actions(s: &Session, actions: &[Action]) {
    for (i, a) in actions.iter().enumerate() {
        match a {
            Action::Send(id, b) => {
                assert_eq!(
                    frame(b, MAX_EXTENDED_LEN),
                    Ok(Some(b.len())),
                    "sent bytes are one well-framed message"
                );
                if b[18] == MSG_NOTIFICATION {
                    assert!(
                        actions[i + 1..].contains(&Action::Close(*id)),
                        "NOTIFICATION on {id} not followed by Close: {actions:?}"
                    );
                }
                assert!(
                    !actions[..i].contains(&Action::Close(*id)),
                    "Send on {id} after its Close: {actions:?}"
                );
            }
            Action::Update(u) => {
                assert!(u.announced.is_empty() == u.attrs.is_none(), "{u:?}");
                assert!(u.mp_reach.is_none(), "the session splits mixed UPDATEs");
            }
            _ => {}
        }
    }
    // the state is one of RFC 4271's and agrees with the connections
    let st = s.state();
    assert!(matches!(
        st,
        SessionState::Idle
            | SessionState::Connect
            | SessionState::Active
            | SessionState::OpenSent
            | SessionState::OpenConfirm
            | SessionState::Established
    ));
    assert_eq!(
        st == SessionState::Established,
        s.established().is_some(),
        "state {st:?} vs established connection"
    );
    if s.conn_ids().is_empty() {
        assert!(
            matches!(
                st,
                SessionState::Idle | SessionState::Connect | SessionState::Active
            ),
            "{st:?} without a connection"
        );
    }
}

/// Entry point of the `session` target.
///
/// Input layout: `opts` (peer OPEN flavour), `k`, then `k % 16` split records of three
/// bytes (u16 split position, timer step), then the byte stream the peer sends once the
/// session is Established.
pub fn fuzz_session(data: &[u8]) {
    let Some((&opts, rest)) = data.split_first() else {
        return;
    };
    let Some((&k, mut rest)) = rest.split_first() else {
        return;
    };
    let mut splits: Vec<(usize, u8)> = Vec::new();
    for _ in 0..k % 16 {
        if rest.len() < 3 {
            break;
        }
        splits.push((u16::from_be_bytes([rest[0], rest[1]]) as usize, rest[2]));
        rest = &rest[3..];
    }
    let stream = rest;
    let mut cuts: Vec<(usize, u8)> = splits
        .iter()
        .map(|(p, dt)| {
            (
                if stream.is_empty() {
                    0
                } else {
                    p % (stream.len() + 1)
                },
                *dt,
            )
        })
        .collect();
    cuts.sort();

    let t0 = Instant::now();
    let mut d = Driver {
        s: Session::new(session_config(), t0),
        now: t0,
        id: 0,
        closed: true,
        connect_asked: true,
        opts,
    };
    let a = d.s.start(t0);
    check_actions(&d.s, &a);
    assert_eq!(a, vec![Action::Connect]);
    d.establish();

    let mut pos = 0;
    for (cut, dt) in cuts {
        d.feed(&stream[pos..cut]);
        pos = cut;
        d.now += Duration::from_millis(dt as u64 * 500);
        d.tick();
    }
    d.feed(&stream[pos..]);
    d.tick();
}

/// Plays the driver (speaker.rs) around one session: connections, bytes, time.
struct Driver {
    s: Session,
    now: Instant,
    /// The current connection.
    id: ConnId,
    /// `id` has been closed by the session.
    closed: bool,
    /// The session asked for a connection (Action::Connect) and has none yet.
    connect_asked: bool,
    opts: u8,
}

/// Connections after the first one (the session backs off, the driver reconnects).
const MAX_RECONNECTS: ConnId = 3;

impl Driver {
    /// Our connection is up (the session asked for it): OPEN, KEEPALIVE → Established.
    fn establish(&mut self) {
        assert!(self.connect_asked);
        self.id += 1;
        self.closed = false;
        self.connect_asked = false;
        let (now, id) = (self.now, self.id);
        let a = self.s.on_connected(now, id);
        check_actions(&self.s, &a);
        assert!(matches!(&a[..], [Action::Send(i, _)] if *i == id), "{a:?}");
        let a = self.s.on_bytes(now, id, &peer_open(self.opts));
        check_actions(&self.s, &a);
        assert_eq!(self.s.state(), SessionState::OpenConfirm, "{a:?}");
        let a = self.s.on_bytes(now, id, &codec::encode_keepalive());
        check_actions(&self.s, &a);
        assert!(a.contains(&Action::Established(id)), "{a:?}");
    }

    /// After a reset: let time pass until the session connects again, then establish.
    fn reconnect(&mut self) -> bool {
        if self.id > MAX_RECONNECTS {
            return false;
        }
        if self.connect_asked {
            self.establish();
            return true;
        }
        for _ in 0..16 {
            let Some(due) = self.s.next_deadline() else {
                panic!("idle after a reset with no timer: {:?}", self.s.state())
            };
            self.now = self.now.max(due);
            let a = self.s.on_timer(self.now);
            check_actions(&self.s, &a);
            if a.contains(&Action::Connect) {
                assert_eq!(self.s.state(), SessionState::Connect);
                self.connect_asked = true;
                self.establish();
                return true;
            }
        }
        panic!("no reconnect after a reset: {:?}", self.s.state());
    }

    fn feed(&mut self, bytes: &[u8]) {
        if bytes.is_empty() || (self.closed && !self.reconnect()) {
            return;
        }
        let id = self.id;
        let a = self.s.on_bytes(self.now, id, bytes);
        check_actions(&self.s, &a);
        if a.contains(&Action::Close(id)) {
            self.closed = true;
            assert!(!self.s.conn_ids().contains(&id));
            assert_ne!(self.s.state(), SessionState::Established);
            // what the peer sends after that is not read
            let a = self.s.on_bytes(self.now, id, bytes);
            assert!(a.is_empty(), "actions for a closed connection: {a:?}");
        } else {
            assert_eq!(self.s.state(), SessionState::Established, "{a:?}");
        }
    }

    fn tick(&mut self) {
        let a = self.s.on_timer(self.now);
        check_actions(&self.s, &a);
        if a.contains(&Action::Close(self.id)) {
            self.closed = true;
        }
        if a.contains(&Action::Connect) {
            assert!(self.closed && !self.connect_asked, "{a:?}");
            self.connect_asked = true;
        }
        if let Some(d) = self.s.next_deadline() {
            assert!(
                d > self.now,
                "a timer due at {d:?} was not fired at {:?}",
                self.now
            );
        }
    }
}
