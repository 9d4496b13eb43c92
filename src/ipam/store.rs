//! The storage IPAM is written against: named objects with a revision, and
//! compare-and-swap writes, as the Kubernetes API offers them. Three implementations
//! keep exactly these rules: [`super::memory::MemoryStore`] (tests),
//! [`super::file::FileStore`] (file mode) and [`super::kubernetes::KubeStore`]
//! (Calico's CRDs).
//!
//! The rules:
//! - `create` fails with [`StoreError::AlreadyExists`] if the name exists;
//! - `update` and `delete` carry the revision that was read and fail with
//!   [`StoreError::Conflict`] if the object changed since (or [`StoreError::NotFound`]);
//! - every successful write gives a new revision;
//! - an object marked deleted (`spec.deleted`) reads as absent, as in Calico.

use super::objects::IpamObject;
use std::future::Future;

/// An object and the revision it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub revision: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} was changed by someone else")]
    Conflict(String),
    #[error("{0}")]
    Other(String),
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict(_))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Compare-and-swap storage of IPAM objects.
pub trait Store: Send + Sync {
    fn get<T: IpamObject>(
        &self,
        name: &str,
    ) -> impl Future<Output = StoreResult<Versioned<T>>> + Send;
    fn list<T: IpamObject>(&self) -> impl Future<Output = StoreResult<Vec<Versioned<T>>>> + Send;
    fn create<T: IpamObject>(
        &self,
        value: T,
    ) -> impl Future<Output = StoreResult<Versioned<T>>> + Send;
    fn update<T: IpamObject>(
        &self,
        obj: Versioned<T>,
    ) -> impl Future<Output = StoreResult<Versioned<T>>> + Send;
    fn delete<T: IpamObject>(
        &self,
        obj: Versioned<T>,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}
