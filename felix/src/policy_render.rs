//! Policy as iptables chains and ipsets: renders a resolved policy program
//! ([`brindle_model::resolved::Resolved`], from the policy compiler) into `iptables-restore` text for the
//! `filter` table and `ipset` definitions, per address family, in Felix's structure
//! (`felix/rules/static.go`, `dispatch.go`, `endpoints.go`, `policy.go`) under Brindle's
//! own names (`brl-`). Pure: applying (`iptables-restore --noflush`, ipset swaps, the
//! jumps from the kernel chains, drift repair) is the applier's.
//!
//! ```text
//! FORWARD → brl-FORWARD: clear marks; -i cali+ → brl-from-wl-dispatch; -o cali+ →
//!           brl-to-wl-dispatch; accept mark → ACCEPT
//! INPUT   → brl-INPUT:   -i cali+ → brl-from-wl-dispatch; accept mark → ACCEPT
//! brl-{from,to}-wl-dispatch: per interface goto brl-fw-<if> / brl-tw-<if>; else DROP
//! brl-tw-<if> (ingress) / brl-fw-<if> (egress): ESTABLISHED accept, INVALID drop,
//!   clear marks; per tier: clear pass, jump each policy while no pass, RETURN on accept,
//!   DROP at the end of the tier unless passed; then the profile: accept (RETURN)
//! with host endpoints (none: neither OUTPUT nor host traffic is touched):
//! INPUT   → brl-INPUT (after the above): -i cali+ / lo RETURN; clear marks;
//!           brl-from-host-endpoint; accept mark → ACCEPT
//! OUTPUT  → brl-OUTPUT: -o cali+ / lo RETURN; clear marks; brl-to-host-endpoint;
//!           accept mark → ACCEPT
//! (both, before the dispatch: IPIP / VXLAN from / to the other nodes' addresses
//!  accepted, when this node uses them)
//! brl-{from,to}-host-endpoint: per interface goto brl-fh-<if> / brl-th-<if>, the
//!   all-interfaces endpoint (`*`) last for any interface; else not policed (RETURN)
//! brl-fh-<if> (ingress) / brl-th-<if> (egress): ESTABLISHED accept, INVALID drop,
//!   brl-failsafe-in / brl-failsafe-out (ACCEPT the failsafe ports), clear marks, tiers
//!   as above, then the profile: accept with `projectcalico-default-allow`, else DROP
//! brl-pi-<policy> / brl-po-<policy>: the rules; Allow = set accept + RETURN, Deny =
//!   DROP, Pass = set pass + RETURN, Log = LOG and go on
//! ```
//! Marks as Felix's: accept 0x10000, pass 0x20000 (mask 0x30000).

use brindle_model::resolved::{
    Action, Failsafe, Members, RHostEndpoint, RRule, RSide, Resolved, TierRef, ALL_INTERFACES,
};
use ipnetwork::IpNetwork;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

pub const MARK_ACCEPT: u32 = 0x10000;
pub const MARK_PASS: u32 = 0x20000;
/// iptables' limit on chain names.
pub const MAX_CHAIN: usize = 28;
/// `multiport` takes at most 15 ports (a range counts twice).
const MULTIPORT_MAX: usize = 15;

/// IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// One ipset to create (members replaced atomically by the applier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsetDef {
    pub name: String,
    /// `hash:net` or `hash:ip,port`.
    pub kind: &'static str,
    pub members: Vec<String>,
}

/// What to program for one family in one table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rendered {
    /// `filter`, `nat`, ...
    pub table: &'static str,
    /// `iptables-restore --noflush` input for the table (only `brl-` chains, each
    /// declared and so flushed).
    pub filter: String,
    /// Per chain, the `brl:` hashes of its rules in order (what read-back must find).
    pub chains: BTreeMap<String, Vec<String>>,
    /// Per chain, its `-A` lines (the applier rewrites only the chains that differ).
    pub rules: BTreeMap<String, Vec<String>>,
    /// `brl:` hash of each policy rule's counted line → where the rule came from
    /// (`<policy> <direction> rule <n>`), for per-rule packet counters.
    pub origins: BTreeMap<String, String>,
    pub ipsets: Vec<IpsetDef>,
    /// The jumps the applier keeps in the kernel chains: first, or (`hooks_last`)
    /// anywhere, appended when missing (nat POSTROUTING goes after kube-proxy's).
    pub hooks: Vec<(String, String)>,
    pub hooks_last: bool,
    /// The ipset names (after `brl4-`/`brl6-`) this table's sets start with: the sets
    /// the applier may destroy when unwanted.
    pub set_prefixes: Vec<&'static str>,
}

fn fnv(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A chain name within iptables' limit: `prefix + key`, or `prefix + _ + hash`.
pub fn chain_name(prefix: &str, key: &str) -> String {
    let name = format!("{prefix}{key}");
    if name.len() <= MAX_CHAIN && !key.contains(char::is_whitespace) {
        name
    } else {
        format!(
            "{prefix}_{}",
            &fnv(key)[..(MAX_CHAIN - prefix.len() - 1).min(16)]
        )
    }
}

/// The ipset name of a resolved set in a family (`brl4-s:…`, at most 31 characters).
pub fn ipset_name(family: Family, set: &str) -> String {
    let p = if family == Family::V4 {
        "brl4-"
    } else {
        "brl6-"
    };
    let name = format!("{p}{set}");
    if name.len() <= 31 {
        name
    } else {
        format!("{p}{}", &fnv(set)[..16])
    }
}

fn in_family(family: Family, ip: &IpAddr) -> bool {
    ip.is_ipv4() == (family == Family::V4)
}

fn net_in_family(family: Family, n: &IpNetwork) -> bool {
    n.is_ipv4() == (family == Family::V4)
}

fn proto_name(family: Family, p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        132 => "sctp".into(),
        1 if family == Family::V4 => "icmp".into(),
        58 => "ipv6-icmp".into(),
        n => n.to_string(),
    }
}

struct Ctx {
    family: Family,
    /// Extra sets for multi-net sides.
    extra: BTreeMap<String, Vec<IpNetwork>>,
}

impl Ctx {
    fn set_match(&self, set: &str, dir: &str, negate: bool) -> String {
        format!(
            "-m set {}--match-set {} {dir}",
            if negate { "! " } else { "" },
            ipset_name(self.family, set)
        )
    }

    /// `as_set`: always an ipset match, even for one net (iptables takes one `-s`/`-d`
    /// per rule, so a side's second nets match cannot be a flag too).
    fn nets_match(
        &mut self,
        nets: &[IpNetwork],
        flag: &str,
        dir: &str,
        negate: bool,
        as_set: bool,
    ) -> Option<String> {
        let nets: Vec<IpNetwork> = nets
            .iter()
            .copied()
            .filter(|n| net_in_family(self.family, n))
            .collect();
        match nets.len() {
            0 => None,
            1 if !as_set => Some(format!(
                "{}{flag} {}",
                if negate { "! " } else { "" },
                nets[0]
            )),
            _ => {
                let key = format!("x:{}", &fnv(&format!("{nets:?}"))[..16]);
                self.extra.insert(key.clone(), nets);
                Some(self.set_match(&key, dir, negate))
            }
        }
    }

