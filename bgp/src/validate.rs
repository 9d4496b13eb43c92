//! RFC 7606 revised error handling for UPDATE messages, done on the raw bytes before the
//! codec decodes them.
//!
//! `netgauze-bgp-pkt` reports malformed attributes but leaves the decision (session reset,
//! treat-as-withdraw, attribute discard) to the caller, and that decision needs session
//! context: iBGP or eBGP, negotiated families, 4-octet AS. This module walks the UPDATE's
//! framing and every attribute header, applies RFC 4271 §6.3 as revised by RFC 7606 §3–§7,
//! and returns a [`Verdict`]. Only a [`Verdict::Clean`] or [`Verdict::Sanitized`] body is
//! handed to the codec.

use crate::types::{codes, Afi, Notification, Prefix};

/// What the session must do with an UPDATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Well-formed: decode as is.
    Clean,
    /// Some attributes were discarded (RFC 7606 "attribute discard") or had a header
    /// normalised; decode this body instead. The strings say what was dropped, for the log.
    Sanitized(Vec<u8>, Vec<String>),
    /// RFC 7606 "treat-as-withdraw": every prefix the UPDATE carried is withdrawn.
    TreatAsWithdraw {
        prefixes: Vec<Prefix>,
        reason: String,
    },
    /// Session reset with this NOTIFICATION.
    Reset(Notification),
}

/// Session context the checks need.
#[derive(Debug, Clone)]
pub struct UpdateContext {
    pub asn4: bool,
    pub ebgp: bool,
    pub peer_as: u32,
    /// Address families negotiated (MP attributes for others are ignored).
    pub afis: Vec<Afi>,
    /// Reject paths whose first AS is not the peer's (eBGP only; RFC 4271 §6.3).
    pub enforce_first_as: bool,
}

pub const ORIGIN: u8 = 1;
pub const AS_PATH: u8 = 2;
pub const NEXT_HOP: u8 = 3;
pub const MED: u8 = 4;
pub const LOCAL_PREF: u8 = 5;
pub const ATOMIC_AGGREGATE: u8 = 6;
pub const AGGREGATOR: u8 = 7;
pub const COMMUNITIES: u8 = 8;
pub const ORIGINATOR_ID: u8 = 9;
pub const CLUSTER_LIST: u8 = 10;
pub const MP_REACH: u8 = 14;
pub const MP_UNREACH: u8 = 15;
pub const EXT_COMMUNITIES: u8 = 16;
pub const AS4_PATH: u8 = 17;
pub const AS4_AGGREGATOR: u8 = 18;
pub const LARGE_COMMUNITIES: u8 = 32;
/// RFC 9234 Only to Customer: not interpreted, passed on as an unknown attribute.
pub const ONLY_TO_CUSTOMER: u8 = 35;

pub const FLAG_OPTIONAL: u8 = 0x80;
pub const FLAG_TRANSITIVE: u8 = 0x40;
pub const FLAG_PARTIAL: u8 = 0x20;
pub const FLAG_EXTENDED: u8 = 0x10;

fn update_err(subcode: u8, data: &[u8]) -> Verdict {
    Verdict::Reset(Notification::new(codes::UPDATE, subcode, data.to_vec()))
}

/// Parses a run of NLRI entries; `None` if malformed.
pub fn parse_nlri(afi: Afi, mut buf: &[u8]) -> Option<Vec<Prefix>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (p, n) = Prefix::read_nlri(afi, buf)?;
        out.push(p);
        buf = &buf[n..];
    }
    Some(out)
}

struct RawAttr<'a> {
    flags: u8,
    code: u8,
    /// The whole attribute including its header.
    whole: &'a [u8],
    value: &'a [u8],
}

