//! BGP-4 message framing, decoding and encoding.
//!
//! Message bodies are decoded and encoded by `netgauze-bgp-pkt` (see
//! `../shared/notes/crates-and-kernel.md` for why: fuzzed, byte-exact round trips, 4-octet
//! AS aware). Around it this module owns what the crate leaves to its caller:
//! header checks with the right NOTIFICATION (RFC 4271 §6.1), message size limits with and
//! without RFC 8654 extended messages, RFC 7606 decisions (via [`crate::validate`]),
//! translation between netgauze's types and Brindle's [`PathAttrs`] (AS4_PATH merging for
//! 2-octet sessions, RFC 6793 §4.2.3), and packing many prefixes per UPDATE.
//! KEEPALIVE, NOTIFICATION and ROUTE-REFRESH are fixed tiny formats and are written by hand.

use crate::types::{
    codes, Afi, AsSegment, Notification, Origin, PathAttrs, Prefix, SegmentKind, AS_TRANS,
};
use crate::validate::{self, UpdateContext, Verdict};
use netgauze_bgp_pkt::capabilities::{
    AddPathAddressFamily, AddPathCapability, BgpCapability, FourOctetAsCapability,
    GracefulRestartAddressFamily, GracefulRestartCapability, MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::community::{Community, ExtendedCommunity, LargeCommunity};
use netgauze_bgp_pkt::nlri::{Ipv4Unicast, Ipv4UnicastAddress, Ipv6Unicast, Ipv6UnicastAddress};
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_bgp_pkt::path_attribute as pa;
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_iana::address_family::AddressType;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::{ParseFrom, ParseFromWithOneInput};
use netgauze_parse_utils::WritablePdu;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

pub const HEADER_LEN: usize = 19;
/// RFC 4271 maximum message size.
pub const MAX_LEN: usize = 4096;
/// RFC 8654 maximum once extended messages are negotiated.
pub const MAX_EXTENDED_LEN: usize = 65535;

pub const MSG_OPEN: u8 = 1;
pub const MSG_UPDATE: u8 = 2;
pub const MSG_NOTIFICATION: u8 = 3;
pub const MSG_KEEPALIVE: u8 = 4;
pub const MSG_ROUTE_REFRESH: u8 = 5;

/// Capabilities carried in an OPEN, in the form the session needs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Multiprotocol unicast families (RFC 4760).
    pub afis: Vec<Afi>,
    /// 4-octet AS (RFC 6793): the sender's real AS.
    pub four_octet_as: Option<u32>,
    pub route_refresh: bool,
    pub enhanced_route_refresh: bool,
    /// RFC 8654.
    pub extended_message: bool,
    /// RFC 4724: restart time and per-family forwarding-state bits.
    pub graceful_restart: Option<GracefulRestart>,
    /// RFC 7911: (family, send, receive).
    pub add_path: Vec<(Afi, bool, bool)>,
    pub hostname: Option<String>,
    /// Codes of capabilities we do not interpret.
    pub other: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GracefulRestart {
    pub restart_state: bool,
    pub notification: bool,
    pub time: u16,
    pub afis: Vec<(Afi, bool)>,
}

/// A decoded OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    /// The "My Autonomous System" field (AS_TRANS when the real AS needs 4 octets).
    pub my_as: u16,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    pub caps: Capabilities,
}

impl Open {
    /// The sender's AS: from the 4-octet capability when present.
    pub fn asn(&self) -> u32 {
        self.caps.four_octet_as.unwrap_or(self.my_as as u32)
    }
}

/// A decoded UPDATE in Brindle's form: IPv4 NLRI and MP_REACH/MP_UNREACH merged.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    pub withdrawn: Vec<Prefix>,
    pub announced: Vec<Prefix>,
    /// Present when `announced` is not empty.
    pub attrs: Option<PathAttrs>,
    /// End-of-RIB marker for this family (RFC 4724 §2).
    pub end_of_rib: Option<Afi>,
    /// RFC 7606: set when the UPDATE was treated as withdraw, with the reason.
    pub treat_as_withdraw: Option<String>,
    /// RFC 7606 attribute-discard notes, for the log.
    pub discarded: Vec<String>,
    /// An UPDATE may announce routes both in its NLRI field (next hop: NEXT_HOP) and in
    /// MP_REACH_NLRI (next hop: the MP_REACH one), e.g. IPv4 and IPv6 together
    /// (RFC 4760 §3). [`PathAttrs`] holds one next hop, so the MP_REACH routes come here
    /// with their own attributes; the session hands them over as a separate UPDATE.
    pub mp_reach: Option<Box<Update>>,
}

/// Any BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh { afi: u16, safi: u8, subtype: u8 },
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Open(_) => "OPEN",
            Message::Update(_) => "UPDATE",
            Message::Notification(_) => "NOTIFICATION",
            Message::Keepalive => "KEEPALIVE",
            Message::RouteRefresh { .. } => "ROUTE-REFRESH",
        }
    }
}