    /// The match fragments of a side that every expansion shares, or None when the side
    /// cannot match in this family (its only nets are of the other one).
    fn side_common(&mut self, s: &RSide, src: bool) -> Option<Vec<String>> {
        let (flag, dir) = if src { ("-s", "src") } else { ("-d", "dst") };
        let mut out = Vec::new();
        let mut flag_used = false;
        if !s.nets.is_empty() {
            let m = self.nets_match(&s.nets, flag, dir, false, false)?;
            flag_used = m.starts_with(flag) || m.starts_with(&format!("! {flag}"));
            out.push(m);
        }
        if let Some(m) = self.nets_match(&s.not_nets, flag, dir, true, flag_used) {
            out.push(m);
        }
        for n in &s.not_sets {
            out.push(self.set_match(n, dir, true));
        }
        Some(out)
    }
}

/// The `-p` / port fragments of a side's ports: one entry per alternative.
fn port_alternatives(
    family: Family,
    s: &RSide,
    dst: bool,
    ipset: &dyn Fn(&str) -> String,
    rule_protocol: Option<u8>,
) -> Vec<String> {
    // iptables takes one `-p`: the rule's, when it has one.
    let proto = |p: u8| {
        if rule_protocol == Some(p) {
            String::new()
        } else {
            format!("-p {} ", proto_name(family, p))
        }
    };
    let flag = if dst { "--dports" } else { "--sports" };
    let dir = if dst { "dst,dst" } else { "src,src" };
    let mut out = Vec::new();
    let mut by_proto: BTreeMap<u8, Vec<String>> = BTreeMap::new();
    for (p, a, b) in &s.ports {
        by_proto.entry(*p).or_default().push(if a == b {
            a.to_string()
        } else {
            format!("{a}:{b}")
        });
    }
    for (p, ports) in by_proto {
        let mut chunk: Vec<String> = Vec::new();
        let mut weight = 0;
        for port in ports {
            let w = if port.contains(':') { 2 } else { 1 };
            if weight + w > MULTIPORT_MAX {
                out.push(format!(
                    "{}-m multiport {flag} {}",
                    proto(p),
                    chunk.join(",")
                ));
                chunk.clear();
                weight = 0;
            }
            chunk.push(port);
            weight += w;
        }
        if !chunk.is_empty() {
            out.push(format!(
                "{}-m multiport {flag} {}",
                proto(p),
                chunk.join(",")
            ));
        }
    }
    for n in &s.named_ports {
        out.push(format!("-m set --match-set {} {dir}", ipset(n)));
    }
    for p in &s.protocols {
        out.push(proto(*p).trim_end().to_string());
    }
    out
}

fn action_lines(a: Action, origin: &str) -> Vec<String> {
    match a {
        Action::Allow => vec![
            format!("-j MARK --set-xmark {MARK_ACCEPT:#x}/{MARK_ACCEPT:#x}"),
            format!("-m mark --mark {MARK_ACCEPT:#x}/{MARK_ACCEPT:#x} -j RETURN"),
        ],
        Action::Deny => vec!["-j DROP".into()],
        Action::Pass => vec![
            format!("-j MARK --set-xmark {MARK_PASS:#x}/{MARK_PASS:#x}"),
            format!("-m mark --mark {MARK_PASS:#x}/{MARK_PASS:#x} -j RETURN"),
        ],
        Action::Log => {
            let mut prefix: String = format!("brl {origin}")
                .chars()
                .filter(|c| *c != '"')
                .take(28)
                .collect();
            prefix.push(' ');
            vec![format!("-j LOG --log-prefix \"{prefix}\"")]
        }
    }
}

fn comment(text: &str) -> String {
    let t: String = text.chars().filter(|c| *c != '"').take(200).collect();
    format!("-m comment --comment \"{t}\"")
}

/// The iptables rules (without `-A chain`) of one resolved rule in a family.
/// The iptables rules of one resolved rule, each with whether it is the rule's counted
/// line (the first of its action's lines: what the packet counters report).
fn rule_lines(ctx: &mut Ctx, r: &RRule) -> Vec<(String, bool)> {
    let family = ctx.family;
    if let Some(v) = r.ip_version {
        if (v == 4) != (family == Family::V4) {
            return Vec::new();
        }
    }
    let mut common = Vec::new();
    if let Some(p) = r.protocol {
        common.push(format!("-p {}", proto_name(family, p)));
    }
    if let Some(p) = r.not_protocol {
        common.push(format!("! -p {}", proto_name(family, p)));
    }
    let icmp = |t: &(Option<u8>, Option<u8>), negate: bool| -> Option<String> {
        let ty = t.0?;
        let v = match t.1 {
            Some(c) => format!("{ty}/{c}"),
            None => ty.to_string(),
        };
        let neg = if negate { "! " } else { "" };
        Some(if family == Family::V4 {
            format!("-m icmp {neg}--icmp-type {v}")
        } else {
            format!("-m icmp6 {neg}--icmpv6-type {v}")
        })
    };
    if let Some(m) = r.icmp.as_ref().and_then(|t| icmp(t, false)) {
        common.push(m);
    }
    if let Some(m) = r.not_icmp.as_ref().and_then(|t| icmp(t, true)) {
        common.push(m);
    }
    let Some(src_common) = ctx.side_common(&r.source, true) else {
        return Vec::new();
    };
    let Some(dst_common) = ctx.side_common(&r.destination, false) else {
        return Vec::new();
    };
    common.extend(src_common);
    common.extend(dst_common);
    let ipset = |n: &str| ipset_name(family, n);
    // not-ports: one negated fragment each (all must hold), on either side.
    for (side, flag, dir) in [
        (&r.source, "--sports", "src,src"),
        (&r.destination, "--dports", "dst,dst"),
    ] {
        for (p, a, b) in &side.not_ports {
            let port = if a == b {
                a.to_string()
            } else {
                format!("{a}:{b}")
            };
            let proto = if r.protocol == Some(*p) {
                String::new()
            } else {
                format!("-p {} ", proto_name(family, *p))
            };
            common.push(format!("{proto}-m multiport ! {flag} {port}"));
        }
        for n in &side.not_named_ports {
            common.push(format!("-m set ! --match-set {} {dir}", ipset(n)));
        }
    }
    let alts = |s: &RSide, dir: &str| -> Vec<String> {
        if s.sets.is_empty() {
            return vec![String::new()];
        }
        s.sets
            .iter()
            .map(|a| {
                let mut m = format!("-m set --match-set {} {dir}", ipset(&a.set));
                if let Some(e) = &a.except {
                    m.push_str(&format!(" -m set ! --match-set {} {dir}", ipset(e)));
                }
                m
            })
            .collect()
    };
    let src_alts = alts(&r.source, "src");
    let dst_alts = alts(&r.destination, "dst");
    let mut port_alts = port_alternatives(family, &r.destination, true, &ipset, r.protocol);
    if port_alts.is_empty() {
        port_alts.push(String::new());
    }
    let mut sport_alts = port_alternatives(family, &r.source, false, &ipset, r.protocol);
    if sport_alts.is_empty() {
        sport_alts.push(String::new());
    }
    let port_pairs: Vec<(String, String)> = sport_alts
        .iter()
        .flat_map(|sp| port_alts.iter().map(move |dp| (sp.clone(), dp.clone())))
        .collect();
    let mut out = Vec::new();
    for s in &src_alts {
        for d in &dst_alts {
            for (sp, p) in &port_pairs {
                let mut m: Vec<&str> = common.iter().map(String::as_str).collect();
                for x in [s.as_str(), d.as_str(), sp.as_str(), p.as_str()] {
                    if !x.is_empty() {
                        m.push(x);
                    }
                }
                let head = m.join(" ");
                for (k, a) in action_lines(r.action, &r.origin).into_iter().enumerate() {
                    let line = [comment(&r.origin), head.clone(), a]
                        .iter()
                        .filter(|x| !x.is_empty())
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(" ");
                    out.push((line, k == 0));
                }
            }
        }
    }
    out
}

