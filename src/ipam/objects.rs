//! The other IPAM objects, as Calico stores them: `BlockAffinity` (a node's claim on a
//! block), `IPAMHandle` (which blocks hold a container's addresses) and
//! `IPAMConfig`; and their object names (`libcalico-go/lib/backend/k8s/resources/`).

use super::block::Block;
use data_encoding::BASE32_NOPAD;
use ipnetwork::IpNetwork;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::Digest as _;
use std::collections::BTreeMap;

/// An IPAM object kind as stored: its Calico kind, how its name is derived, and its
/// `spec` in Calico's JSON.
pub trait IpamObject: Clone + Send + Sync + 'static {
    /// Calico's kind (`IPAMBlock`, `BlockAffinity`, `IPAMHandle`, `IPAMConfig`).
    const KIND: &'static str;
    /// The plural resource name of the CRD (`ipamblocks`).
    const PLURAL: &'static str;
    /// The object's name in the datastore.
    fn name(&self) -> String;
    /// `spec` as Calico writes it (`v3`: the `projectcalico.org/v3` CRD form).
    fn to_spec(&self, v3: bool) -> serde_json::Value;
    /// Reads `spec`.
    fn from_spec(spec: serde_json::Value) -> Result<Self, String>;
    /// Labels Calico puts on the object.
    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
    /// Whether the object is marked deleted (`spec.deleted`): Calico marks an object
    /// before deleting it, and a marked object counts as absent.
    fn is_deleted(&self) -> bool {
        false
    }
}

fn spec_of<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn read_spec<T: DeserializeOwned>(spec: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(spec).map_err(|e| e.to_string())
}

/// Calico's `names.CIDRToName`: `10.0.0.0/26` → `10-0-0-0-26`, `fd00::/122` →
/// `fd00--122`.
pub fn cidr_to_name(cidr: &IpNetwork) -> String {
    cidr.to_string().replace(['.', ':', '/'], "-")
}

/// The name of a node's affinity to a block: `<host>-<cidrname>`, shortened with a
/// hash past 252 characters as Calico does.
pub fn affinity_name(host: &str, cidr: &IpNetwork) -> String {
    let cidrname = cidr_to_name(cidr);
    let name = format!("{host}-{cidrname}");
    if name.len() < 253 {
        return name;
    }
    let keep = 252usize.saturating_sub(cidrname.len() + 13).min(host.len());
    let mut cut = keep;
    while !host.is_char_boundary(cut) {
        cut -= 1;
    }
    let digest = sha2::Sha256::digest(format!("{host}+{cidrname}").as_bytes());
    format!("{}-{cidrname}-{}", &host[..cut], &hex::encode(digest)[..11])
}

/// Calico's `projectcalico.org/hostname-hash` label: base32 (no padding) of SHA3-256.
pub fn hostname_hash(host: &str) -> String {
    use sha3::Digest as _;
    BASE32_NOPAD.encode(&sha3::Sha3_256::digest(host.as_bytes()))
}

impl IpamObject for Block {
    const KIND: &'static str = "IPAMBlock";
    const PLURAL: &'static str = "ipamblocks";
    fn name(&self) -> String {
        cidr_to_name(&self.cidr)
    }
    fn to_spec(&self, _v3: bool) -> serde_json::Value {
        spec_of(self)
    }
    fn from_spec(spec: serde_json::Value) -> Result<Self, String> {
        let b: Block = read_spec(spec)?;
        b.validate().map_err(|e| e.to_string())?;
        Ok(b)
    }
    fn is_deleted(&self) -> bool {
        self.deleted
    }
}

/// `BlockAffinity.spec.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum AffinityState {
    #[default]
    Confirmed,
    Pending,
    PendingDeletion,
}

/// A node's affinity to one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affinity {
    pub node: String,
    pub cidr: IpNetwork,
    pub state: AffinityState,
    /// `host` or `virtual`.
    pub affinity_type: String,
    pub deleted: bool,
}