/// Looks at the start of `buf`: `Ok(None)` when more bytes are needed, `Ok(Some(n))` when
/// a complete message of `n` bytes is there, or the header error's NOTIFICATION.
pub fn frame(buf: &[u8], max_len: usize) -> Result<Option<usize>, Notification> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16].iter().any(|b| *b != 0xff) {
        return Err(Notification::new(
            codes::HEADER,
            codes::HDR_NOT_SYNCHRONIZED,
            vec![],
        ));
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]) as usize;
    let ty = buf[18];
    let bad_len = || {
        Notification::new(
            codes::HEADER,
            codes::HDR_BAD_LENGTH,
            (len as u16).to_be_bytes().to_vec(),
        )
    };
    if len < HEADER_LEN {
        return Err(bad_len());
    }
    let (min, max) = match ty {
        MSG_OPEN => (29, MAX_LEN),
        MSG_UPDATE => (23, max_len),
        MSG_NOTIFICATION => (21, max_len),
        MSG_KEEPALIVE => (19, 19),
        MSG_ROUTE_REFRESH => (23, max_len),
        _ => {
            return Err(Notification::new(
                codes::HEADER,
                codes::HDR_BAD_TYPE,
                vec![ty],
            ))
        }
    };
    if len < min || len > max {
        return Err(bad_len());
    }
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some(len))
}

fn parsing_ctx(asn4: bool) -> BgpParsingContext {
    // Keep malformed capabilities out of the way (we ignore what we do not understand),
    // fail hard on malformed attributes: `validate` has already applied RFC 7606.
    BgpParsingContext::new(
        asn4,
        HashMap::new(),
        HashMap::new(),
        true,
        true,
        false,
        true,
    )
}

/// Decodes one complete message (header included, as returned by [`frame`]).
/// `Err` is the NOTIFICATION to send before closing the session.
pub fn decode(msg: &[u8], ctx: &UpdateContext) -> Result<Message, Notification> {
    if msg.len() < HEADER_LEN {
        return Err(Notification::new(
            codes::HEADER,
            codes::HDR_BAD_LENGTH,
            vec![],
        ));
    }
    let body = &msg[HEADER_LEN..];
    match msg[18] {
        MSG_KEEPALIVE => Ok(Message::Keepalive),
        MSG_NOTIFICATION => {
            if body.len() < 2 {
                return Err(Notification::new(
                    codes::HEADER,
                    codes::HDR_BAD_LENGTH,
                    vec![],
                ));
            }
            Ok(Message::Notification(Notification::new(
                body[0],
                body[1],
                body[2..].to_vec(),
            )))
        }
        MSG_ROUTE_REFRESH => {
            if body.len() != 4 {
                return Err(Notification::new(
                    codes::ROUTE_REFRESH,
                    1,
                    msg.get(..HEADER_LEN + 4.min(body.len()))
                        .unwrap_or_default()
                        .to_vec(),
                ));
            }
            Ok(Message::RouteRefresh {
                afi: u16::from_be_bytes([body[0], body[1]]),
                subtype: body[2],
                safi: body[3],
            })
        }
        MSG_OPEN => decode_open(msg).map(Message::Open),
        MSG_UPDATE => decode_update(msg, ctx).map(Message::Update),
        t => Err(Notification::new(
            codes::HEADER,
            codes::HDR_BAD_TYPE,
            vec![t],
        )),
    }
}

fn decode_open(msg: &[u8]) -> Result<Open, Notification> {
    let body = &msg[HEADER_LEN..];
    if body.first() != Some(&4) {
        // RFC 4271 §6.2: data = largest supported version
        return Err(Notification::new(
            codes::OPEN,
            codes::OPEN_UNSUPPORTED_VERSION,
            vec![0, 4],
        ));
    }
    let mut ctx = parsing_ctx(false);
    let parsed = BgpMessage::parse(&mut SliceReader::new(msg), &mut ctx).map_err(|e| {
        let n: netgauze_bgp_pkt::notification::BgpNotificationMessage = e.into();
        notification_from_netgauze(&n)
    })?;
    let BgpMessage::Open(open) = parsed else {
        return Err(Notification::new(
            codes::HEADER,
            codes::HDR_BAD_TYPE,
            vec![MSG_OPEN],
        ));
    };
    let mut caps = Capabilities::default();
    for c in open.capabilities() {
        match c {
            BgpCapability::MultiProtocolExtensions(m) => match m.address_type() {
                AddressType::Ipv4Unicast => caps.afis.push(Afi::Ipv4),
                AddressType::Ipv6Unicast => caps.afis.push(Afi::Ipv6),
                _ => {}
            },
            BgpCapability::FourOctetAs(f) => caps.four_octet_as = Some(f.asn4()),
            BgpCapability::RouteRefresh | BgpCapability::CiscoRouteRefresh => {
                caps.route_refresh = true
            }
            BgpCapability::EnhancedRouteRefresh => caps.enhanced_route_refresh = true,
            BgpCapability::ExtendedMessage => caps.extended_message = true,
            BgpCapability::GracefulRestartCapability(g) => {
                caps.graceful_restart = Some(GracefulRestart {
                    restart_state: g.restart(),
                    notification: g.graceful_notification(),
                    time: g.time(),
                    afis: g
                        .address_families()
                        .iter()
                        .filter_map(|f| afi_of(f.address_type()).map(|a| (a, f.forwarding_state())))
                        .collect(),
                })
            }
            BgpCapability::AddPath(a) => {
                for f in a.address_families() {
                    if let Some(afi) = afi_of(f.address_type()) {
                        caps.add_path.push((afi, f.send(), f.receive()));
                    }
                }
            }
            BgpCapability::Fqdn(f) => caps.hostname = Some(f.hostname().to_string()),
            other => {
                if let Ok(code) = other.code() {
                    caps.other.push(code as u8)
                }
            }
        }
    }
    caps.afis.dedup();
    Ok(Open {
        version: open.version(),
        my_as: open.my_as(),
        hold_time: open.hold_time(),
        router_id: open.bgp_id(),
        caps,
    })
}