/// A dispatch chain holds at most this many rules before it is split by interface-name
/// prefix (Felix's dispatch tree): adding or removing one endpoint then rewrites one
/// small leaf chain, not a chain of every local interface.
pub const DISPATCH_LEAF: usize = 32;

/// The dispatch chains for `ifaces` (sorted, distinct): `root` matches `flag` (`-i` or
/// `-o`) on each interface (goto `target_prefix` + interface), or, above
/// [`DISPATCH_LEAF`], on interface-name prefixes (`cali0+`) with a goto to a chain
/// `sub_prefix` + prefix that does the same for the names under it. Every dispatch
/// chain ends with the drop of an unknown interface (a goto'd chain that falls off its
/// end would return to `brl-FORWARD`, past the dispatch).
fn dispatch_chains(
    root: &str,
    sub_prefix: &str,
    target_prefix: &str,
    flag: &str,
    ifaces: &[&str],
    out: &mut Vec<(String, Vec<String>)>,
) {
    fn node(
        chain: String,
        sub_prefix: &str,
        target_prefix: &str,
        flag: &str,
        names: &[&str],
        out: &mut Vec<(String, Vec<String>)>,
    ) {
        let mut lines = Vec::new();
        if names.len() <= DISPATCH_LEAF {
            for n in names {
                lines.push(format!("{flag} {n} -g {}", chain_name(target_prefix, n)));
            }
        } else {
            // Split at the first character where the names differ.
            let first = names[0];
            let mut lcp = first.len();
            for n in &names[1..] {
                lcp = lcp.min(
                    first
                        .bytes()
                        .zip(n.bytes())
                        .take_while(|(a, b)| a == b)
                        .count(),
                );
            }
            while !first.is_char_boundary(lcp) {
                lcp -= 1;
            }
            let mut rest = names;
            // A name that is the common prefix itself: exactly, before the wildcards.
            if rest[0].len() == lcp {
                lines.push(format!(
                    "{flag} {} -g {}",
                    rest[0],
                    chain_name(target_prefix, rest[0])
                ));
                rest = &rest[1..];
            }
            while !rest.is_empty() {
                let c = rest[0][lcp..]
                    .chars()
                    .next()
                    .expect("longer than the prefix");
                let prefix = &rest[0][..lcp + c.len_utf8()];
                let k = rest.iter().take_while(|n| n.starts_with(prefix)).count();
                let sub = chain_name(sub_prefix, prefix);
                lines.push(format!("{flag} {prefix}+ -g {sub}"));
                node(sub, sub_prefix, target_prefix, flag, &rest[..k], out);
                rest = &rest[k..];
            }
        }
        lines.push(format!("{} -j DROP", comment("unknown interface")));
        out.push((chain, lines));
    }
    node(
        root.to_string(),
        sub_prefix,
        target_prefix,
        flag,
        ifaces,
        out,
    );
}

/// The chains of one policy (ingress, egress): name, lines, and per counted line its
/// origin.
type PolicyChains = Vec<(String, Vec<String>, BTreeMap<usize, String>)>;

/// Renders incrementally: a policy, an endpoint or a set is re-rendered only when its
/// resolved form changed, and a chain's `brl:` hashes are recomputed only when its lines
/// changed; the result is identical to [`render`]'s (but for [`Rendered::filter`], left
/// empty: [`Rendered::restore_text`] gives it).
#[derive(Debug)]
pub struct Renderer {
    family: Family,
    policies: BTreeMap<String, (brindle_model::resolved::RPolicy, PolicyChains, Extra)>,
    endpoints: BTreeMap<String, (brindle_model::resolved::REndpoint, [Vec<String>; 2])>,
    /// The interfaces the dispatch chains were made for, and those chains.
    dispatch: Option<(Vec<String>, Chains)>,
    /// Per chain, its lines without `-A` and hash (what the hashes were computed from).
    raw: BTreeMap<String, Vec<String>>,
    /// Per chain, the `brl:` hashes of its counted lines (to drop them from `origins`).
    chain_origins: BTreeMap<String, Vec<String>>,
    sets: BTreeMap<String, Members>,
    /// The chains of the host endpoint part (brl-OUTPUT, brl-fh-…) last rendered.
    host_chains: Vec<String>,
    out: Rendered,
}

type Extra = BTreeMap<String, Vec<IpNetwork>>;
type Chains = Vec<(String, Vec<String>)>;

impl Renderer {
    pub fn new(family: Family) -> Renderer {
        Renderer {
            family,
            policies: BTreeMap::new(),
            endpoints: BTreeMap::new(),
            dispatch: None,
            raw: BTreeMap::new(),
            chain_origins: BTreeMap::new(),
            sets: BTreeMap::new(),
            host_chains: Vec::new(),
            out: Rendered {
                table: "filter",
                hooks_last: false,
                set_prefixes: vec!["s:", "n:", "x:"],
                hooks: vec![
                    ("FORWARD".into(), "brl-FORWARD".into()),
                    ("INPUT".into(), "brl-INPUT".into()),
                ],
                ..Rendered::default()
            },
        }
    }

    /// The last rendering.
    pub fn rendered(&self) -> &Rendered {
        &self.out
    }