impl Affinity {
    pub fn host(node: &str, cidr: IpNetwork, state: AffinityState) -> Affinity {
        Affinity {
            node: node.to_string(),
            cidr,
            state,
            affinity_type: "host".into(),
            deleted: false,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct AffinityJson {
    #[serde(default)]
    state: String,
    node: String,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    affinity_type: String,
    cidr: IpNetwork,
    /// A string (`"false"`) in `crd.projectcalico.org/v1`, a boolean in v3.
    #[serde(default)]
    deleted: serde_json::Value,
}

impl IpamObject for Affinity {
    const KIND: &'static str = "BlockAffinity";
    const PLURAL: &'static str = "blockaffinities";
    fn name(&self) -> String {
        affinity_name(&self.node, &self.cidr)
    }
    fn to_spec(&self, v3: bool) -> serde_json::Value {
        let state = match self.state {
            AffinityState::Confirmed => "confirmed",
            AffinityState::Pending => "pending",
            AffinityState::PendingDeletion => "pendingDeletion",
        };
        spec_of(&AffinityJson {
            state: state.into(),
            node: self.node.clone(),
            affinity_type: self.affinity_type.clone(),
            cidr: self.cidr,
            deleted: if v3 {
                serde_json::Value::Bool(self.deleted)
            } else {
                serde_json::Value::String(self.deleted.to_string())
            },
        })
    }
    fn from_spec(spec: serde_json::Value) -> Result<Self, String> {
        let j: AffinityJson = read_spec(spec)?;
        let state = match j.state.as_str() {
            // Empty: written by old versions, treated as confirmed.
            "" | "confirmed" => AffinityState::Confirmed,
            "pending" => AffinityState::Pending,
            "pendingDeletion" => AffinityState::PendingDeletion,
            other => return Err(format!("spec.state: unknown state {other:?}")),
        };
        let deleted = match &j.deleted {
            serde_json::Value::Null => false,
            serde_json::Value::Bool(b) => *b,
            serde_json::Value::String(s) if s.is_empty() => false,
            serde_json::Value::String(s) => s
                .parse::<bool>()
                .map_err(|_| format!("spec.deleted: {s:?} is not a boolean"))?,
            other => return Err(format!("spec.deleted: {other} is not a boolean")),
        };
        Ok(Affinity {
            node: j.node,
            cidr: IpNetwork::new(j.cidr.network(), j.cidr.prefix()).unwrap_or(j.cidr),
            state,
            affinity_type: if j.affinity_type.is_empty() {
                "host".into()
            } else {
                j.affinity_type
            },
            deleted,
        })
    }
    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                "projectcalico.org/hostname-hash".to_string(),
                hostname_hash(&self.node),
            ),
            (
                "projectcalico.org/affinity-type".to_string(),
                self.affinity_type.clone(),
            ),
            (
                "projectcalico.org/ip-version".to_string(),
                if self.cidr.is_ipv4() { "4" } else { "6" }.to_string(),
            ),
        ])
    }
    fn is_deleted(&self) -> bool {
        self.deleted
    }
}

/// `IPAMHandle.spec`: the blocks holding a handle's addresses, with counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handle {
    #[serde(rename = "handleID")]
    pub handle_id: String,
    #[serde(default)]
    pub block: BTreeMap<String, usize>,
    #[serde(default)]
    pub deleted: bool,
}

impl Handle {
    pub fn new(id: &str) -> Handle {
        Handle {
            handle_id: id.to_string(),
            block: BTreeMap::new(),
            deleted: false,
        }
    }
    pub fn increment(&mut self, cidr: &IpNetwork, n: usize) {
        *self.block.entry(cidr.to_string()).or_default() += n;
    }
    /// Fails if the handle holds fewer than `n` addresses in the block.
    pub fn decrement(&mut self, cidr: &IpNetwork, n: usize) -> Result<(), String> {
        let key = cidr.to_string();
        let have = self.block.get(&key).copied().unwrap_or(0);
        if have < n {
            return Err(format!(
                "handle {} holds {have} addresses in {key}, cannot release {n}",
                self.handle_id
            ));
        }
        if have == n {
            self.block.remove(&key);
        } else {
            self.block.insert(key, have - n);
        }
        Ok(())
    }
    pub fn is_empty(&self) -> bool {
        self.block.is_empty()
    }
}