fn afi_of(t: AddressType) -> Option<Afi> {
    match t {
        AddressType::Ipv4Unicast => Some(Afi::Ipv4),
        AddressType::Ipv6Unicast => Some(Afi::Ipv6),
        _ => None,
    }
}

fn address_type(afi: Afi) -> AddressType {
    match afi {
        Afi::Ipv4 => AddressType::Ipv4Unicast,
        Afi::Ipv6 => AddressType::Ipv6Unicast,
    }
}

/// Maps netgauze's NOTIFICATION value to code/subcode/data.
pub fn notification_from_netgauze(
    n: &netgauze_bgp_pkt::notification::BgpNotificationMessage,
) -> Notification {
    let mut buf = Vec::new();
    let msg = BgpMessage::Notification(n.clone());
    if msg.write(&mut buf).is_ok() && buf.len() >= HEADER_LEN + 2 {
        return Notification::new(buf[19], buf[20], buf[21..].to_vec());
    }
    Notification::new(codes::HEADER, 0, vec![])
}

fn decode_update(msg: &[u8], ctx: &UpdateContext) -> Result<Update, Notification> {
    let body = &msg[HEADER_LEN..];
    let (sanitized, discarded) = match validate::check_update(body, ctx) {
        Verdict::Clean => (None, Vec::new()),
        Verdict::Sanitized(b, notes) => (Some(b), notes),
        Verdict::TreatAsWithdraw { prefixes, reason } => {
            return Ok(Update {
                withdrawn: prefixes,
                treat_as_withdraw: Some(reason),
                ..Default::default()
            })
        }
        Verdict::Reset(n) => return Err(n),
    };
    let owned;
    let full: &[u8] = match &sanitized {
        Some(b) => {
            let mut m = Vec::with_capacity(HEADER_LEN + b.len());
            m.extend_from_slice(&msg[..16]);
            m.extend_from_slice(&((HEADER_LEN + b.len()) as u16).to_be_bytes());
            m.push(MSG_UPDATE);
            m.extend_from_slice(b);
            owned = m;
            &owned
        }
        None => msg,
    };
    let mut pctx = parsing_ctx(ctx.asn4);
    let parsed = match BgpMessage::parse(&mut SliceReader::new(full), &mut pctx) {
        Ok(BgpMessage::Update(u)) => u,
        Ok(_) => {
            return Err(Notification::new(
                codes::HEADER,
                codes::HDR_BAD_TYPE,
                vec![MSG_UPDATE],
            ))
        }
        Err(e) => {
            // The structure was sound (validate passed), so the fault is inside an
            // attribute value: RFC 7606 prefers treat-as-withdraw over a reset.
            let prefixes = touched_prefixes(full).unwrap_or_default();
            if prefixes.is_empty() && !is_bare_eor(full) {
                let n: netgauze_bgp_pkt::notification::BgpNotificationMessage = e.into();
                return Err(notification_from_netgauze(&n));
            }
            return Ok(Update {
                withdrawn: prefixes,
                treat_as_withdraw: Some(format!("undecodable attribute: {e}")),
                discarded,
                ..Default::default()
            });
        }
    };
    let mut u = from_netgauze_update(&parsed, ctx);
    // End-of-RIB is a property of the message as sent: an UPDATE left empty by attribute
    // discard (RFC 7606) is not one.
    u.end_of_rib = end_of_rib(msg);
    // netgauze judges "unicast" on the address as sent, host bits included (242.0.0.0/3
    // passes); we keep prefixes masked (224.0.0.0/3), which our encoder then cannot send.
    // Judge the masked prefix, as for one sent without host bits: treat-as-withdraw.
    let mp = u.mp_reach.as_deref().map_or(&[][..], |m| &m.announced[..]);
    if let Some(p) = u.announced.iter().chain(mp).find(|p| !is_unicast(p)) {
        return Ok(Update {
            withdrawn: touched_prefixes(full).unwrap_or_default(),
            treat_as_withdraw: Some(format!("{p} is not a unicast prefix")),
            discarded,
            ..Default::default()
        });
    }
    u.discarded = discarded;
    if u.attrs.is_some() && u.announced.is_empty() && u.withdrawn.is_empty() {
        // attributes without NLRI: nothing to do
        u.attrs = None;
    }
    Ok(u)
}

fn is_bare_eor(msg: &[u8]) -> bool {
    msg.len() == HEADER_LEN + 4
}

/// RFC 4724 §2 End-of-RIB, judged on the raw UPDATE: empty (IPv4), or nothing but one
/// MP_UNREACH_NLRI without NLRI (other families).
pub fn end_of_rib(msg: &[u8]) -> Option<Afi> {
    let body = msg.get(HEADER_LEN..)?;
    if body.len() == 4 {
        return (body == [0, 0, 0, 0]).then_some(Afi::Ipv4);
    }
    if body.get(..2)? != [0, 0] {
        return None;
    }
    let alen = u16::from_be_bytes([*body.get(2)?, *body.get(3)?]) as usize;
    let attrs = body.get(4..)?;
    if attrs.len() != alen {
        return None; // NLRI present
    }
    let (h, l) = if attrs.first()? & validate::FLAG_EXTENDED != 0 {
        (
            4,
            u16::from_be_bytes([*attrs.get(2)?, *attrs.get(3)?]) as usize,
        )
    } else {
        (3, *attrs.get(2)? as usize)
    };
    if *attrs.get(1)? != validate::MP_UNREACH || l != 3 || attrs.len() != h + l {
        return None;
    }
    let v = &attrs[h..];
    Afi::from_code(u16::from_be_bytes([v[0], v[1]]), v[2])
}