    /// Brings the rendering to `resolved`; returns how many chains' lines were
    /// recomputed (changed, added or removed).
    pub fn update(&mut self, resolved: &Resolved) -> usize {
        let family = self.family;
        let clear = format!("-j MARK --set-xmark 0x0/{:#x}", MARK_ACCEPT | MARK_PASS);
        let accepted = format!("-m mark --mark {MARK_ACCEPT:#x}/{MARK_ACCEPT:#x}");
        // Every chain wanted, with new lines for those (possibly) changed.
        let mut fresh: Vec<(String, Vec<String>, BTreeMap<usize, String>)> = Vec::new();
        // Chains no longer wanted: those of policies, endpoints and dispatch nodes gone.
        let mut gone: Vec<String> = Vec::new();
        if !self.raw.contains_key("brl-FORWARD") {
            fresh.push((
                "brl-FORWARD".into(),
                vec![
                    clear.clone(),
                    "-i cali+ -j brl-from-wl-dispatch".into(),
                    "-o cali+ -j brl-to-wl-dispatch".into(),
                    format!("{accepted} -j ACCEPT"),
                ],
                BTreeMap::new(),
            ));
        }
        // brl-INPUT, and with host endpoints their chains (few: rendered whole each time,
        // written only when they differ).
        let mut host: BTreeMap<String, Vec<String>> = BTreeMap::new();
        host.insert(
            "brl-INPUT".into(),
            vec![
                clear.clone(),
                "-i cali+ -j brl-from-wl-dispatch".into(),
                format!("-i cali+ {accepted} -j ACCEPT"),
            ],
        );
        if !resolved.host_endpoints.is_empty() {
            host_endpoint_chains(family, resolved, &mut host, &clear, &accepted);
        }
        let host_names: Vec<String> = host.keys().cloned().collect();
        gone.extend(
            self.host_chains
                .iter()
                .filter(|c| !host.contains_key(*c))
                .cloned(),
        );
        self.host_chains = host_names;
        for (c, l) in host {
            fresh.push((c, l, BTreeMap::new()));
        }
        self.out.hooks = vec![
            ("FORWARD".into(), "brl-FORWARD".into()),
            ("INPUT".into(), "brl-INPUT".into()),
        ];
        if !resolved.host_endpoints.is_empty() {
            self.out.hooks.push(("OUTPUT".into(), "brl-OUTPUT".into()));
        }
        // Policies.
        self.policies.retain(|k, (_, chains, _)| {
            let keep = resolved.policies.contains_key(k);
            if !keep {
                gone.extend(chains.iter().map(|c| c.0.clone()));
            }
            keep
        });
        for (key, p) in &resolved.policies {
            if self.policies.get(key).is_some_and(|(old, _, _)| old == p) {
                continue;
            }
            let mut ctx = Ctx {
                family,
                extra: BTreeMap::new(),
            };
            let mut chains = Vec::new();
            for (prefix, rules) in [("brl-pi-", &p.ingress), ("brl-po-", &p.egress)] {
                let chain = chain_name(prefix, key);
                let mut lines = Vec::new();
                let mut counted = BTreeMap::new();
                for r in rules {
                    for (l, count) in rule_lines(&mut ctx, r) {
                        if count {
                            counted.insert(lines.len(), r.origin.clone());
                        }
                        lines.push(l);
                    }
                }
                fresh.push((chain.clone(), lines.clone(), counted.clone()));
                chains.push((chain, lines, counted));
            }
            self.policies
                .insert(key.clone(), (p.clone(), chains, ctx.extra));
        }
        // Endpoints.
        let ifaces: std::collections::BTreeSet<&str> = resolved
            .endpoints
            .iter()
            .map(|e| e.iface.as_str())
            .collect();
        self.endpoints.retain(|k, _| {
            let keep = ifaces.contains(k.as_str());
            if !keep {
                gone.push(chain_name("brl-fw-", k));
                gone.push(chain_name("brl-tw-", k));
            }
            keep
        });
        for ep in &resolved.endpoints {
            let fw = chain_name("brl-fw-", &ep.iface);
            let tw = chain_name("brl-tw-", &ep.iface);
            if self
                .endpoints
                .get(&ep.iface)
                .is_some_and(|(old, _)| old == ep)
            {
                continue;
            }
            let mut both: [Vec<String>; 2] = Default::default();
            for (k, (chain, tiers, prefix)) in
                [(&tw, &ep.ingress, "brl-pi-"), (&fw, &ep.egress, "brl-po-")]
                    .into_iter()
                    .enumerate()
            {
                let mut l = vec![
                    "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT".to_string(),
                    "-m conntrack --ctstate INVALID -j DROP".to_string(),
                    clear.clone(),
                ];
                tier_lines(&mut l, tiers, prefix, &accepted);
                // The namespace's profile: allow.
                l.push(format!(
                    "-j MARK --set-xmark {MARK_ACCEPT:#x}/{MARK_ACCEPT:#x}"
                ));
                l.push("-j RETURN".into());
                fresh.push((chain.clone(), l.clone(), BTreeMap::new()));
                both[k] = l;
            }
            self.endpoints.insert(ep.iface.clone(), (ep.clone(), both));
        }
        // Dispatch (a tree above DISPATCH_LEAF interfaces).
        let names: Vec<&str> = ifaces.iter().copied().collect();
        if self
            .dispatch
            .as_ref()
            .is_none_or(|(old, _)| old.iter().map(String::as_str).ne(names.iter().copied()))
        {
            let mut chains = Vec::new();
            dispatch_chains(
                "brl-from-wl-dispatch",
                "brl-fwd-",
                "brl-fw-",
                "-i",
                &names,
                &mut chains,
            );
            dispatch_chains(
                "brl-to-wl-dispatch",
                "brl-twd-",
                "brl-tw-",
                "-o",
                &names,
                &mut chains,
            );
            for (c, l) in &chains {
                fresh.push((c.clone(), l.clone(), BTreeMap::new()));
            }
            if let Some((_, old)) = &self.dispatch {
                let now: std::collections::BTreeSet<&String> =
                    chains.iter().map(|c| &c.0).collect();
                gone.extend(
                    old.iter()
                        .map(|c| &c.0)
                        .filter(|c| !now.contains(c))
                        .cloned(),
                );
            }
            self.dispatch = Some((names.iter().map(|n| n.to_string()).collect(), chains));
        }

        // Chains no longer wanted, then the changed ones (hashes chained from the chain's
        // name and the rules before, as Felix's `cali:` hashes).
        let mut changed = 0;
        // (A chain both gone and fresh, e.g. an endpoint's iface reused: fresh wins.)
        let fresh_names: std::collections::BTreeSet<&String> = fresh.iter().map(|f| &f.0).collect();
        gone.retain(|c| !fresh_names.contains(c));
        for c in gone {
            if self.raw.remove(&c).is_none() {
                continue;
            }
            self.out.chains.remove(&c);
            self.out.rules.remove(&c);
            for h in self.chain_origins.remove(&c).unwrap_or_default() {
                self.out.origins.remove(&h);
            }
            changed += 1;
        }
        for (name, lines, counted) in fresh {
            if self.raw.get(&name) == Some(&lines) {
                continue;
            }
            changed += 1;
            for h in self.chain_origins.remove(&name).unwrap_or_default() {
                self.out.origins.remove(&h);
            }
            let mut prev = name.clone();
            let mut hashes = Vec::with_capacity(lines.len());
            let mut full = Vec::with_capacity(lines.len());
            let mut origin_hashes = Vec::new();
            for (i, l) in lines.iter().enumerate() {
                let h = fnv(&format!("{prev}\n{l}"))[..16].to_string();
                if let Some(o) = counted.get(&i) {
                    self.out.origins.insert(h.clone(), o.clone());
                    origin_hashes.push(h.clone());
                }
                full.push(format!("-A {name} -m comment --comment \"brl:{h}\" {l}"));
                hashes.push(h.clone());
                prev = h;
            }
            if !origin_hashes.is_empty() {
                self.chain_origins.insert(name.clone(), origin_hashes);
            }
            self.out.chains.insert(name.clone(), hashes);
            self.out.rules.insert(name.clone(), full);
            self.raw.insert(name, lines);
        }

        // Sets: the resolved ones, then the extra sets of multi-net sides.
        let mut extra: BTreeMap<&String, &Vec<IpNetwork>> = BTreeMap::new();
        for (_, _, e) in self.policies.values() {
            extra.extend(e.iter());
        }
        let mut old: BTreeMap<String, IpsetDef> = std::mem::take(&mut self.out.ipsets)
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        self.sets.retain(|k, _| resolved.sets.contains_key(k));
        let mut ipsets = Vec::with_capacity(resolved.sets.len() + extra.len());
        for (name, m) in &resolved.sets {
            let iname = ipset_name(family, name);
            if self.sets.get(name) == Some(m) {
                if let Some(d) = old.remove(&iname) {
                    ipsets.push(d);
                    continue;
                }
            }
            self.sets.insert(name.clone(), m.clone());
            ipsets.push(match m {
                Members::Nets(nets) => IpsetDef {
                    name: iname,
                    kind: "hash:net",
                    members: nets
                        .iter()
                        .filter(|n| net_in_family(family, n))
                        .map(|n| n.to_string())
                        .collect(),
                },
                Members::IpPorts(v) => IpsetDef {
                    name: iname,
                    kind: "hash:ip,port",
                    members: v
                        .iter()
                        .filter(|(ip, _, _)| in_family(family, ip))
                        .map(|(ip, p, port)| format!("{ip},{}:{port}", proto_name(family, *p)))
                        .collect(),
                },
            });
        }
        for (name, nets) in extra {
            let iname = ipset_name(family, name);
            ipsets.push(old.remove(&iname).unwrap_or_else(|| IpsetDef {
                name: iname,
                kind: "hash:net",
                members: nets.iter().map(|n| n.to_string()).collect(),
            }));
        }
        if !resolved.host_endpoints.is_empty() && (resolved.ipip || resolved.vxlan) {
            ipsets.push(IpsetDef {
                name: ipset_name(family, TUNNEL_HOSTS_SET),
                kind: "hash:net",
                members: resolved
                    .tunnel_hosts
                    .iter()
                    .filter(|ip| in_family(family, ip))
                    .map(|ip| {
                        IpNetwork::new(*ip, if ip.is_ipv4() { 32 } else { 128 })
                            .expect("host prefix")
                            .to_string()
                    })
                    .collect(),
            });
        }
        self.out.ipsets = ipsets;
        changed
    }
}

