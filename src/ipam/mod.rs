//! IP address management compatible with Calico's (`libcalico-go/lib/ipam`): pools cut
//! into blocks ([`block`]), a node's claim on a block as an affinity, a container's
//! addresses tied to a handle ([`objects`]), every write a compare-and-swap on a
//! [`store::Store`]. The algorithm ([`allocator`]) knows nothing of where the objects
//! live; the stores do: [`memory`] (tests), [`file`] (file mode) and [`kubernetes`]
//! (Calico's own CRDs, so that addresses Calico allocated on a migrated cluster stay
//! allocated). [`report`] computes `brindlectl ipam show/check` from the objects.

pub mod allocator;
pub mod block;
pub mod file;
pub mod gc;
pub mod kubernetes;
pub mod memory;
pub mod objects;
pub mod report;
pub mod store;

pub use allocator::{Assigned, Ipam, IpamError, Request};
pub use block::Block;
pub use memory::MemoryStore;
pub use objects::{Affinity, AffinityState, Handle, IpamObject, IpamSettings};
pub use store::{Store, StoreError, Versioned};

#[cfg(test)]
mod tests;

/// Stores one Calico IPAM object (`IPAMBlock`, `BlockAffinity`, `IPAMHandle`,
/// `IPAMConfig`, as `kubectl get -o json` shows it) in a store: migrating a cluster's
/// state, and test fixtures.
pub async fn import<S: Store>(store: &S, item: &serde_json::Value) -> Result<(), String> {
    let kind = item["kind"].as_str().unwrap_or_default();
    let name = item["metadata"]["name"].as_str().unwrap_or_default();
    let spec = item["spec"].clone();
    let what = format!("{kind}/{name}");
    let r = match kind {
        "IPAMBlock" => store
            .create(Block::from_spec(spec).map_err(|e| format!("{what}: {e}"))?)
            .await
            .map(|_| ()),
        "BlockAffinity" => store
            .create(Affinity::from_spec(spec).map_err(|e| format!("{what}: {e}"))?)
            .await
            .map(|_| ()),
        "IPAMHandle" => store
            .create(Handle::from_spec(spec).map_err(|e| format!("{what}: {e}"))?)
            .await
            .map(|_| ()),
        "IPAMConfig" | "IPAMConfiguration" => store
            .create(IpamSettings::from_spec(spec).map_err(|e| format!("{what}: {e}"))?)
            .await
            .map(|_| ()),
        other => return Err(format!("{what}: {other:?} is not an IPAM kind")),
    };
    r.map_err(|e| format!("{what}: {e}"))
}