/// All prefixes an UPDATE mentions (for treat-as-withdraw after a decoder failure).
fn touched_prefixes(msg: &[u8]) -> Option<Vec<Prefix>> {
    let body = &msg[HEADER_LEN..];
    let wlen = u16::from_be_bytes([*body.first()?, *body.get(1)?]) as usize;
    let mut out = validate::parse_nlri(Afi::Ipv4, body.get(2..2 + wlen)?)?;
    let alen = u16::from_be_bytes([*body.get(2 + wlen)?, *body.get(3 + wlen)?]) as usize;
    out.extend(validate::parse_nlri(
        Afi::Ipv4,
        body.get(4 + wlen + alen..)?,
    )?);
    let mut rest = body.get(4 + wlen..4 + wlen + alen)?;
    while rest.len() >= 3 {
        let flags = rest[0];
        let code = rest[1];
        let (h, l) = if flags & validate::FLAG_EXTENDED != 0 {
            (4, u16::from_be_bytes([rest[2], *rest.get(3)?]) as usize)
        } else {
            (3, rest[2] as usize)
        };
        let v = rest.get(h..h + l)?;
        if code == validate::MP_REACH && v.len() >= 5 {
            if let Some(afi) = Afi::from_code(u16::from_be_bytes([v[0], v[1]]), v[2]) {
                let nhl = v[3] as usize;
                out.extend(validate::parse_nlri(afi, v.get(5 + nhl..)?)?);
            }
        } else if code == validate::MP_UNREACH && v.len() >= 3 {
            if let Some(afi) = Afi::from_code(u16::from_be_bytes([v[0], v[1]]), v[2]) {
                out.extend(validate::parse_nlri(afi, &v[3..])?);
            }
        }
        rest = &rest[h + l..];
    }
    Some(out)
}

fn seg_kind(t: pa::AsPathSegmentType) -> SegmentKind {
    match t {
        pa::AsPathSegmentType::AsSet => SegmentKind::Set,
        pa::AsPathSegmentType::AsSequence => SegmentKind::Sequence,
    }
}

/// RFC 6793 §4.2.3: rebuild the 4-octet path from AS_PATH and AS4_PATH.
fn merge_as4(as_path: Vec<AsSegment>, as4: Vec<AsSegment>) -> Vec<AsSegment> {
    let len = |p: &Vec<AsSegment>| -> usize {
        p.iter()
            .map(|s| {
                if s.kind == SegmentKind::Set {
                    1
                } else {
                    s.asns.len()
                }
            })
            .sum()
    };
    let (n, m) = (len(&as_path), len(&as4));
    if m > n {
        return as_path; // ignore AS4_PATH
    }
    // keep the first n-m ASes of AS_PATH, then AS4_PATH
    let mut keep = n - m;
    let mut out = Vec::new();
    for s in as_path {
        if keep == 0 {
            break;
        }
        if s.kind == SegmentKind::Set {
            keep -= 1;
            out.push(s);
        } else {
            let take = keep.min(s.asns.len());
            keep -= take;
            out.push(AsSegment {
                kind: s.kind,
                asns: s.asns[..take].to_vec(),
            });
        }
    }
    out.extend(as4);
    out
}