/// The set of the other nodes' addresses (encapsulated traffic with them is accepted).
const TUNNEL_HOSTS_SET: &str = "x:tunnel-hosts";
/// Brindle's VXLAN port.
const VXLAN_PORT: u16 = crate::calc::VXLAN_PORT;

/// The chain key of the all-interfaces host endpoint (as Felix's `any-interface-at-all`).
const ALL_INTERFACES_KEY: &str = "any-interface-at-all";

/// Host endpoints (normal policy), in Felix's structure: brl-INPUT goes on, after the
/// workload part, to `brl-from-host-endpoint` (per interface goto `brl-fh-<if>`, the
/// all-interfaces endpoint last and for any interface); brl-OUTPUT skips traffic to
/// workloads and `lo` and goes to `brl-to-host-endpoint` (`brl-th-<if>`). Each endpoint
/// chain: ESTABLISHED accept, INVALID drop, the failsafe ports (accept), clear marks,
/// tiers as a workload's, then the profile: accept with `projectcalico-default-allow`,
/// else drop. An interface no host endpoint names is not policed.
fn host_endpoint_chains(
    family: Family,
    r: &Resolved,
    chains: &mut BTreeMap<String, Vec<String>>,
    clear: &str,
    accepted: &str,
) {
    // The encapsulated pod network from and to the other nodes (Felix: "Allow IPIP
    // packets from Calico hosts", VXLAN likewise), before host endpoint policy.
    let hosts = ipset_name(family, TUNNEL_HOSTS_SET);
    let tunnel = |dir: &str| -> Vec<String> {
        let mut v = Vec::new();
        if r.ipip && family == Family::V4 {
            v.push(format!(
                "-p 4 -m set --match-set {hosts} {dir} {} -j ACCEPT",
                comment("IPIP with Calico hosts")
            ));
        }
        if r.vxlan {
            v.push(format!(
                "-p udp -m udp --dport {VXLAN_PORT} -m set --match-set {hosts} {dir} {} -j ACCEPT",
                comment("VXLAN with Calico hosts")
            ));
        }
        v
    };
    let (tunnel_in, tunnel_out) = (tunnel("src"), tunnel("dst"));
    let input = chains.get_mut("brl-INPUT").expect("rendered above");
    input.extend([
        format!(
            "-i cali+ {} -j RETURN",
            comment("workload traffic is not host endpoint traffic")
        ),
        "-i lo -j RETURN".to_string(),
    ]);
    input.extend(tunnel_in);
    input.extend([
        clear.to_string(),
        "-j brl-from-host-endpoint".to_string(),
        format!(
            "{accepted} {} -j ACCEPT",
            comment("host endpoint policy accepted")
        ),
    ]);
    let mut output = vec![
        format!("-o cali+ {} -j RETURN", comment("to a workload")),
        "-o lo -j RETURN".to_string(),
    ];
    output.extend(tunnel_out);
    output.extend([
        clear.to_string(),
        "-j brl-to-host-endpoint".to_string(),
        format!(
            "{accepted} {} -j ACCEPT",
            comment("host endpoint policy accepted")
        ),
    ]);
    chains.insert("brl-OUTPUT".into(), output);
    let failsafe = |list: &[Failsafe], src: bool| -> Vec<String> {
        list.iter()
            .filter(|f| f.net.is_none_or(|n| net_in_family(family, &n)))
            .map(|f| {
                let net = match f.net {
                    Some(n) if src => format!("-s {n} "),
                    Some(n) => format!("-d {n} "),
                    None => String::new(),
                };
                format!(
                    "-p {p} {net}-m {p} --dport {} {} -j ACCEPT",
                    f.port,
                    comment(&format!("failsafe {}", f.label())),
                    p = proto_name(family, f.protocol),
                )
            })
            .collect()
    };
    chains.insert(
        "brl-failsafe-in".into(),
        failsafe(&r.failsafe_inbound, true),
    );
    chains.insert(
        "brl-failsafe-out".into(),
        failsafe(&r.failsafe_outbound, false),
    );
    let mut hosts: Vec<&RHostEndpoint> = r.host_endpoints.iter().collect();
    // Named interfaces first (by name), the all-interfaces endpoint last; one endpoint
    // per interface (the first by name).
    hosts.sort_by_key(|h| (h.iface == ALL_INTERFACES, h.iface.clone(), h.name.clone()));
    hosts.dedup_by(|a, b| a.iface == b.iface);
    let mut from = Vec::new();
    let mut to = Vec::new();
    for h in hosts {
        let key = if h.iface == ALL_INTERFACES {
            ALL_INTERFACES_KEY
        } else {
            h.iface.as_str()
        };
        let fh = chain_name("brl-fh-", key);
        let th = chain_name("brl-th-", key);
        let note = comment(&format!("HostEndpoint {}", h.name));
        if h.iface == ALL_INTERFACES {
            from.push(format!("{note} -g {fh}"));
            to.push(format!("{note} -g {th}"));
        } else {
            from.push(format!("-i {} {note} -g {fh}", h.iface));
            to.push(format!("-o {} {note} -g {th}", h.iface));
        }
        for (chain, tiers, prefix, fs) in [
            (&fh, &h.ingress, "brl-pi-", "brl-failsafe-in"),
            (&th, &h.egress, "brl-po-", "brl-failsafe-out"),
        ] {
            let mut l = vec![
                "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT".to_string(),
                "-m conntrack --ctstate INVALID -j DROP".to_string(),
                format!("-j {fs}"),
                clear.to_string(),
            ];
            tier_lines(&mut l, tiers, prefix, accepted);
            if h.profile_allows {
                l.push(format!(
                    "{} -j MARK --set-xmark {MARK_ACCEPT:#x}/{MARK_ACCEPT:#x}",
                    comment("profile projectcalico-default-allow")
                ));
                l.push("-j RETURN".into());
            } else {
                l.push(format!("{} -j DROP", comment("no profile allowed")));
            }
            chains.insert(chain.clone(), l);
        }
    }
    chains.insert("brl-from-host-endpoint".into(), from);
    chains.insert("brl-to-host-endpoint".into(), to);
}

/// A tier list as jumps to the policies' chains with Felix's pass/accept marks and the
/// end-of-tier drop.
fn tier_lines(l: &mut Vec<String>, tiers: &[TierRef], prefix: &str, accepted: &str) {
    for t in tiers {
        l.push(format!("-j MARK --set-xmark 0x0/{MARK_PASS:#x}"));
        for p in &t.policies {
            l.push(format!(
                "-m mark --mark 0x0/{MARK_PASS:#x} -j {}",
                chain_name(prefix, p)
            ));
            l.push(format!("{accepted} -j RETURN"));
        }
        l.push(format!(
            "-m mark --mark 0x0/{MARK_PASS:#x} {} -j DROP",
            comment(&format!("end of tier {}", t.name))
        ));
    }
}

impl Rendered {
    /// The `iptables-restore --noflush` text of every chain (each declared, so flushed).
    pub fn restore_text(&self) -> String {
        let mut t = format!("*{}\n", self.table);
        for name in self.rules.keys() {
            let _ = writeln!(t, ":{name} - [0:0]");
        }
        for lines in self.rules.values() {
            for l in lines {
                t.push_str(l);
                t.push('\n');
            }
        }
        t.push_str("COMMIT\n");
        t
    }
}