/// Checks an UPDATE body (the bytes after the 19-octet header).
pub fn check_update(body: &[u8], ctx: &UpdateContext) -> Verdict {
    // RFC 4271 §6.3 / RFC 7606 §5: lengths that cannot be reconciled reset the session.
    if body.len() < 4 {
        return update_err(codes::UPD_MALFORMED_ATTR_LIST, &[]);
    }
    let wlen = u16::from_be_bytes([body[0], body[1]]) as usize;
    if 2 + wlen + 2 > body.len() {
        return update_err(codes::UPD_MALFORMED_ATTR_LIST, &[]);
    }
    let withdrawn_raw = &body[2..2 + wlen];
    let alen = u16::from_be_bytes([body[2 + wlen], body[3 + wlen]]) as usize;
    let attrs_start = 4 + wlen;
    if attrs_start + alen > body.len() {
        return update_err(codes::UPD_MALFORMED_ATTR_LIST, &[]);
    }
    let attrs_raw = &body[attrs_start..attrs_start + alen];
    let nlri_raw = &body[attrs_start + alen..];
    let Some(withdrawn) = parse_nlri(Afi::Ipv4, withdrawn_raw) else {
        return update_err(codes::UPD_INVALID_NETWORK, &[]);
    };
    let Some(nlri) = parse_nlri(Afi::Ipv4, nlri_raw) else {
        return update_err(codes::UPD_INVALID_NETWORK, &[]);
    };

    // Every prefix the UPDATE touches, for treat-as-withdraw.
    let mut touched: Vec<Prefix> = withdrawn.iter().chain(nlri.iter()).copied().collect();
    let mut taw: Option<String> = None;
    let mut discarded: Vec<String> = Vec::new();
    let mut keep: Vec<std::borrow::Cow<'_, [u8]>> = Vec::new();
    // attributes kept with a changed header (see OTC below)
    let mut rewritten = false;
    let mut seen = [false; 256];
    let mut mp_reach_afi: Option<Afi> = None;

    let mut rest = attrs_raw;
    let mut walk_broken = false;
    while !rest.is_empty() {
        // RFC 7606 §4: an attribute header or length that overruns the attribute field
        // means treat-as-withdraw; the total attribute length still locates the NLRI.
        if rest.len() < 3 {
            taw.get_or_insert_with(|| "truncated path attribute header".into());
            walk_broken = true;
            break;
        }
        let flags = rest[0];
        let code = rest[1];
        let (hdr, vlen) = if flags & FLAG_EXTENDED != 0 {
            if rest.len() < 4 {
                taw.get_or_insert_with(|| "truncated path attribute header".into());
                walk_broken = true;
                break;
            }
            (4, u16::from_be_bytes([rest[2], rest[3]]) as usize)
        } else {
            (3, rest[2] as usize)
        };
        if hdr + vlen > rest.len() {
            taw.get_or_insert_with(|| format!("attribute {code} overruns the attribute field"));
            walk_broken = true;
            break;
        }
        let a = RawAttr {
            flags,
            code,
            whole: &rest[..hdr + vlen],
            value: &rest[hdr..hdr + vlen],
        };
        rest = &rest[hdr + vlen..];

        // §3 g: duplicates — MP_REACH/MP_UNREACH reset, others: keep the first.
        if seen[code as usize] {
            if code == MP_REACH || code == MP_UNREACH {
                return update_err(codes::UPD_MALFORMED_ATTR_LIST, &[]);
            }
            discarded.push(format!("duplicate attribute {code}"));
            continue;
        }
        seen[code as usize] = true;

        match check_attr(&a, ctx, &mut touched, &mut mp_reach_afi) {
            AttrVerdict::Keep if a.code == ONLY_TO_CUSTOMER && flags & FLAG_PARTIAL != 0 => {
                // A speaker that does not know OTC sets Partial when passing it on
                // (RFC 4271 §5), as Brindle itself does; the decoder insists on
                // Partial = 0 for OTC and would reject the whole UPDATE. Nothing reads the
                // bit here (unknown attributes are passed on with Partial set): clear it.
                let mut w = a.whole.to_vec();
                w[0] &= !FLAG_PARTIAL;
                keep.push(w.into());
                rewritten = true;
            }
            AttrVerdict::Keep => keep.push(a.whole.into()),
            AttrVerdict::Discard(why) => discarded.push(why),
            AttrVerdict::Withdraw(why) => {
                taw.get_or_insert(why);
                keep.push(a.whole.into());
            }
            AttrVerdict::Reset(n) => return Verdict::Reset(n),
        }
    }

    if taw.is_none() {
        // §3 d: missing well-known mandatory attributes → treat-as-withdraw.
        let reach = !nlri.is_empty() || mp_reach_afi.is_some();
        if reach {
            let mut missing = Vec::new();
            if !seen[ORIGIN as usize] {
                missing.push("ORIGIN");
            }
            if !seen[AS_PATH as usize] {
                missing.push("AS_PATH");
            }
            if !nlri.is_empty() && !seen[NEXT_HOP as usize] {
                missing.push("NEXT_HOP");
            }
            if !missing.is_empty() {
                taw = Some(format!(
                    "missing well-known attribute {}",
                    missing.join(", ")
                ));
            }
        }
    }

    // §5.3: treat-as-withdraw needs every NLRI located; on a session with other families
    // an MP_REACH/MP_UNREACH may hide in the part that could not be walked: reset.
    if walk_broken && ctx.afis.iter().any(|a| *a != Afi::Ipv4) {
        return update_err(codes::UPD_MALFORMED_ATTR_LIST, &[]);
    }
    if let Some(reason) = taw {
        touched.sort();
        touched.dedup();
        return Verdict::TreatAsWithdraw {
            prefixes: touched,
            reason,
        };
    }
    if discarded.is_empty() && !rewritten {
        return Verdict::Clean;
    }
    // Rebuild the body without the discarded attributes.
    let new_attrs: Vec<u8> = keep.concat();
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(&body[..2 + wlen]);
    out.extend_from_slice(&(new_attrs.len() as u16).to_be_bytes());
    out.extend_from_slice(&new_attrs);
    out.extend_from_slice(nlri_raw);
    Verdict::Sanitized(out, discarded)
}