fn from_netgauze_update(u: &BgpUpdateMessage, ctx: &UpdateContext) -> Update {
    let asn4 = ctx.asn4;
    let mut out = Update::default();
    out.withdrawn
        .extend(u.withdraw_routes().iter().filter_map(|a| {
            let n = a.network().address();
            Prefix::new(IpAddr::V4(n.addr()), n.prefix_len())
        }));
    out.announced.extend(u.nlri().iter().filter_map(|a| {
        let n = a.network().address();
        Prefix::new(IpAddr::V4(n.addr()), n.prefix_len())
    }));
    let mut attrs = PathAttrs::default();
    let mut as4: Option<Vec<AsSegment>> = None;
    let mut agg4: Option<(u32, Ipv4Addr)> = None;
    let mut mp_unreach_empty: Option<Afi> = None;
    let mut has_attrs = false;
    // next hops by where the routes were: NEXT_HOP for the NLRI field, MP_REACH's own
    let mut nlri_next_hop: Option<IpAddr> = None;
    let mut mp_next_hop: Option<(IpAddr, Option<std::net::Ipv6Addr>)> = None;
    let mut mp_announced: Vec<Prefix> = Vec::new();
    for a in u.path_attributes() {
        has_attrs = true;
        match a.value() {
            pa::PathAttributeValue::Origin(o) => {
                attrs.origin = Some(match o {
                    pa::Origin::IGP => Origin::Igp,
                    pa::Origin::EGP => Origin::Egp,
                    pa::Origin::Incomplete => Origin::Incomplete,
                })
            }
            pa::PathAttributeValue::AsPath(p) => {
                attrs.as_path = match p {
                    pa::AsPath::As2PathSegments(s) => s
                        .iter()
                        .map(|s| AsSegment {
                            kind: seg_kind(s.segment_type()),
                            asns: s.as_numbers().iter().map(|x| *x as u32).collect(),
                        })
                        .collect(),
                    pa::AsPath::As4PathSegments(s) => s
                        .iter()
                        .map(|s| AsSegment {
                            kind: seg_kind(s.segment_type()),
                            asns: s.as_numbers().to_vec(),
                        })
                        .collect(),
                }
            }
            pa::PathAttributeValue::As4Path(p) => {
                if !asn4 {
                    as4 = Some(
                        p.segments()
                            .iter()
                            .map(|s| AsSegment {
                                kind: seg_kind(s.segment_type()),
                                asns: s.as_numbers().to_vec(),
                            })
                            .collect(),
                    )
                }
            }
            pa::PathAttributeValue::NextHop(n) => nlri_next_hop = Some(IpAddr::V4(n.next_hop())),
            pa::PathAttributeValue::MultiExitDiscriminator(m) => attrs.med = Some(m.metric()),
            pa::PathAttributeValue::LocalPreference(l) => attrs.local_pref = Some(l.metric()),
            pa::PathAttributeValue::AtomicAggregate(_) => attrs.atomic_aggregate = true,
            pa::PathAttributeValue::Aggregator(ag) => match ag {
                pa::Aggregator::As2Aggregator(a) => {
                    if *a.asn() as u32 == AS_TRANS && agg4.is_none() {
                        attrs.aggregator = Some((AS_TRANS, a.origin()));
                    } else {
                        attrs.aggregator = Some((*a.asn() as u32, a.origin()));
                    }
                }
                pa::Aggregator::As4Aggregator(a) => {
                    if asn4 {
                        attrs.aggregator = Some((*a.asn(), a.origin()))
                    } else {
                        agg4 = Some((*a.asn(), a.origin()))
                    }
                }
            },
            pa::PathAttributeValue::Communities(c) => {
                attrs.communities = c.communities().iter().map(|c| c.value()).collect()
            }
            pa::PathAttributeValue::LargeCommunities(c) => {
                attrs.large_communities = c
                    .communities()
                    .iter()
                    .map(|c| (c.global_admin(), c.local_data1(), c.local_data2()))
                    .collect()
            }
            pa::PathAttributeValue::ExtendedCommunities(c) => {
                for e in c.communities() {
                    let mut b = Vec::with_capacity(8);
                    if e.write(&mut b).is_ok() && b.len() == 8 {
                        attrs.ext_communities.push(b.try_into().expect("8 bytes"));
                    }
                }
            }
            pa::PathAttributeValue::Originator(o) => attrs.originator_id = Some(o.id()),
            pa::PathAttributeValue::ClusterList(c) => {
                attrs.cluster_list = c.cluster_list().iter().map(|c| c.id()).collect()
            }
            pa::PathAttributeValue::MpReach(r) => match r {
                pa::MpReach::Ipv4Unicast { next_hop, nlri, .. } => {
                    mp_next_hop = Some((*next_hop, None));
                    mp_announced.extend(nlri.iter().filter_map(|a| {
                        let n = a.network().address();
                        Prefix::new(IpAddr::V4(n.addr()), n.prefix_len())
                    }));
                }
                pa::MpReach::Ipv6Unicast {
                    next_hop_global,
                    next_hop_local,
                    nlri,
                } => {
                    mp_next_hop = Some((IpAddr::V6(*next_hop_global), *next_hop_local));
                    mp_announced.extend(nlri.iter().filter_map(|a| {
                        let n = a.network().address();
                        Prefix::new(IpAddr::V6(n.addr()), n.prefix_len())
                    }));
                }
                _ => {}
            },
            pa::PathAttributeValue::MpUnreach(r) => match r {
                pa::MpUnreach::Ipv4Unicast { nlri } => {
                    if nlri.is_empty() {
                        mp_unreach_empty = Some(Afi::Ipv4);
                    }
                    out.withdrawn.extend(nlri.iter().filter_map(|a| {
                        let n = a.network().address();
                        Prefix::new(IpAddr::V4(n.addr()), n.prefix_len())
                    }))
                }
                pa::MpUnreach::Ipv6Unicast { nlri } => {
                    if nlri.is_empty() {
                        mp_unreach_empty = Some(Afi::Ipv6);
                    }
                    out.withdrawn.extend(nlri.iter().filter_map(|a| {
                        let n = a.network().address();
                        Prefix::new(IpAddr::V6(n.addr()), n.prefix_len())
                    }))
                }
                _ => {}
            },
            other => {
                // Pass on optional transitive attributes we do not interpret.
                if a.optional() && a.transitive() {
                    let mut b = Vec::new();
                    if a.write(&mut b).is_ok() && b.len() >= 3 {
                        let h = if b[0] & validate::FLAG_EXTENDED != 0 {
                            4
                        } else {
                            3
                        };
                        if b.len() >= h {
                            // Extended Length is a detail of the wire form (the
                            // encoder picks it from the value's length): leave it out so
                            // equal attributes compare equal
                            attrs.unknown.push((
                                (b[0] | validate::FLAG_PARTIAL) & !validate::FLAG_EXTENDED,
                                b[1],
                                b[h..].to_vec(),
                            ));
                        }
                    }
                }
                let _ = other;
            }
        }
    }
    if let Some(as4) = as4 {
        let merged = merge_as4(attrs.as_path.clone(), as4);
        // An eBGP neighbour prepends its own AS to AS_PATH only (a 2-octet speaker writes
        // no AS4_PATH for itself), so an AS4_PATH that would replace the neighbour's AS
        // is inconsistent; taking it would also dodge the first-AS check `validate` made
        // on AS_PATH. Ignore it then (RFC 6793 §6: AS4_PATH is the one not trusted).
        let first = |p: &[AsSegment]| match p.first() {
            Some(s) if s.kind == SegmentKind::Sequence => s.asns.first().copied(),
            _ => None,
        };
        let (neighbour, merged_first) = (first(&attrs.as_path), first(&merged));
        if !ctx.ebgp || merged_first == neighbour || merged_first == Some(ctx.peer_as) {
            attrs.as_path = merged;
        }
    }
    if let (Some(a4), Some((AS_TRANS, _))) = (agg4, attrs.aggregator) {
        attrs.aggregator = Some(a4);
    }
    if !has_attrs && out.withdrawn.is_empty() && out.announced.is_empty() {
        out.end_of_rib = Some(Afi::Ipv4);
    } else if let Some(afi) = mp_unreach_empty {
        if u.path_attributes().len() == 1 && out.withdrawn.is_empty() && out.announced.is_empty() {
            out.end_of_rib = Some(afi);
        }
    }
    if !out.announced.is_empty() {
        if !mp_announced.is_empty() {
            let mut a = attrs.clone();
            a.next_hop = mp_next_hop.map(|n| n.0);
            a.next_hop_local = mp_next_hop.and_then(|n| n.1);
            out.mp_reach = Some(Box::new(Update {
                announced: mp_announced,
                attrs: Some(a),
                ..Default::default()
            }));
        }
        attrs.next_hop = nlri_next_hop;
        out.attrs = Some(attrs);
    } else if !mp_announced.is_empty() {
        // RFC 4760 §3: without NLRI in the NLRI field, NEXT_HOP is ignored
        out.announced = mp_announced;
        attrs.next_hop = mp_next_hop.map(|n| n.0);
        attrs.next_hop_local = mp_next_hop.and_then(|n| n.1);
        out.attrs = Some(attrs);
    }
    out
}