/// Renders the filter table and ipsets for one family (all of it; [`Renderer`] renders
/// only what changed since its last update).
pub fn render(resolved: &Resolved, family: Family) -> Rendered {
    let mut r = Renderer::new(family);
    r.update(resolved);
    let mut out = r.out;
    out.filter = out.restore_text();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use brindle_policies::resolve::resolve;
    use brindle_policies::world::NamedPort;
    use brindle_policies::{Endpoint, Program, World};

    fn world() -> World {
        let mut w = World::default();
        for (name, app, ip) in [("web", "web", "10.1.0.1"), ("db", "db", "10.1.0.2")] {
            w.add_endpoint(Endpoint {
                namespace: "shop".into(),
                name: name.into(),
                labels: std::sync::Arc::new([("app".to_string(), app.to_string())].into()),
                ips: vec![ip.parse().unwrap()],
                named_ports: vec![NamedPort {
                    name: "pg".into(),
                    protocol: 6,
                    port: 5432,
                }],
                service_account: String::new(),
                host: None,
            });
        }
        w
    }

    fn program(yaml: &str) -> Program {
        let cfg = brindle_model::parse("p.yaml", yaml).unwrap();
        brindle_policies::program_of(&cfg).0
    }

    /// The text without the `brl:` hash comments.
    fn plain(f: &str) -> String {
        f.lines()
            .map(|l| match l.find("-m comment --comment \"brl:") {
                Some(i) => format!("{}{}", &l[..i], &l[i + 44..]),
                None => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"
    }

    #[test]
    fn felix_structure_for_a_kubernetes_policy() {
        let p = program(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 5432}, {port: 6000, endPort: 6010}]}]\n",
        );
        let w = world();
        let r = resolve(
            &p,
            &w,
            &[
                ("caliaaa".into(), "10.1.0.1".parse().unwrap()),
                ("calibbb".into(), "10.1.0.2".parse().unwrap()),
            ],
        );
        let out = render(&r, Family::V4);
        let f = &plain(&out.filter);
        // Every rule is hashed, and the hashes are listed per chain.
        let rules = out.filter.lines().filter(|l| l.starts_with("-A ")).count();
        assert_eq!(out.chains.values().map(Vec::len).sum::<usize>(), rules);
        assert!(out
            .filter
            .lines()
            .filter(|l| l.starts_with("-A "))
            .all(|l| l.contains("--comment \"brl:")));
        assert!(f.starts_with("*filter\n:brl-FORWARD - [0:0]\n"), "{f}");
        assert!(f.ends_with("COMMIT\n"));
        assert!(
            f.contains("-A brl-to-wl-dispatch -o calibbb -g brl-tw-calibbb\n"),
            "{f}"
        );
        assert!(f.contains(
            "-A brl-to-wl-dispatch -m comment --comment \"unknown interface\" -j DROP\n"
        ));
        // db's ingress: the policy, then the end-of-tier drop, then the profile.
        let tw: Vec<&str> = f
            .lines()
            .filter(|l| l.starts_with("-A brl-tw-calibbb "))
            .collect();
        assert_eq!(
            tw[0],
            "-A brl-tw-calibbb -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
        );
        assert!(
            tw.contains(&"-A brl-tw-calibbb -m mark --mark 0x0/0x20000 -j brl-pi-knp/shop/db"),
            "{tw:?}"
        );
        assert!(tw
            .iter()
            .any(|l| l.contains("end of tier default") && l.ends_with("-j DROP")));
        // web has no policy: straight to the profile.
        let web: Vec<&str> = f
            .lines()
            .filter(|l| l.starts_with("-A brl-tw-caliaaa "))
            .collect();
        assert_eq!(web.len(), 5, "{web:?}");
        // The policy chain: source set, one multiport for both ports, accept + RETURN.
        let pi: Vec<&str> = f
            .lines()
            .filter(|l| l.starts_with("-A brl-pi-knp/shop/db "))
            .collect();
        assert_eq!(pi.len(), 2, "{pi:?}");
        assert!(pi[0].contains("-m set --match-set brl4-s:") && pi[0].contains(" src -p tcp -m multiport --dports 5432,6000:6010 -j MARK --set-xmark 0x10000/0x10000"), "{}", pi[0]);
        assert!(pi[0].contains("--comment \"KubernetesNetworkPolicy shop/db ingress rule 0\""));
        let set = out.ipsets.iter().find(|s| s.kind == "hash:net").unwrap();
        assert_eq!(set.members, vec!["10.1.0.1/32"]);
        assert!(set.name.len() <= 31);
        // No IPv6 endpoint address: the v6 set is empty but the structure is the same.
        let v6 = render(&r, Family::V6);
        assert!(v6.ipsets.iter().all(|s| s.members.is_empty()));
    }

    #[test]
    fn one_net_and_one_not_net_give_one_address_flag() {
        // `-s A ! -s B` is refused by iptables (one -s per rule): the whole restore failed.
        let p = program(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: nets}\nspec:\n  selector: all()\n  ingress:\n\
             \x20   - {action: Allow, source: {nets: [10.1.0.0/26], notNets: [10.1.0.3/32]}, destination: {nets: [10.1.0.0/16], notNets: [10.1.0.9/32]}}\n",
        );
        let w = world();
        let r = resolve(&p, &w, &[("calibbb".into(), "10.1.0.2".parse().unwrap())]);
        let out = render(&r, Family::V4);
        let f = plain(&out.filter);
        let name = chain_name("brl-pi-", "gnp/nets");
        let pi: Vec<&str> = f
            .lines()
            .filter(|l| l.starts_with(&format!("-A {name} ")))
            .collect();
        assert!(!pi.is_empty(), "{f}");
        for l in &pi {
            assert!(l.matches(" -s ").count() <= 1, "{l}");
            assert!(l.matches(" -d ").count() <= 1, "{l}");
        }
        assert!(
            pi[0].contains("-s 10.1.0.0/26 -m set ! --match-set brl4-x:")
                && pi[0].contains(" src")
                && pi[0].contains("-d 10.1.0.0/16 -m set ! --match-set brl4-x:"),
            "{}",
            pi[0]
        );
        assert!(out
            .ipsets
            .iter()
            .any(|s| s.members == vec!["10.1.0.3/32".to_string()]));
    }

    #[test]
    fn calico_actions_negations_and_long_names() {
        let p = program(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: a-rather-long-policy-name-for-iptables}\nspec:\n  selector: all()\n  ingress:\n\
             \x20   - {action: Log}\n    - {action: Deny, protocol: TCP, source: {nets: [10.9.0.0/16, 10.8.0.0/16]}, destination: {notPorts: [22]}}\n    - {action: Pass, protocol: ICMP, icmp: {type: 8}}\n    - {action: Allow, protocol: UDP, destination: {ports: [pg]}}\n",
        );
        let w = world();
        let r = resolve(&p, &w, &[("calibbb".into(), "10.1.0.2".parse().unwrap())]);
        let f = plain(&render(&r, Family::V4).filter);
        let name = chain_name("brl-pi-", "gnp/a-rather-long-policy-name-for-iptables");
        assert!(
            name.len() <= MAX_CHAIN && name.starts_with("brl-pi-_"),
            "{name}"
        );
        let pi: Vec<&str> = f
            .lines()
            .filter(|l| l.starts_with(&format!("-A {name} ")))
            .collect();
        assert!(pi[0].contains("-j LOG --log-prefix"), "{pi:?}");
        assert!(
            pi[1].contains("-p tcp -m set --match-set brl4-x:")
                && pi[1].contains(" -m multiport ! --dports 22")
                && pi[1].ends_with("-j DROP"),
            "{}",
            pi[1]
        );
        assert_eq!(
            pi[1].matches(" -p ").count(),
            1,
            "one -p per rule: {}",
            pi[1]
        );
        assert!(
            pi[2].contains("-p icmp -m icmp --icmp-type 8")
                && pi[2].contains("--set-xmark 0x20000/0x20000"),
            "{}",
            pi[2]
        );
        assert!(
            pi.iter()
                .any(|l| l.contains("-p udp -m set --match-set brl4-n:") && l.contains("dst,dst")),
            "{pi:?}"
        );
    }

    /// Which chain a packet on `iface` reaches from a dispatch root, following the
    /// first matching `flag` rule (`name+` a prefix, else exact) through the gotos.
    fn dispatched(out: &Rendered, root: &str, flag: &str, iface: &str) -> String {
        let mut chain = root.to_string();
        'walk: for _ in 0..20 {
            for l in &out.rules[&chain] {
                let rest = l.split(&format!(" {flag} ")).nth(1);
                let Some(rest) = rest else {
                    assert!(l.ends_with("-j DROP"), "{l}");
                    return "DROP".into();
                };
                let mut w = rest.split_whitespace();
                let pat = w.next().unwrap();
                let target = w.nth(1).unwrap();
                let hit = match pat.strip_suffix('+') {
                    Some(p) => iface.starts_with(p),
                    None => iface == pat,
                };
                if hit {
                    if target.starts_with("brl-fwd-") || target.starts_with("brl-twd-") {
                        chain = target.to_string();
                        continue 'walk;
                    }
                    return target.to_string();
                }
            }
            panic!("fell off {chain}");
        }
        panic!("too deep");
    }

    #[test]
    fn dispatch_tree_reaches_every_interface_and_drops_others() {
        let mut r = Resolved::default();
        let mut names: Vec<String> = (0..700).map(|i| format!("cali{i:011x}")).collect();
        names.extend((0..300).map(|i| {
            format!(
                "cali{:011x}",
                (i as u64).wrapping_mul(0x9e37_79b9_7f4a) % (1 << 44)
            )
        }));
        names.extend(["cali1".to_string(), "cali12".into(), "calix".into()]);
        for n in &names {
            r.endpoints.push(brindle_model::resolved::REndpoint {
                iface: n.clone(),
                ..Default::default()
            });
        }
        r.endpoints.sort_by(|a, b| a.iface.cmp(&b.iface));
        r.endpoints.dedup_by(|a, b| a.iface == b.iface);
        let out = render(&r, Family::V4);
        for n in &names {
            assert_eq!(
                dispatched(&out, "brl-from-wl-dispatch", "-i", n),
                chain_name("brl-fw-", n)
            );
            assert_eq!(
                dispatched(&out, "brl-to-wl-dispatch", "-o", n),
                chain_name("brl-tw-", n)
            );
        }
        for n in ["cali0000000ffff", "cali2", "eth0", "cali"] {
            assert_eq!(
                dispatched(&out, "brl-from-wl-dispatch", "-i", n),
                "DROP",
                "{n}"
            );
        }
        for (c, l) in &out.rules {
            assert!(c.len() <= MAX_CHAIN, "{c}");
            if c.contains("-wl-dispatch") || c.starts_with("brl-fwd-") || c.starts_with("brl-twd-")
            {
                assert!(l.len() <= DISPATCH_LEAF + 1, "{c}: {}", l.len());
            }
        }
    }

    /// A small deterministic generator (no dependency).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    fn random_policy(g: &mut Lcg) -> brindle_model::resolved::RPolicy {
        use brindle_model::resolved::{RPolicy, SetAlt};
        let rule = |g: &mut Lcg| RRule {
            ip_version: None,
            protocol: Some(6),
            not_protocol: None,
            icmp: None,
            not_icmp: None,
            source: RSide {
                sets: (0..g.next(3))
                    .map(|_| SetAlt {
                        set: format!("s:{}", g.next(8)),
                        except: None,
                    })
                    .collect(),
                nets: if g.next(4) == 0 {
                    vec![
                        format!("10.{}.0.0/16", g.next(3)).parse().unwrap(),
                        "192.168.0.0/16".parse().unwrap(),
                    ]
                } else {
                    Vec::new()
                },
                ..RSide::default()
            },
            destination: RSide {
                ports: (0..g.next(3))
                    .map(|_| (6, 80 + g.next(5) as u16, 80 + g.next(5) as u16 + 5))
                    .collect(),
                ..RSide::default()
            },
            action: [Action::Allow, Action::Deny, Action::Pass, Action::Log][g.next(4) as usize],
            origin: format!("p rule {}", g.next(3)),
        };
        RPolicy {
            id: "x".into(),
            ingress: (0..g.next(3)).map(|_| rule(g)).collect(),
            egress: (0..g.next(2)).map(|_| rule(g)).collect(),
        }
    }

    #[test]
    fn incremental_rendering_equals_a_full_one() {
        use brindle_model::resolved::{REndpoint, TierRef};
        let mut g = Lcg(7);
        let mut r = Resolved::default();
        let mut inc = [Renderer::new(Family::V4), Renderer::new(Family::V6)];
        for step in 0..300 {
            for _ in 0..1 + g.next(3) {
                match g.next(6) {
                    0 | 1 => {
                        let k = format!("knp/ns/p{}", g.next(12));
                        r.policies.insert(k, random_policy(&mut g));
                    }
                    2 => {
                        let k = format!("knp/ns/p{}", g.next(12));
                        r.policies.remove(&k);
                    }
                    3 => {
                        let s = format!("s:{}", g.next(8));
                        let m: Vec<IpNetwork> = (0..g.next(4))
                            .map(|_| {
                                format!("10.0.{}.{}/32", g.next(3), g.next(9))
                                    .parse()
                                    .unwrap()
                            })
                            .collect();
                        r.sets.insert(s, Members::Nets(m));
                    }
                    _ => {
                        let iface = format!("cali{:03x}", g.next(80));
                        r.endpoints.retain(|e| e.iface != iface);
                        if g.next(5) > 0 {
                            let tiers = |g: &mut Lcg| {
                                (0..g.next(2))
                                    .map(|_| TierRef {
                                        name: "default".into(),
                                        policies: (0..1 + g.next(3))
                                            .map(|_| format!("knp/ns/p{}", g.next(12)))
                                            .collect(),
                                    })
                                    .collect()
                            };
                            r.endpoints.push(REndpoint {
                                iface,
                                ingress: tiers(&mut g),
                                egress: tiers(&mut g),
                            });
                            r.endpoints.sort_by(|a, b| a.iface.cmp(&b.iface));
                        }
                    }
                }
            }
            // Sets named by a rule exist (as the resolver guarantees).
            for p in r.policies.clone().values() {
                for rule in p.ingress.iter().chain(&p.egress) {
                    for a in &rule.source.sets {
                        r.sets
                            .entry(a.set.clone())
                            .or_insert(Members::Nets(Vec::new()));
                    }
                }
            }
            for (k, f) in [Family::V4, Family::V6].into_iter().enumerate() {
                inc[k].update(&r);
                let full = render(&r, f);
                let got = inc[k].rendered();
                assert_eq!(got.restore_text(), full.filter, "step {step}");
                let mut got = got.clone();
                got.filter = full.filter.clone();
                assert_eq!(got, full, "step {step}");
            }
        }
    }
    #[test]
    fn host_endpoints_in_felix_structure() {
        use brindle_model::resolved::{Failsafe, RHostEndpoint, TierRef};
        let p = program(
            "apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {name: web}\nspec:\n  selector: role == 'node'\n  ingress: [{action: Allow, protocol: TCP, destination: {ports: [8080]}}]\n",
        );
        let mut r = resolve(&p, &world(), &[]);
        let tier = vec![TierRef {
            name: "default".into(),
            policies: vec!["gnp/web".into()],
        }];
        r.host_endpoints = vec![
            RHostEndpoint {
                name: "all".into(),
                iface: "*".into(),
                ingress: vec![],
                egress: vec![],
                profile_allows: true,
            },
            RHostEndpoint {
                name: "n1-eth0".into(),
                iface: "eth0".into(),
                ingress: tier,
                egress: vec![],
                profile_allows: false,
            },
        ];
        r.failsafe_inbound = vec![
            Failsafe::new(6, 22),
            Failsafe {
                protocol: 6,
                port: 443,
                net: Some("10.0.0.0/8".parse().unwrap()),
            },
            Failsafe {
                protocol: 6,
                port: 443,
                net: Some("fd00::/8".parse().unwrap()),
            },
        ];
        r.failsafe_outbound = vec![Failsafe::new(17, 53)];
        r.ipip = true;
        r.vxlan = true;
        r.tunnel_hosts = vec!["10.0.0.2".parse().unwrap(), "fd00::2".parse().unwrap()];
        let out = render(&r, Family::V4);
        let f = &plain(&out.filter);
        let want = "\
-A brl-INPUT -j MARK --set-xmark 0x0/0x30000
-A brl-INPUT -i cali+ -j brl-from-wl-dispatch
-A brl-INPUT -i cali+ -m mark --mark 0x10000/0x10000 -j ACCEPT
-A brl-INPUT -i cali+ -m comment --comment \"workload traffic is not host endpoint traffic\" -j RETURN
-A brl-INPUT -i lo -j RETURN
-A brl-INPUT -j MARK --set-xmark 0x0/0x30000
-A brl-INPUT -j brl-from-host-endpoint
-A brl-INPUT -m mark --mark 0x10000/0x10000 -m comment --comment \"host endpoint policy accepted\" -j ACCEPT
-A brl-OUTPUT -o cali+ -m comment --comment \"to a workload\" -j RETURN
-A brl-OUTPUT -o lo -j RETURN
-A brl-OUTPUT -j MARK --set-xmark 0x0/0x30000
-A brl-OUTPUT -j brl-to-host-endpoint
-A brl-OUTPUT -m mark --mark 0x10000/0x10000 -m comment --comment \"host endpoint policy accepted\" -j ACCEPT
-A brl-failsafe-in -p tcp -m tcp --dport 22 -m comment --comment \"failsafe tcp:22\" -j ACCEPT
-A brl-failsafe-in -p tcp -s 10.0.0.0/8 -m tcp --dport 443 -m comment --comment \"failsafe tcp:10.0.0.0/8:443\" -j ACCEPT
-A brl-failsafe-out -p udp -m udp --dport 53 -m comment --comment \"failsafe udp:53\" -j ACCEPT
-A brl-fh-any-interface-at-all -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A brl-fh-any-interface-at-all -m conntrack --ctstate INVALID -j DROP
-A brl-fh-any-interface-at-all -j brl-failsafe-in
-A brl-fh-any-interface-at-all -j MARK --set-xmark 0x0/0x30000
-A brl-fh-any-interface-at-all -m comment --comment \"profile projectcalico-default-allow\" -j MARK --set-xmark 0x10000/0x10000
-A brl-fh-any-interface-at-all -j RETURN
-A brl-fh-eth0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A brl-fh-eth0 -m conntrack --ctstate INVALID -j DROP
-A brl-fh-eth0 -j brl-failsafe-in
-A brl-fh-eth0 -j MARK --set-xmark 0x0/0x30000
-A brl-fh-eth0 -j MARK --set-xmark 0x0/0x20000
-A brl-fh-eth0 -m mark --mark 0x0/0x20000 -j brl-pi-gnp/web
-A brl-fh-eth0 -m mark --mark 0x10000/0x10000 -j RETURN
-A brl-fh-eth0 -m mark --mark 0x0/0x20000 -m comment --comment \"end of tier default\" -j DROP
-A brl-fh-eth0 -m comment --comment \"no profile allowed\" -j DROP
-A brl-from-host-endpoint -i eth0 -m comment --comment \"HostEndpoint n1-eth0\" -g brl-fh-eth0
-A brl-from-host-endpoint -m comment --comment \"HostEndpoint all\" -g brl-fh-any-interface-at-all
";
        for line in want.lines() {
            assert!(f.contains(&format!("{line}\n")), "missing {line:?} in\n{f}");
        }
        // In that order (chains are written sorted by name, rules in order).
        let lines: Vec<&str> = f.lines().filter(|l| want.contains(l)).collect();
        assert_eq!(lines.join("\n") + "\n", want, "{f}");
        assert!(f.contains("-A brl-th-eth0 -j brl-failsafe-out\n"), "{f}");
        assert!(f.contains("-A brl-to-host-endpoint -o eth0 -m comment --comment \"HostEndpoint n1-eth0\" -g brl-th-eth0\n"), "{f}");
        assert!(
            !f.contains("fd00::/8"),
            "the IPv6 failsafe net is not in the IPv4 table"
        );
        // The pod network's encapsulation with the other nodes, before the dispatch.
        let tunnel = "\
-A brl-INPUT -i lo -j RETURN
-A brl-INPUT -p 4 -m set --match-set brl4-x:tunnel-hosts src -m comment --comment \"IPIP with Calico hosts\" -j ACCEPT
-A brl-INPUT -p udp -m udp --dport 4789 -m set --match-set brl4-x:tunnel-hosts src -m comment --comment \"VXLAN with Calico hosts\" -j ACCEPT
-A brl-INPUT -j MARK --set-xmark 0x0/0x30000
";
        assert!(f.contains(tunnel), "{f}");
        assert!(
            f.contains("-A brl-OUTPUT -p 4 -m set --match-set brl4-x:tunnel-hosts dst"),
            "{f}"
        );
        let set = out
            .ipsets
            .iter()
            .find(|s| s.name == "brl4-x:tunnel-hosts")
            .unwrap();
        assert_eq!(set.members, vec!["10.0.0.2/32".to_string()]);
        assert!(out
            .hooks
            .contains(&("OUTPUT".to_string(), "brl-OUTPUT".to_string())));
        // Every rule hashed, as the workload rules.
        let n = out.filter.lines().filter(|l| l.starts_with("-A ")).count();
        assert_eq!(n, out.chains.values().map(Vec::len).sum::<usize>());
        assert!(out
            .filter
            .lines()
            .filter(|l| l.starts_with("-A "))
            .all(|l| l.contains("--comment \"brl:")));
        // IPv6: the IPv6 failsafe net only.
        let f6 = plain(&render(&r, Family::V6).filter);
        assert!(
            f6.contains("-A brl-failsafe-in -p tcp -s fd00::/8 -m tcp --dport 443"),
            "{f6}"
        );
        assert!(!f6.contains("10.0.0.0/8"));
        // Without host endpoints: neither OUTPUT nor host chains.
        r.host_endpoints.clear();
        let out = render(&r, Family::V4);
        assert!(!out.filter.contains("brl-OUTPUT") && !out.filter.contains("brl-failsafe"));
        assert_eq!(out.hooks.len(), 2);
    }
}