enum AttrVerdict {
    Keep,
    Discard(String),
    Withdraw(String),
    Reset(Notification),
}

fn well_known(code: u8) -> bool {
    matches!(
        code,
        ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE
    )
}

fn known_optional(code: u8) -> Option<bool /* transitive */> {
    match code {
        MED | ORIGINATOR_ID | CLUSTER_LIST | MP_REACH | MP_UNREACH => Some(false),
        AGGREGATOR | COMMUNITIES | EXT_COMMUNITIES | AS4_PATH | AS4_AGGREGATOR
        | LARGE_COMMUNITIES => Some(true),
        _ => None,
    }
}

fn as_path_ok(v: &[u8], asn_len: usize) -> bool {
    let mut rest = v;
    while !rest.is_empty() {
        if rest.len() < 2 {
            return false;
        }
        let kind = rest[0];
        let n = rest[1] as usize;
        if !(1..=2).contains(&kind) || n == 0 {
            return false;
        }
        let need = 2 + n * asn_len;
        if rest.len() < need {
            return false;
        }
        rest = &rest[need..];
    }
    true
}

fn first_as(v: &[u8], asn_len: usize) -> Option<u32> {
    // first segment must be an AS_SEQUENCE
    if v.len() < 2 + asn_len || v[0] != 2 {
        return None;
    }
    Some(if asn_len == 4 {
        u32::from_be_bytes([v[2], v[3], v[4], v[5]])
    } else {
        u16::from_be_bytes([v[2], v[3]]) as u32
    })
}