// ---------------------------------------------------------------------------- encoding

/// What the encoder needs to know about the session.
#[derive(Debug, Clone, Copy)]
pub struct EncodeContext {
    pub asn4: bool,
    pub max_len: usize,
}

fn write_msg(m: &BgpMessage) -> Vec<u8> {
    let mut b = Vec::with_capacity(64);
    // Writing to a Vec only fails for values we never build (checked by tests).
    if let Err(e) = m.write(&mut b) {
        tracing::error!(error = ?e, "BGP encoder failed");
        b.clear();
    }
    b
}

pub fn encode_keepalive() -> Vec<u8> {
    let mut b = vec![0xff; 16];
    b.extend_from_slice(&19u16.to_be_bytes());
    b.push(MSG_KEEPALIVE);
    b
}

pub fn encode_notification(n: &Notification) -> Vec<u8> {
    let data = &n.data[..n.data.len().min(MAX_LEN - 21)];
    let mut b = vec![0xff; 16];
    b.extend_from_slice(&((21 + data.len()) as u16).to_be_bytes());
    b.push(MSG_NOTIFICATION);
    b.push(n.code);
    b.push(n.subcode);
    b.extend_from_slice(data);
    b
}

pub fn encode_route_refresh(afi: Afi) -> Vec<u8> {
    let mut b = vec![0xff; 16];
    b.extend_from_slice(&23u16.to_be_bytes());
    b.push(MSG_ROUTE_REFRESH);
    b.extend_from_slice(&afi.code().to_be_bytes());
    b.push(0);
    b.push(1);
    b
}

pub fn encode_open(o: &Open) -> Vec<u8> {
    let mut caps: Vec<BgpCapability> = Vec::new();
    for a in &o.caps.afis {
        caps.push(BgpCapability::MultiProtocolExtensions(
            MultiProtocolExtensionsCapability::new(address_type(*a)),
        ));
    }
    if o.caps.route_refresh {
        caps.push(BgpCapability::RouteRefresh);
    }
    if o.caps.enhanced_route_refresh {
        caps.push(BgpCapability::EnhancedRouteRefresh);
    }
    if o.caps.extended_message {
        caps.push(BgpCapability::ExtendedMessage);
    }
    if let Some(gr) = &o.caps.graceful_restart {
        caps.push(BgpCapability::GracefulRestartCapability(
            GracefulRestartCapability::new(
                gr.restart_state,
                gr.notification,
                gr.time,
                gr.afis
                    .iter()
                    .map(|(a, f)| GracefulRestartAddressFamily::new(*f, address_type(*a)))
                    .collect::<Vec<_>>(),
            ),
        ));
    }
    if let Some(asn) = o.caps.four_octet_as {
        caps.push(BgpCapability::FourOctetAs(FourOctetAsCapability::new(asn)));
    }
    if !o.caps.add_path.is_empty() {
        caps.push(BgpCapability::AddPath(AddPathCapability::new(
            o.caps
                .add_path
                .iter()
                .map(|(a, s, r)| AddPathAddressFamily::new(address_type(*a), *s, *r))
                .collect::<Vec<_>>(),
        )));
    }
    let params = vec![BgpOpenMessageParameter::new_capabilities(caps)];
    write_msg(&BgpMessage::Open(BgpOpenMessage::new(
        o.my_as,
        o.hold_time,
        o.router_id,
        params,
    )))
}

fn ipv4(p: &Prefix) -> Option<Ipv4UnicastAddress> {
    match p.addr() {
        IpAddr::V4(a) => ipnet::Ipv4Net::new(a, p.len())
            .ok()
            .and_then(|n| Ipv4Unicast::from_net(n).ok())
            .map(Ipv4UnicastAddress::new_no_path_id),
        _ => None,
    }
}

fn ipv6(p: &Prefix) -> Option<Ipv6UnicastAddress> {
    match p.addr() {
        IpAddr::V6(a) => ipnet::Ipv6Net::new(a, p.len())
            .ok()
            .and_then(|n| Ipv6Unicast::from_net(n).ok())
            .map(|n| Ipv6UnicastAddress::new(None, n)),
        _ => None,
    }
}

/// Whether the encoder can send `p` (netgauze's unicast NLRI rules).
fn is_unicast(p: &Prefix) -> bool {
    ipv4(p).is_some() || ipv6(p).is_some()
}

