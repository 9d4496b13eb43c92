//! Applies rendered policy ([`crate::policy_render`]) to the kernel of the calling
//! thread's network namespace, with the host's own tools (`ipset`, `iptables-restore`,
//! `iptables-save`; `ip6tables-*` for IPv6), as Felix does:
//!
//! 1. ipsets whose members changed are filled under a temporary name and swapped in
//!    (`ipset restore`), so a set is never seen half-filled (a set the kernel does not
//!    have yet is filled under its own name);
//! 2. the `brl-` chains go in one `iptables-restore --noflush` (atomic per table), only
//!    when they changed or read-back shows drift; chains no longer wanted are deleted;
//! 3. the jumps from `FORWARD` and `INPUT` (and `OUTPUT` with host endpoints) are kept
//!    first in those chains (checked on read-back, fixed in the same restore as the
//!    chains); a jump no longer wanted is deleted in that restore before its chain;
//! 4. ipsets no longer referenced are destroyed.
//!
//! Cost: an `iptables-restore --noflush` on the nf_tables backend costs about what the
//! chains it writes hold, plus a fixed part that grows with the table (iptables-nft
//! fetches the table's chains); so the renderer keeps chains small where a change lands
//! (the dispatch tree), and the applier writes only the chains that differ.
//!
//! Drift: every rule carries a `brl:<hash>` comment; [`PolicyApplier::apply`] with
//! `check` reads the table back and rewrites a chain whose hashes differ (a rule deleted
//! by hand, a foreign rule inserted). Nothing outside the `brl-` chains, the jumps
//! and the `brl4-`/`brl6-` sets is touched. [`PolicyApplier::remove`] takes it all away.

use crate::policy_render::{Family, Rendered};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};

/// The iptables tools of the backend the host uses (detected once per process).
fn tools(f: Family) -> (&'static str, &'static str, &'static str, &'static str) {
    static TOOLS: std::sync::OnceLock<[(String, String, String); 2]> = std::sync::OnceLock::new();
    let t = TOOLS.get_or_init(|| {
        let b = crate::iptables_backend::detect();
        if let Some(b) = b {
            tracing::info!(backend = ?b, "iptables backend");
        }
        [
            crate::iptables_backend::tools(b, false),
            crate::iptables_backend::tools(b, true),
        ]
    });
    let (i, fam) = match f {
        Family::V4 => (0, "inet"),
        Family::V6 => (1, "inet6"),
    };
    (t[i].0.as_str(), t[i].1.as_str(), t[i].2.as_str(), fam)
}

fn prefix(f: Family) -> &'static str {
    match f {
        Family::V4 => "brl4-",
        Family::V6 => "brl6-",
    }
}

/// Input above this size goes to the tool as an unlinked file rather than a pipe: a
/// restore of 100k+ rules read through a 64 KiB pipe costs many context switches (and
/// ~30 % more wall time on a loaded host).
const STDIN_FILE_ABOVE: usize = 256 * 1024;

/// An anonymous (created and at once unlinked) file holding `text`, at its start.
fn stdin_file(text: &str) -> std::io::Result<std::fs::File> {
    use std::io::{Seek, SeekFrom};
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "brindle-restore-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    let _ = std::fs::remove_file(&path);
    f.write_all(text.as_bytes())?;
    f.seek(SeekFrom::Start(0))?;
    Ok(f)
}