fn check_attr(
    a: &RawAttr<'_>,
    ctx: &UpdateContext,
    touched: &mut Vec<Prefix>,
    mp_reach_afi: &mut Option<Afi>,
) -> AttrVerdict {
    let v = a.value;
    let name = a.code;
    // §3 c: flag conflicts on recognised attributes → treat-as-withdraw.
    if well_known(a.code) && (a.flags & FLAG_OPTIONAL != 0 || a.flags & FLAG_TRANSITIVE == 0) {
        return AttrVerdict::Withdraw(format!("attribute {name}: bad flags {:#04x}", a.flags));
    }
    if let Some(transitive) = known_optional(a.code) {
        if a.flags & FLAG_OPTIONAL == 0 || (a.flags & FLAG_TRANSITIVE != 0) != transitive {
            // MP attributes: their flags can't be trusted; §7.11 reset; others treat-as-withdraw
            if a.code == MP_REACH || a.code == MP_UNREACH {
                return AttrVerdict::Reset(Notification::new(
                    codes::UPDATE,
                    codes::UPD_ATTR_FLAGS,
                    a.whole.to_vec(),
                ));
            }
            if matches!(a.code, AGGREGATOR | AS4_AGGREGATOR | AS4_PATH) {
                return AttrVerdict::Discard(format!("attribute {name}: bad flags"));
            }
            return AttrVerdict::Withdraw(format!("attribute {name}: bad flags {:#04x}", a.flags));
        }
    }
    let asn_len = if ctx.asn4 { 4 } else { 2 };
    match a.code {
        ORIGIN => {
            if v.len() != 1 {
                return AttrVerdict::Withdraw("ORIGIN: bad length".into());
            }
            if v[0] > 2 {
                return AttrVerdict::Withdraw(format!("ORIGIN: invalid value {}", v[0]));
            }
        }
        AS_PATH => {
            if !as_path_ok(v, asn_len) {
                return AttrVerdict::Withdraw("malformed AS_PATH".into());
            }
            if ctx.ebgp && ctx.enforce_first_as {
                match first_as(v, asn_len) {
                    Some(f) if f == ctx.peer_as || (!ctx.asn4 && f == crate::types::AS_TRANS) => {}
                    _ => {
                        return AttrVerdict::Withdraw(format!(
                            "AS_PATH does not start with the peer's AS {}",
                            ctx.peer_as
                        ))
                    }
                }
            }
        }
        NEXT_HOP => {
            if v.len() != 4 {
                return AttrVerdict::Withdraw("NEXT_HOP: bad length".into());
            }
            let nh = std::net::Ipv4Addr::new(v[0], v[1], v[2], v[3]);
            if nh.is_unspecified() || nh.is_multicast() || nh.is_broadcast() {
                return AttrVerdict::Withdraw(format!("NEXT_HOP {nh} is not a unicast address"));
            }
        }
        MED | LOCAL_PREF | ORIGINATOR_ID => {
            // §7.5, RFC 4456: from an external peer these are discarded, whatever their length
            if ctx.ebgp && (a.code == LOCAL_PREF || a.code == ORIGINATOR_ID) {
                return AttrVerdict::Discard(format!("attribute {name} from an eBGP peer"));
            }
            if v.len() != 4 {
                return AttrVerdict::Withdraw(format!("attribute {name}: bad length"));
            }
        }
        ATOMIC_AGGREGATE => {
            if !v.is_empty() {
                return AttrVerdict::Discard("ATOMIC_AGGREGATE: bad length".into());
            }
        }
        AGGREGATOR => {
            if v.len() != 2 + asn_len + 2 {
                return AttrVerdict::Discard("AGGREGATOR: bad length".into());
            }
        }
        AS4_AGGREGATOR => {
            if v.len() != 8 || ctx.asn4 {
                // RFC 6793 §6: ignored on 4-octet sessions and when malformed
                return AttrVerdict::Discard("AS4_AGGREGATOR ignored".into());
            }
        }
        AS4_PATH => {
            if ctx.asn4 || !as_path_ok(v, 4) {
                return AttrVerdict::Discard(
                    "AS4_PATH ignored (4-octet session or malformed)".into(),
                );
            }
        }
        COMMUNITIES => {
            if v.is_empty() || !v.len().is_multiple_of(4) {
                return AttrVerdict::Withdraw("COMMUNITIES: bad length".into());
            }
        }
        EXT_COMMUNITIES => {
            if v.is_empty() || !v.len().is_multiple_of(8) {
                return AttrVerdict::Withdraw("EXTENDED_COMMUNITIES: bad length".into());
            }
        }
        LARGE_COMMUNITIES => {
            if v.is_empty() || !v.len().is_multiple_of(12) {
                return AttrVerdict::Withdraw("LARGE_COMMUNITIES: bad length".into());
            }
        }
        CLUSTER_LIST => {
            // RFC 7606 §7.10: from an external peer it is discarded, whatever its length
            if ctx.ebgp {
                return AttrVerdict::Discard("CLUSTER_LIST from an eBGP peer".into());
            }
            if v.is_empty() || !v.len().is_multiple_of(4) {
                return AttrVerdict::Withdraw("CLUSTER_LIST: bad length".into());
            }
        }
        MP_REACH => {
            // AFI(2) SAFI(1) NHLEN(1) NH RESERVED(1) NLRI
            if v.len() < 5 {
                return AttrVerdict::Reset(Notification::new(
                    codes::UPDATE,
                    codes::UPD_OPTIONAL_ATTR,
                    a.whole.to_vec(),
                ));
            }
            let afi = u16::from_be_bytes([v[0], v[1]]);
            let nhl = v[3] as usize;
            if v.len() < 4 + nhl + 1 {
                return AttrVerdict::Reset(Notification::new(
                    codes::UPDATE,
                    codes::UPD_OPTIONAL_ATTR,
                    a.whole.to_vec(),
                ));
            }
            let Some(fam) = Afi::from_code(afi, v[2]) else {
                return AttrVerdict::Discard(format!(
                    "MP_REACH_NLRI for AFI {afi} SAFI {} not supported",
                    v[2]
                ));
            };
            if !ctx.afis.contains(&fam) {
                return AttrVerdict::Discard(format!("MP_REACH_NLRI for {fam:?} not negotiated"));
            }
            let nh_ok = match fam {
                // An IPv6 next hop for IPv4 NLRI needs the RFC 8950 Extended Next Hop
                // capability, which Brindle does not offer (nor can it send such routes on)
                Afi::Ipv4 => nhl == 4,
                Afi::Ipv6 => nhl == 16 || nhl == 32,
            };
            let Some(prefixes) = parse_nlri(fam, &v[4 + nhl + 1..]) else {
                return AttrVerdict::Reset(Notification::new(
                    codes::UPDATE,
                    codes::UPD_OPTIONAL_ATTR,
                    a.whole.to_vec(),
                ));
            };
            if !nh_ok {
                // RFC 7606 §7.11: with the next hop length wrong the NLRI cannot be
                // located reliably: session reset (Brindle does not do AFI/SAFI disable)
                return AttrVerdict::Reset(Notification::new(
                    codes::UPDATE,
                    codes::UPD_OPTIONAL_ATTR,
                    a.whole.to_vec(),
                ));
            }
            touched.extend(prefixes);
            *mp_reach_afi = Some(fam);
        }
        MP_UNREACH => {
            if v.len() < 3 {
                return AttrVerdict::Reset(Notification::new(
                    codes::UPDATE,
                    codes::UPD_OPTIONAL_ATTR,
                    a.whole.to_vec(),
                ));
            }
            let afi = u16::from_be_bytes([v[0], v[1]]);
            let Some(fam) = Afi::from_code(afi, v[2]) else {
                return AttrVerdict::Discard(format!(
                    "MP_UNREACH_NLRI for AFI {afi} SAFI {} not supported",
                    v[2]
                ));
            };
            if !ctx.afis.contains(&fam) {
                return AttrVerdict::Discard(format!("MP_UNREACH_NLRI for {fam:?} not negotiated"));
            }
            let Some(prefixes) = parse_nlri(fam, &v[3..]) else {
                return AttrVerdict::Reset(Notification::new(
                    codes::UPDATE,
                    codes::UPD_OPTIONAL_ATTR,
                    a.whole.to_vec(),
                ));
            };
            touched.extend(prefixes);
        }
        _ => {
            if a.flags & FLAG_OPTIONAL == 0 {
                // RFC 4271 §6.3: unrecognised well-known attribute
                return AttrVerdict::Reset(Notification::new(
                    codes::UPDATE,
                    codes::UPD_UNRECOGNIZED_WELL_KNOWN,
                    a.whole.to_vec(),
                ));
            }
            if a.flags & FLAG_TRANSITIVE == 0 {
                // optional non-transitive unknown: quietly ignored (RFC 4271 §9)
                return AttrVerdict::Discard(format!(
                    "unknown optional non-transitive attribute {name}"
                ));
            }
        }
    }
    AttrVerdict::Keep
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> UpdateContext {
        UpdateContext {
            asn4: true,
            ebgp: true,
            peer_as: 65000,
            afis: vec![Afi::Ipv4, Afi::Ipv6],
            enforce_first_as: true,
        }
    }

    /// Builds an UPDATE body from withdrawn, attribute bytes and NLRI bytes.
    pub(crate) fn body(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
        b.extend_from_slice(withdrawn);
        b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        b.extend_from_slice(attrs);
        b.extend_from_slice(nlri);
        b
    }

    fn good_attrs() -> Vec<u8> {
        let mut a = vec![0x40, ORIGIN, 1, 0];
        a.extend_from_slice(&[0x40, AS_PATH, 6, 2, 1, 0, 0, 0xfd, 0xe8]); // SEQ [65000]
        a.extend_from_slice(&[0x40, NEXT_HOP, 4, 10, 0, 0, 2]);
        a
    }

    const NLRI: &[u8] = &[24, 192, 0, 2];

    #[test]
    fn clean_update() {
        assert_eq!(
            check_update(&body(&[], &good_attrs(), NLRI), &ctx()),
            Verdict::Clean
        );
    }

    #[test]
    fn end_of_rib_is_clean() {
        assert_eq!(check_update(&body(&[], &[], &[]), &ctx()), Verdict::Clean);
    }

    #[test]
    fn bad_lengths_reset() {
        assert!(
            matches!(check_update(&[0, 5, 0], &ctx()), Verdict::Reset(n) if n.code == 3 && n.subcode == 1)
        );
        let mut b = body(&[], &good_attrs(), NLRI);
        b[3] = 0xff; // attribute length overruns the message
        assert!(matches!(check_update(&b, &ctx()), Verdict::Reset(n) if n.subcode == 1));
        // bad NLRI prefix length
        assert!(
            matches!(check_update(&body(&[], &good_attrs(), &[33, 1, 2, 3, 4, 5]), &ctx()), Verdict::Reset(n) if n.subcode == 10)
        );
    }

    #[test]
    fn malformed_origin_is_treat_as_withdraw() {
        let mut a = good_attrs();
        a[3] = 7;
        match check_update(&body(&[], &a, NLRI), &ctx()) {
            Verdict::TreatAsWithdraw { prefixes, reason } => {
                assert_eq!(prefixes, vec!["192.0.2.0/24".parse().unwrap()]);
                assert!(reason.contains("ORIGIN"));
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn missing_mandatory_is_treat_as_withdraw() {
        let a = &good_attrs()[4..]; // no ORIGIN
        assert!(
            matches!(check_update(&body(&[], a, NLRI), &ctx()), Verdict::TreatAsWithdraw { reason, .. } if reason.contains("ORIGIN"))
        );
    }

    #[test]
    fn overrunning_attribute_is_treat_as_withdraw() {
        let mut a = good_attrs();
        a.extend_from_slice(&[0xc0, COMMUNITIES, 8, 0, 0]); // claims 8, has 2
        let v4_only = UpdateContext {
            afis: vec![Afi::Ipv4],
            ..ctx()
        };
        assert!(matches!(
            check_update(&body(&[], &a, NLRI), &v4_only),
            Verdict::TreatAsWithdraw { .. }
        ));
        // with IPv6 negotiated an MP attribute may hide in the unwalkable rest: reset
        assert!(matches!(
            check_update(&body(&[], &a, NLRI), &ctx()),
            Verdict::Reset(n) if n.subcode == codes::UPD_MALFORMED_ATTR_LIST
        ));
    }

    #[test]
    fn ebgp_local_pref_of_any_length_is_discarded() {
        let mut a = good_attrs();
        a.extend_from_slice(&[0x40, LOCAL_PREF, 2, 0, 1]);
        assert!(matches!(
            check_update(&body(&[], &a, NLRI), &ctx()),
            Verdict::Sanitized(..)
        ));
    }

    #[test]
    fn ebgp_reflection_attributes_of_any_length_are_discarded() {
        // RFC 7606 §7.10: ORIGINATOR_ID and CLUSTER_LIST from an external peer
        for bad in [
            &[0x80, ORIGINATOR_ID, 3, 1, 2, 3][..],
            &[0x80, ORIGINATOR_ID, 4, 1, 2, 3, 4][..],
            &[0x80, CLUSTER_LIST, 5, 1, 2, 3, 4, 5][..],
            &[0x80, CLUSTER_LIST, 4, 1, 2, 3, 4][..],
        ] {
            let mut a = good_attrs();
            a.extend_from_slice(bad);
            match check_update(&body(&[], &a, NLRI), &ctx()) {
                Verdict::Sanitized(b, why) => {
                    assert_eq!(b, body(&[], &good_attrs(), NLRI), "{bad:?}");
                    assert_eq!(why.len(), 1);
                }
                v => panic!("{bad:?}: {v:?}"),
            }
        }
        // from an internal peer a bad length is treat-as-withdraw (§7.9, §7.10)
        let mut c = ctx();
        c.ebgp = false;
        let mut a = good_attrs();
        a.extend_from_slice(&[0x80, CLUSTER_LIST, 5, 1, 2, 3, 4, 5]);
        assert!(matches!(
            check_update(&body(&[], &a, NLRI), &c),
            Verdict::TreatAsWithdraw { .. }
        ));
    }

    #[test]
    fn wrong_first_as_on_ebgp() {
        let mut c = ctx();
        c.peer_as = 65001;
        assert!(
            matches!(check_update(&body(&[], &good_attrs(), NLRI), &c), Verdict::TreatAsWithdraw { reason, .. } if reason.contains("65001"))
        );
        c.ebgp = false;
        assert_eq!(
            check_update(&body(&[], &good_attrs(), NLRI), &c),
            Verdict::Clean
        );
    }

    #[test]
    fn attribute_discard_rebuilds_body() {
        let mut a = good_attrs();
        a.extend_from_slice(&[0x40, ATOMIC_AGGREGATE, 1, 9]); // must be empty
        a.extend_from_slice(&[0x40, LOCAL_PREF, 4, 0, 0, 0, 100]); // from eBGP: discard
        match check_update(&body(&[], &a, NLRI), &ctx()) {
            Verdict::Sanitized(b, why) => {
                assert_eq!(b, body(&[], &good_attrs(), NLRI));
                assert_eq!(why.len(), 2);
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn duplicate_attrs() {
        let mut a = good_attrs();
        a.extend_from_slice(&[0x40, ORIGIN, 1, 1]);
        assert!(matches!(
            check_update(&body(&[], &a, NLRI), &ctx()),
            Verdict::Sanitized(..)
        ));
        let mp = [0x80, MP_UNREACH, 3, 0, 2, 1];
        let mut a = good_attrs();
        a.extend_from_slice(&mp);
        a.extend_from_slice(&mp);
        assert!(
            matches!(check_update(&body(&[], &a, NLRI), &ctx()), Verdict::Reset(n) if n.subcode == 1)
        );
    }

    #[test]
    fn unknown_well_known_resets() {
        let mut a = good_attrs();
        a.extend_from_slice(&[0x40, 99, 0]);
        assert!(
            matches!(check_update(&body(&[], &a, NLRI), &ctx()), Verdict::Reset(n) if n.subcode == 2)
        );
    }

    #[test]
    fn bad_flags_on_well_known() {
        let mut a = good_attrs();
        a[0] = 0xc0; // ORIGIN marked optional
        assert!(matches!(
            check_update(&body(&[], &a, NLRI), &ctx()),
            Verdict::TreatAsWithdraw { .. }
        ));
    }

    /// Found by fuzzing (fuzz/, target `decode`): an OTC attribute (RFC 9234) with the
    /// Partial bit set, as an OTC-unaware speaker (Brindle included) passes it on, made
    /// the decoder reject the UPDATE and every route in it was treated as withdrawn.
    #[test]
    fn fuzz_only_to_customer_with_partial_bit_is_kept() {
        let mut a = good_attrs();
        a.extend_from_slice(&[0xe0, ONLY_TO_CUSTOMER, 4, 0, 0, 0xfd, 0xe8]);
        match check_update(&body(&[], &a, NLRI), &ctx()) {
            Verdict::Sanitized(b, why) => {
                let mut want = good_attrs();
                want.extend_from_slice(&[0xc0, ONLY_TO_CUSTOMER, 4, 0, 0, 0xfd, 0xe8]);
                assert_eq!(b, body(&[], &want, NLRI));
                assert!(why.is_empty(), "{why:?}");
            }
            v => panic!("{v:?}"),
        }
        // without the Partial bit: untouched
        let mut a = good_attrs();
        a.extend_from_slice(&[0xc0, ONLY_TO_CUSTOMER, 4, 0, 0, 0xfd, 0xe8]);
        assert_eq!(check_update(&body(&[], &a, NLRI), &ctx()), Verdict::Clean);
    }

    /// Found by fuzzing (fuzz/, target `decode`): IPv4 routes in MP_REACH_NLRI with a
    /// 16-octet (IPv6) next hop were accepted although the Extended Next Hop capability
    /// (RFC 8950) is never negotiated; passed on, they went out as IPv4 UPDATEs without
    /// NEXT_HOP, which the receiver treats as withdraw. (First made treat-as-withdraw;
    /// RFC 7606 §7.11 asks for a session reset.)
    #[test]
    fn fuzz_ipv4_mp_reach_needs_an_ipv4_next_hop() {
        let mut a = good_attrs()[..13].to_vec(); // ORIGIN, AS_PATH
        let mut mp = vec![0, 1, 1, 16];
        mp.extend_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        mp.push(0);
        mp.extend_from_slice(NLRI);
        a.extend_from_slice(&[0x80, MP_REACH, mp.len() as u8]);
        a.extend_from_slice(&mp);
        // RFC 7606 §7.11: a next hop length that does not fit: session reset, with an
        // UPDATE Message Error / Optional Attribute Error carrying the attribute
        match check_update(&body(&[], &a, &[]), &ctx()) {
            Verdict::Reset(n) => {
                assert_eq!(
                    (n.code, n.subcode),
                    (codes::UPDATE, codes::UPD_OPTIONAL_ATTR)
                );
                assert_eq!(n.data[..4], [0x80, MP_REACH, mp.len() as u8, 0]);
            }
            v => panic!("{v:?}"),
        }
        // a 4-octet next hop is fine
        let mut a = good_attrs()[..13].to_vec();
        let mut mp = vec![0, 1, 1, 4, 10, 0, 0, 2, 0];
        mp.extend_from_slice(NLRI);
        a.extend_from_slice(&[0x80, MP_REACH, mp.len() as u8]);
        a.extend_from_slice(&mp);
        assert_eq!(check_update(&body(&[], &a, &[]), &ctx()), Verdict::Clean);
    }

    #[test]
    fn mp_reach_ipv6_collects_prefixes_for_withdraw() {
        let mut a = vec![0x40, ORIGIN, 1, 9]; // invalid origin value
        a.extend_from_slice(&[0x40, AS_PATH, 6, 2, 1, 0, 0, 0xfd, 0xe8]);
        let mut mp = vec![0, 2, 1, 16];
        mp.extend_from_slice(&"fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        mp.push(0);
        mp.extend_from_slice(&[48, 0x20, 0x01, 0x0d, 0xb8, 0, 1]);
        a.extend_from_slice(&[0x90, MP_REACH, 0, mp.len() as u8]);
        a.extend_from_slice(&mp);
        match check_update(&body(&[], &a, &[]), &ctx()) {
            Verdict::TreatAsWithdraw { prefixes, .. } => {
                assert_eq!(prefixes, vec!["2001:db8:1::/48".parse().unwrap()])
            }
            v => panic!("{v:?}"),
        }
    }
}