fn attr(
    optional: bool,
    transitive: bool,
    value_len: usize,
    v: pa::PathAttributeValue,
) -> Option<pa::PathAttribute> {
    pa::PathAttribute::from(optional, transitive, false, value_len > 255, v).ok()
}

fn ngz_segs(segs: &[AsSegment], asn4: bool) -> pa::AsPath {
    let t = |k: SegmentKind| match k {
        SegmentKind::Set | SegmentKind::ConfedSet => pa::AsPathSegmentType::AsSet,
        _ => pa::AsPathSegmentType::AsSequence,
    };
    if asn4 {
        pa::AsPath::As4PathSegments(
            segs.iter()
                .map(|s| pa::As4PathSegment::new(t(s.kind), s.asns.clone()))
                .collect::<Vec<_>>()
                .into(),
        )
    } else {
        pa::AsPath::As2PathSegments(
            segs.iter()
                .map(|s| {
                    pa::As2PathSegment::new(
                        t(s.kind),
                        s.asns
                            .iter()
                            .map(|a| {
                                if *a > 0xffff {
                                    AS_TRANS as u16
                                } else {
                                    *a as u16
                                }
                            })
                            .collect::<Vec<_>>(),
                    )
                })
                .collect::<Vec<_>>()
                .into(),
        )
    }
}

/// Path attributes (without MP_REACH) in netgauze form.
fn ngz_attrs(a: &PathAttrs, asn4: bool, ipv4_next_hop: bool) -> Vec<pa::PathAttribute> {
    use pa::PathAttributeValue as V;
    let mut v = Vec::new();
    let origin = match a.origin.unwrap_or(Origin::Igp) {
        Origin::Igp => pa::Origin::IGP,
        Origin::Egp => pa::Origin::EGP,
        Origin::Incomplete => pa::Origin::Incomplete,
    };
    v.extend(attr(false, true, 1, V::Origin(origin)));
    let asn_len = if asn4 { 4 } else { 2 };
    let plen: usize = a.as_path.iter().map(|s| 2 + asn_len * s.asns.len()).sum();
    v.extend(attr(
        false,
        true,
        plen,
        V::AsPath(ngz_segs(&a.as_path, asn4)),
    ));
    if ipv4_next_hop {
        if let Some(IpAddr::V4(nh)) = a.next_hop {
            v.extend(attr(false, true, 4, V::NextHop(pa::NextHop::new(nh))));
        }
    }
    if let Some(m) = a.med {
        v.extend(attr(
            true,
            false,
            4,
            V::MultiExitDiscriminator(pa::MultiExitDiscriminator::new(m)),
        ));
    }
    if let Some(l) = a.local_pref {
        v.extend(attr(
            false,
            true,
            4,
            V::LocalPreference(pa::LocalPreference::new(l)),
        ));
    }
    if a.atomic_aggregate {
        v.extend(attr(
            false,
            true,
            0,
            V::AtomicAggregate(pa::AtomicAggregate),
        ));
    }
    if let Some((asn, id)) = a.aggregator {
        let ag = if asn4 {
            pa::Aggregator::As4Aggregator(pa::As4Aggregator::new(asn, id))
        } else {
            pa::Aggregator::As2Aggregator(pa::As2Aggregator::new(
                if asn > 0xffff {
                    AS_TRANS as u16
                } else {
                    asn as u16
                },
                id,
            ))
        };
        v.extend(attr(true, true, 8, V::Aggregator(ag)));
    }
    if !a.communities.is_empty() {
        v.extend(attr(
            true,
            true,
            4 * a.communities.len(),
            V::Communities(pa::Communities::new(
                a.communities
                    .iter()
                    .map(|c| Community::new(*c))
                    .collect::<Vec<_>>(),
            )),
        ));
    }
    if let Some(id) = a.originator_id {
        v.extend(attr(true, false, 4, V::Originator(pa::Originator::new(id))));
    }
    if !a.cluster_list.is_empty() {
        v.extend(attr(
            true,
            false,
            4 * a.cluster_list.len(),
            V::ClusterList(pa::ClusterList::new(
                a.cluster_list
                    .iter()
                    .map(|c| pa::ClusterId::new(*c))
                    .collect::<Vec<_>>(),
            )),
        ));
    }
    if !a.ext_communities.is_empty() {
        let parsed: Vec<ExtendedCommunity> = a
            .ext_communities
            .iter()
            .filter_map(|b| ExtendedCommunity::parse(&mut SliceReader::new(&b[..])).ok())
            .collect();
        v.extend(attr(
            true,
            true,
            8 * parsed.len(),
            V::ExtendedCommunities(pa::ExtendedCommunities::new(parsed)),
        ));
    }
    if !asn4 && a.as_path.iter().any(|s| s.asns.iter().any(|x| *x > 0xffff)) {
        let segs: Vec<pa::As4PathSegment> = a
            .as_path
            .iter()
            .filter(|s| matches!(s.kind, SegmentKind::Sequence | SegmentKind::Set))
            .map(|s| {
                let t = if s.kind == SegmentKind::Set {
                    pa::AsPathSegmentType::AsSet
                } else {
                    pa::AsPathSegmentType::AsSequence
                };
                pa::As4PathSegment::new(t, s.asns.clone())
            })
            .collect();
        let l: usize = segs.iter().map(|s| 2 + 4 * s.as_numbers().len()).sum();
        v.extend(attr(true, true, l, V::As4Path(pa::As4Path::new(segs))));
    }
    if !a.large_communities.is_empty() {
        v.extend(attr(
            true,
            true,
            12 * a.large_communities.len(),
            V::LargeCommunities(pa::LargeCommunities::new(
                a.large_communities
                    .iter()
                    .map(|(g, l1, l2)| LargeCommunity::new(*g, *l1, *l2))
                    .collect::<Vec<_>>(),
            )),
        ));
    }
    for (flags, code, value) in &a.unknown {
        if let Ok(p) = pa::PathAttribute::from(
            true,
            true,
            flags & validate::FLAG_PARTIAL != 0,
            value.len() > 255,
            V::UnknownAttribute(pa::UnknownAttribute::new(*code, value.clone())),
        ) {
            v.push(p);
        }
    }
    v
}