fn run(prog: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut c = Command::new(prog);
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut piped = None;
    match stdin {
        Some(text) if text.len() > STDIN_FILE_ABOVE => {
            let f = stdin_file(text).map_err(|e| format!("{prog}: input file: {e}"))?;
            c.stdin(Stdio::from(f));
        }
        Some(text) => {
            c.stdin(Stdio::piped());
            piped = Some(text);
        }
        None => {}
    }
    let mut child = c.spawn().map_err(|e| format!("cannot run {prog}: {e}"))?;
    if let Some(text) = piped {
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(text.as_bytes())
            .map_err(|e| format!("{prog}: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{prog}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{prog} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The `brl:` hashes per `brl-` chain in an `iptables-save` text, and the rules of other
/// chains that jump to `brl-` chains.
pub fn read_back(save: &str, want_table: &str) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut jumps = Vec::new();
    let mut table = "";
    for line in save.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = if t == want_table { want_table } else { "" };
            continue;
        }
        if table.is_empty() {
            continue;
        }
        if let Some(decl) = line.strip_prefix(':') {
            let name = decl.split_whitespace().next().unwrap_or("");
            if name.starts_with("brl-") {
                chains.entry(name.to_string()).or_default();
            }
        } else if let Some(rule) = line.strip_prefix("-A ") {
            let chain = rule.split_whitespace().next().unwrap_or("");
            if chain.starts_with("brl-") {
                let hash = rule
                    .split("--comment ")
                    .skip(1)
                    .filter_map(|c| c.trim_start_matches('"').strip_prefix("brl:"))
                    .map(|h| {
                        h.chars()
                            .take_while(char::is_ascii_hexdigit)
                            .collect::<String>()
                    })
                    .next()
                    .unwrap_or_else(|| "foreign".into());
                chains.entry(chain.to_string()).or_default().push(hash);
            } else if rule.contains("-j brl-") {
                jumps.push(rule.to_string());
            }
        }
    }
    (chains, jumps)
}

/// The `iptables-restore` lines that put the jumps to the policy chains in place, from
/// the table as read back (`save`, its jumps to `brl-` chains `jumps`): each first in its
/// kernel chain (any other copy deleted), or, with `hooks_last`, present anywhere
/// (appended when missing). None when they already are.
pub fn hook_fixes(save: &str, want_table: &str, want: &Rendered, jumps: &[String]) -> Vec<String> {
    let mut rules: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut in_table = false;
    for line in save.lines() {
        if let Some(t) = line.strip_prefix('*') {
            in_table = t == want_table;
        } else if let Some(rule) = line.strip_prefix("-A ").filter(|_| in_table) {
            let chain = rule.split_whitespace().next().unwrap_or("");
            rules.entry(chain).or_default().push(line);
        }
    }
    let mut out = Vec::new();
    for (chain, target) in &want.hooks {
        let jump = format!("-A {chain} -j {target}");
        let have = rules
            .get(chain.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        if want.hooks_last {
            if !have.contains(&jump.as_str()) {
                out.push(jump);
            }
            continue;
        }
        if have.first() != Some(&jump.as_str()) {
            for j in jumps.iter().filter(|j| {
                j.starts_with(&format!("{chain} ")) && j.ends_with(&format!("-j {target}"))
            }) {
                out.push(format!("-D {j}"));
            }
            out.push(format!("-I {chain} 1 -j {target}"));
        }
    }
    out
}

/// The kernel's packet and byte counters of each policy rule (by origin, summed over
/// the rule's iptables lines), from `iptables-save -c`.
pub fn counters(family: Family, want: &Rendered) -> Result<BTreeMap<String, (u64, u64)>, String> {
    let (_, _, save, _) = tools(family);
    let text = run(save, &["-c", "-t", want.table], None)?;
    let mut out: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for line in text.lines() {
        // [packets:bytes] -A chain ... --comment "brl:<hash>" ...
        let Some(rest) = line.strip_prefix('[') else {
            continue;
        };
        let Some((pb, rule)) = rest.split_once("] ") else {
            continue;
        };
        let Some((p, b)) = pb.split_once(':') else {
            continue;
        };
        let Some(h) = rule.split("brl:").nth(1).map(|x| {
            x.chars()
                .take_while(char::is_ascii_hexdigit)
                .collect::<String>()
        }) else {
            continue;
        };
        if let Some(origin) = want.origins.get(&h) {
            let e = out.entry(origin.clone()).or_default();
            e.0 += p.parse::<u64>().unwrap_or(0);
            e.1 += b.parse::<u64>().unwrap_or(0);
        }
    }
    Ok(out)
}

/// What one apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyReport {
    pub sets_written: usize,
    pub tables_written: usize,
    pub chains_written: usize,
    pub chains_removed: usize,
    pub drift_repaired: bool,
    pub errors: Vec<String>,
    /// Wall time per step (`sets`, `read-back`, `chains`, `hooks`, `cleanup`).
    pub timings: Vec<(&'static str, std::time::Duration)>,
}

/// What was last applied to one table of one family: per chain its `brl:` hashes, per
/// ipset its members (kept up to date by changes, never cloned whole).
#[derive(Debug, Default)]
struct Applied {
    chains: BTreeMap<String, Vec<String>>,
    sets: BTreeMap<String, Vec<String>>,
    /// The jumps from the kernel's chains last wanted.
    hooks: Vec<(String, String)>,
}

/// Remembers what was last applied per family, to write only changes.
#[derive(Debug, Default)]
pub struct PolicyApplier {
    applied: BTreeMap<(&'static str, &'static str), Applied>,
    last_read: BTreeMap<(&'static str, &'static str), std::time::Instant>,
}

/// The longest a table goes without being read back (drift repair within this).
pub const READ_BACK_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

fn family_key(f: Family) -> &'static str {
    match f {
        Family::V4 => "v4",
        Family::V6 => "v6",
    }
}

fn owned(family: Family, name: &str, prefixes: &[&str]) -> bool {
    name.strip_prefix(prefix(family))
        .is_some_and(|rest| prefixes.iter().any(|p| rest.starts_with(p)))
}

impl PolicyApplier {
    pub fn new() -> PolicyApplier {
        PolicyApplier::default()
    }

    /// Brings one family to `want`; `check` reads the table back first (drift repair).
    pub fn apply(&mut self, family: Family, want: &Rendered, check: bool) -> PolicyReport {
        let mut r = PolicyReport::default();
        if let Err(e) = self.apply_inner(family, want, check, &mut r) {
            // Not known what the kernel holds now: the next apply reads it back.
            let key = (family_key(family), want.table);
            self.applied.remove(&key);
            self.last_read.remove(&key);
            r.errors.push(e);
        }
        r
    }

    fn apply_inner(
        &mut self,
        family: Family,
        want: &Rendered,
        check: bool,
        r: &mut PolicyReport,
    ) -> Result<(), String> {
        let (_, restore, save, fam) = tools(family);
        let table = want.table;
        let key = (family_key(family), table);
        let last = self.applied.get(&key);
        let first = last.is_none();
        // 1. sets (a set the kernel does not have yet is filled under its own name: no
        // rule can see it half-filled; the others are filled aside and swapped in)
        let kernel_sets: Option<BTreeSet<String>> = if first {
            Some(
                run("ipset", &["list", "-n"], None)?
                    .lines()
                    .map(str::to_string)
                    .collect(),
            )
        } else {
            None
        };
        let mut script = String::new();
        let mut sets_changed = Vec::new();
        for s in &want.ipsets {
            if !check && last.and_then(|l| l.sets.get(&s.name)) == Some(&s.members) {
                continue;
            }
            if kernel_sets.as_ref().is_some_and(|k| !k.contains(&s.name)) {
                script.push_str(&format!("create {} {} family {fam}\n", s.name, s.kind));
                for m in &s.members {
                    script.push_str(&format!("add {} {m}\n", s.name));
                }
                sets_changed.push(s);
                r.sets_written += 1;
                continue;
            }
            // brl4-… → brlt-… (same length; created and destroyed within the script).
            let tmp = format!("brlt{}", s.name.get(4..).unwrap_or(&s.name));
            script.push_str(&format!("create {} {} family {fam}\n", s.name, s.kind));
            script.push_str(&format!(
                "create {tmp} {} family {fam}\nflush {tmp}\n",
                s.kind
            ));
            for m in &s.members {
                script.push_str(&format!("add {tmp} {m}\n"));
            }
            script.push_str(&format!("swap {tmp} {}\ndestroy {tmp}\n", s.name));
            sets_changed.push(s);
            r.sets_written += 1;
        }
        let t = std::time::Instant::now();
        if !script.is_empty() {
            run("ipset", &["restore", "-exist"], Some(&script))?;
        }
        r.timings.push(("sets", t.elapsed()));
        {
            let l = self.applied.entry(key).or_default();
            for s in sets_changed {
                l.sets.insert(s.name.clone(), s.members.clone());
            }
        }
        let last = self.applied.get(&key).filter(|_| !first);
        // 2. chains
        // Read back on request, at least every READ_BACK_EVERY, and when nothing was
        // applied yet; otherwise trust what was last written (a change then costs only
        // what it touches, not a dump of the table).
        // A change of the jumps (OUTPUT's, with the first or last host endpoint) is made
        // from the kernel's current ones.
        let hooks_changed = last.is_none_or(|l| l.hooks != want.hooks);
        let read = check
            || first
            || hooks_changed
            || self
                .last_read
                .get(&key)
                .is_none_or(|t| t.elapsed() >= READ_BACK_EVERY);
        let no_chains = BTreeMap::new();
        let t = std::time::Instant::now();
        let mut hook_lines = Vec::new();
        let (read_chains, jumps) = if read {
            let current = run(save, &["-t", table], None)?;
            self.last_read.insert(key, std::time::Instant::now());
            let (chains, jumps) = read_back(&current, table);
            hook_lines = hook_fixes(&current, table, want, &jumps);
            (chains, jumps)
        } else {
            (BTreeMap::new(), Vec::new())
        };
        r.timings.push(("read-back", t.elapsed()));
        let t = std::time::Instant::now();
        let have = if read {
            &read_chains
        } else {
            last.map(|l| &l.chains).unwrap_or(&no_chains)
        };
        // Only the chains whose rules differ from the kernel's are written: a change
        // (or a drift) costs what it touches. A new chain is declared before any chain
        // that jumps to it is written, all in one atomic restore.
        let differ: Vec<&String> = want
            .chains
            .iter()
            .filter(|(c, h)| have.get(*c) != Some(*h))
            .map(|(c, _)| c)
            .collect();
        let stale: Vec<String> = have
            .keys()
            .filter(|c| !want.chains.contains_key(*c))
            .cloned()
            .collect();
        let expected_change = last.is_none_or(|l| {
            differ
                .iter()
                .any(|c| l.chains.get(*c) != want.chains.get(*c))
        });
        // The jumps from the kernel's chains (3.) go in the same restore, after the
        // chains they jump to.
        // Chains no longer wanted are flushed and deleted at the end of the same restore
        // (after the chains that jumped to them were rewritten).
        if !differ.is_empty() || !hook_lines.is_empty() || !stale.is_empty() {
            let mut t = format!("*{table}\n");
            for c in differ.iter().copied().chain(&stale) {
                t.push_str(&format!(":{c} - [0:0]\n"));
            }
            for c in &differ {
                for l in want.rules.get(*c).map(Vec::as_slice).unwrap_or_default() {
                    t.push_str(l);
                    t.push('\n');
                }
            }
            for l in &hook_lines {
                t.push_str(l);
                t.push('\n');
            }
            for c in &stale {
                // A jump to it from a kernel chain (brl-OUTPUT once the last host endpoint
                // is gone) goes first: a chain still jumped to cannot be deleted.
                let suffix = format!("-j {c}");
                for j in jumps.iter().filter(|j| j.ends_with(&suffix)) {
                    t.push_str(&format!("-D {j}\n"));
                }
                t.push_str(&format!("-X {c}\n"));
            }
            t.push_str("COMMIT\n");
            run(restore, &["--noflush"], Some(&t))?;
            r.tables_written += 1;
            r.chains_written += differ.len();
            r.chains_removed += stale.len();
            r.drift_repaired = !differ.is_empty() && !expected_change;
        }
        {
            let l = self.applied.entry(key).or_default();
            for c in differ {
                l.chains.insert(c.clone(), want.chains[c].clone());
            }
            l.hooks = want.hooks.clone();
            if read || !stale.is_empty() {
                l.chains.retain(|c, _| want.chains.contains_key(c));
            }
        }
        r.timings.push(("chains", t.elapsed()));
        // 4. sets no longer wanted (on read-back, or when the set list changed)
        let t = std::time::Instant::now();
        let l = self.applied.entry(key).or_default();
        let same_list = l.sets.len() == want.ipsets.len()
            && want.ipsets.iter().all(|s| l.sets.contains_key(&s.name));
        if !read && same_list {
            return Ok(());
        }
        let wanted: BTreeSet<&str> = want.ipsets.iter().map(|s| s.name.as_str()).collect();
        l.sets.retain(|n, _| wanted.contains(n.as_str()));
        let names = run("ipset", &["list", "-n"], None)?;
        for n in names
            .lines()
            .filter(|n| owned(family, n, &want.set_prefixes) && !wanted.contains(n))
        {
            let _ = run("ipset", &["destroy", n], None);
        }
        r.timings.push(("cleanup", t.elapsed()));
        Ok(())
    }

    /// Removes the policy (filter table) of a family: [`PolicyApplier::remove_table`].
    pub fn remove(&mut self, family: Family) -> PolicyReport {
        self.remove_table(family, "filter", &["s:", "n:", "x:"])
    }

    /// Removes the jumps to `brl-` chains, every `brl-` chain of `table`, and the sets
    /// whose names (after `brl4-`/`brl6-`) start with one of `set_prefixes`.
    pub fn remove_table(
        &mut self,
        family: Family,
        table: &'static str,
        set_prefixes: &[&str],
    ) -> PolicyReport {
        let mut r = PolicyReport::default();
        let (ipt, restore, save, _) = tools(family);
        self.applied.remove(&(family_key(family), table));
        let result = (|| -> Result<(), String> {
            // No usable iptables (no such tool, or a kernel without its backend): there
            // can be no Brindle chains to remove.
            let Ok(current) = run(save, &["-t", table], None) else {
                return Ok(());
            };
            let (have, jumps) = read_back(&current, table);
            for j in &jumps {
                let args: Vec<&str> = ["-t", table, "-D"]
                    .into_iter()
                    .chain(j.split_whitespace())
                    .collect();
                run(ipt, &args, None)?;
            }
            if !have.is_empty() {
                let mut t = format!("*{table}\n");
                for c in have.keys() {
                    t.push_str(&format!(":{c} - [0:0]\n"));
                }
                for c in have.keys() {
                    t.push_str(&format!("-X {c}\n"));
                }
                t.push_str("COMMIT\n");
                run(restore, &["--noflush"], Some(&t))?;
                r.chains_removed = have.len();
            }
            if let Ok(names) = run("ipset", &["list", "-n"], None) {
                for n in names.lines().filter(|n| owned(family, n, set_prefixes)) {
                    let _ = run("ipset", &["destroy", n], None);
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            r.errors.push(e);
        }
        r
    }
}

/// Removes what a replaced calico-node left behind in one family: the jumps to `cali-`
/// chains from the kernel's chains, every `cali-` chain (filter, nat, mangle, raw) and
/// the `cali40`/`cali60` ipsets, so that a migrated node never enforces stale policy.
/// Returns how many chains were removed.
pub fn remove_calico_leftovers(family: Family) -> Result<usize, String> {
    let (ipt, restore, save, _) = tools(family);
    let mut removed = 0;
    for table in ["filter", "nat", "mangle", "raw"] {
        let Ok(current) = run(save, &["-t", table], None) else {
            continue;
        };
        let mut chains = Vec::new();
        let mut jumps = Vec::new();
        let mut in_table = false;
        for line in current.lines() {
            if let Some(t) = line.strip_prefix('*') {
                in_table = t == table;
            } else if !in_table {
            } else if let Some(decl) = line.strip_prefix(':') {
                let name = decl.split_whitespace().next().unwrap_or("");
                if name.starts_with("cali-") {
                    chains.push(name.to_string());
                }
            } else if let Some(rule) = line.strip_prefix("-A ") {
                let chain = rule.split_whitespace().next().unwrap_or("");
                if !chain.starts_with("cali-")
                    && (rule.contains("-j cali-") || rule.contains("-g cali-"))
                {
                    jumps.push(rule.to_string());
                }
            }
        }
        for j in &jumps {
            let args: Vec<&str> = ["-t", table, "-D"]
                .into_iter()
                .chain(j.split_whitespace())
                .collect();
            run(ipt, &args, None)?;
        }
        if !chains.is_empty() {
            let mut t = format!("*{table}\n");
            for c in &chains {
                t.push_str(&format!(":{c} - [0:0]\n"));
            }
            for c in &chains {
                t.push_str(&format!("-X {c}\n"));
            }
            t.push_str("COMMIT\n");
            run(restore, &["--noflush"], Some(&t))?;
            removed += chains.len();
        }
    }
    let p = match family {
        Family::V4 => "cali40",
        Family::V6 => "cali60",
    };
    if let Ok(names) = run("ipset", &["list", "-n"], None) {
        for n in names.lines().filter(|n| n.starts_with(p)) {
            let _ = run("ipset", &["destroy", n], None);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_back_finds_hashes_foreign_rules_and_jumps() {
        let save = "*nat\n:brl-X - [0:0]\n-A brl-X -j ACCEPT\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:brl-INPUT - [0:0]\n:brl-empty - [0:0]\n\
                    -A INPUT -j brl-INPUT\n-A brl-INPUT -m comment --comment \"brl:0123456789abcdef\" -m comment --comment \"x y\" -j ACCEPT\n\
                    -A brl-INPUT -j DROP\nCOMMIT\n";
        let (chains, jumps) = read_back(save, "filter");
        assert_eq!(
            chains["brl-INPUT"],
            vec!["0123456789abcdef".to_string(), "foreign".to_string()]
        );
        assert!(chains["brl-empty"].is_empty());
        assert!(
            !chains.contains_key("brl-X"),
            "other tables are not ours to read here"
        );
        assert_eq!(jumps, vec!["INPUT -j brl-INPUT".to_string()]);
    }
}