impl IpamObject for Handle {
    const KIND: &'static str = "IPAMHandle";
    const PLURAL: &'static str = "ipamhandles";
    /// Calico lower-cases handle IDs for the object name.
    fn name(&self) -> String {
        self.handle_id.to_ascii_lowercase()
    }
    fn to_spec(&self, _v3: bool) -> serde_json::Value {
        spec_of(self)
    }
    fn from_spec(spec: serde_json::Value) -> Result<Self, String> {
        read_spec(spec)
    }
    fn is_deleted(&self) -> bool {
        self.deleted
    }
}

/// `IPAMConfig` (`default`); absent = these defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpamSettings {
    #[serde(default)]
    pub strict_affinity: bool,
    #[serde(default = "yes")]
    pub auto_allocate_blocks: bool,
    /// 0: 20 blocks.
    #[serde(default)]
    pub max_blocks_per_host: usize,
    #[serde(default, rename = "ipCooldownSeconds")]
    pub ip_cooldown_seconds: i64,
}

fn yes() -> bool {
    true
}

impl Default for IpamSettings {
    fn default() -> Self {
        IpamSettings {
            strict_affinity: false,
            auto_allocate_blocks: true,
            max_blocks_per_host: 0,
            ip_cooldown_seconds: 0,
        }
    }
}

impl IpamObject for IpamSettings {
    const KIND: &'static str = "IPAMConfig";
    const PLURAL: &'static str = "ipamconfigs";
    fn name(&self) -> String {
        "default".into()
    }
    fn to_spec(&self, _v3: bool) -> serde_json::Value {
        spec_of(self)
    }
    fn from_spec(spec: serde_json::Value) -> Result<Self, String> {
        read_spec(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_calico() {
        let c: IpNetwork = "10.244.1.0/26".parse().unwrap();
        assert_eq!(cidr_to_name(&c), "10-244-1-0-26");
        assert_eq!(
            cidr_to_name(&"fd00:10:244::/122".parse().unwrap()),
            "fd00-10-244---122"
        );
        assert_eq!(affinity_name("worker-1", &c), "worker-1-10-244-1-0-26");
        let long = "n".repeat(260);
        let n = affinity_name(&long, &c);
        assert!(n.len() <= 253, "{}", n.len());
        assert!(n.contains("-10-244-1-0-26-"));
        assert_eq!(
            Handle::new("k8s-pod-network.ABC").name(),
            "k8s-pod-network.abc"
        );
        // base32 of a 32-byte digest: 52 characters, fits a label.
        assert_eq!(hostname_hash("worker-1").len(), 52);
    }

    #[test]
    fn affinity_reads_both_deleted_forms() {
        let v1 = serde_json::json!({"state":"confirmed","node":"n1","type":"host","cidr":"10.0.0.0/26","deleted":"false"});
        let a = Affinity::from_spec(v1.clone()).unwrap();
        assert_eq!(a.to_spec(false), v1);
        assert!(!a.deleted);
        let v3 =
            serde_json::json!({"state":"pending","node":"n1","cidr":"10.0.0.0/26","deleted":true});
        let a = Affinity::from_spec(v3).unwrap();
        assert!(a.deleted && a.state == AffinityState::Pending && a.affinity_type == "host");
        assert_eq!(a.to_spec(true)["deleted"], serde_json::json!(true));
        assert!(Affinity::from_spec(
            serde_json::json!({"state":"odd","node":"n","cidr":"10.0.0.0/26"})
        )
        .is_err());
    }

    #[test]
    fn handle_counts() {
        let c: IpNetwork = "10.0.0.0/26".parse().unwrap();
        let mut h = Handle::new("x");
        h.increment(&c, 2);
        h.decrement(&c, 1).unwrap();
        assert!(h.decrement(&c, 2).is_err());
        h.decrement(&c, 1).unwrap();
        assert!(h.is_empty());
        assert_eq!(
            serde_json::to_value(Handle::new("x")).unwrap(),
            serde_json::json!({"handleID":"x","block":{},"deleted":false})
        );
    }
}