fn nlri_len(p: &Prefix) -> usize {
    1 + (p.len() as usize).div_ceil(8)
}

/// Splits `prefixes` into runs whose NLRI bytes fit `budget`.
fn chunks(prefixes: &[Prefix], budget: usize) -> Vec<&[Prefix]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (i, p) in prefixes.iter().enumerate() {
        let l = nlri_len(p);
        if used + l > budget && i > start {
            out.push(&prefixes[start..i]);
            start = i;
            used = 0;
        }
        used += l;
    }
    if start < prefixes.len() {
        out.push(&prefixes[start..]);
    }
    out
}

/// Encodes withdrawals of `prefixes` (one family) into as few UPDATEs as fit.
pub fn encode_withdraw(ctx: &EncodeContext, afi: Afi, prefixes: &[Prefix]) -> Vec<Vec<u8>> {
    let budget = ctx.max_len - HEADER_LEN - 4 - if afi == Afi::Ipv6 { 4 + 3 } else { 0 };
    chunks(prefixes, budget)
        .into_iter()
        .map(|c| {
            let u = match afi {
                Afi::Ipv4 => BgpUpdateMessage::new(
                    c.iter().filter_map(ipv4).collect::<Vec<_>>(),
                    vec![],
                    vec![],
                ),
                Afi::Ipv6 => {
                    let un = pa::MpUnreach::Ipv6Unicast {
                        nlri: c.iter().filter_map(ipv6).collect::<Vec<_>>().into(),
                    };
                    let l = 3 + c.iter().map(nlri_len).sum::<usize>();
                    BgpUpdateMessage::new(
                        vec![],
                        attr(true, false, l, pa::PathAttributeValue::MpUnreach(un))
                            .into_iter()
                            .collect::<Vec<_>>(),
                        vec![],
                    )
                }
            };
            write_msg(&BgpMessage::Update(u))
        })
        .collect()
}

/// Encodes announcements of `prefixes` (one family) sharing `attrs`, packed into as few
/// UPDATEs as fit in the session's maximum message size.
pub fn encode_announce(
    ctx: &EncodeContext,
    attrs: &PathAttrs,
    prefixes: &[Prefix],
) -> Vec<Vec<u8>> {
    let Some(first) = prefixes.first() else {
        return vec![];
    };
    let afi = first.afi();
    let base = ngz_attrs(attrs, ctx.asn4, afi == Afi::Ipv4);
    let base_len: usize = base.iter().map(|a| a.len()).sum();
    let (nh_global, nh_local) = match (attrs.next_hop, attrs.next_hop_local) {
        (Some(IpAddr::V6(g)), l) => (g, l),
        _ => (std::net::Ipv6Addr::UNSPECIFIED, None),
    };
    let mp_overhead = if afi == Afi::Ipv6 {
        4 + 5 + if nh_local.is_some() { 32 } else { 16 }
    } else {
        0
    };
    let budget = ctx
        .max_len
        .saturating_sub(HEADER_LEN + 4 + base_len + mp_overhead)
        .max(32);
    chunks(prefixes, budget)
        .into_iter()
        .map(|c| {
            let u = match afi {
                Afi::Ipv4 => BgpUpdateMessage::new(
                    vec![],
                    base.clone(),
                    c.iter().filter_map(ipv4).collect::<Vec<_>>(),
                ),
                Afi::Ipv6 => {
                    let mut all = base.clone();
                    let r = pa::MpReach::Ipv6Unicast {
                        next_hop_global: nh_global,
                        next_hop_local: nh_local,
                        nlri: c.iter().filter_map(ipv6).collect::<Vec<_>>().into(),
                    };
                    let l = mp_overhead - 4 + c.iter().map(nlri_len).sum::<usize>();
                    // MP_REACH goes first, as most implementations send it
                    if let Some(a) = attr(true, false, l, pa::PathAttributeValue::MpReach(r)) {
                        all.insert(0, a);
                    }
                    BgpUpdateMessage::new(vec![], all, vec![])
                }
            };
            write_msg(&BgpMessage::Update(u))
        })
        .collect()
}

/// End-of-RIB marker for a family (RFC 4724 §2).
pub fn encode_end_of_rib(afi: Afi) -> Vec<u8> {
    match afi {
        Afi::Ipv4 => write_msg(&BgpMessage::Update(BgpUpdateMessage::new(
            vec![],
            vec![],
            vec![],
        ))),
        Afi::Ipv6 => {
            let un = pa::MpUnreach::Ipv6Unicast {
                nlri: Vec::new().into(),
            };
            write_msg(&BgpMessage::Update(BgpUpdateMessage::new(
                vec![],
                attr(true, false, 3, pa::PathAttributeValue::MpUnreach(un))
                    .into_iter()
                    .collect::<Vec<_>>(),
                vec![],
            )))
        }
    }
}

#[cfg(test)]
mod tests;
