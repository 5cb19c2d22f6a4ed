//! The host side of `wasi:keyvalue@0.2.0-draft` (store, atomics, batch) on a [`KvBackend`], and
//! what it shares with `@0.2.0-draft2` ([`super::wasi_draft2`]).
//!
//! A bucket resource is only a name: opening one copies nothing, so every instance sees the
//! shared store as it is now, and what it writes is there for the next request. Backend errors
//! reach the guest as `error::other(message)`, never as traps; they are mapped in
//! `KvView`'s `convert_error` and nowhere else.
//!
//! Every call is held to the request's [`KvLimits`] (value size, keys per batch, bytes read), so
//! one guest cannot make the host hold much memory for it.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use super::{KvBackend, KvError};
use crate::limits::KvLimits;

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasi:keyvalue/imports@0.2.0-draft",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store@0.2.0-draft.bucket": super::Bucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store@0.2.0-draft.error" => super::HostError,
        },
    });
}

use generated::wasi::keyvalue0_2_0_draft::{atomics, batch, store};

/// The longest bucket name a guest may open.
const MAX_BUCKET_NAME: usize = 64;

/// An open bucket: a namespace in one shared backend.
pub struct Bucket {
    backend: Arc<dyn KvBackend>,
    name: Arc<str>,
}

/// Which stores a request may open.
pub enum Stores {
    /// Any bucket name, all in one backend: the CLI's `--store`.
    Any(Arc<dyn KvBackend>),
    /// Only these labels, each in its own backend: what an app manifest grants a component.
    Granted(HashMap<String, Arc<dyn KvBackend>>),
}

impl Stores {
    /// What the start-up line says about the stores.
    pub fn summary(&self) -> String {
        match self {
            Stores::Any(backend) => backend.summary(),
            Stores::Granted(labels) => {
                let mut parts: Vec<String> = labels
                    .iter()
                    .map(|(label, backend)| format!("{label}: {}", backend.summary()))
                    .collect();
                parts.sort();
                parts.join("; ")
            }
        }
    }
}

/// What a keyvalue call can fail with before it becomes the WIT `error`.
#[derive(Debug)]
pub enum HostError {
    NoSuchStore,
    AccessDenied,
    Backend(KvError),
    /// A broken guest: a resource handle that is not ours. This traps.
    Trap(wasmtime::Error),
}

/// The `error` variant both drafts share, before it becomes either one's generated type.
pub(super) enum WitError {
    NoSuchStore,
    AccessDenied,
    Other(String),
}

impl HostError {
    /// The one place a host error becomes what the guest sees: backend errors are logged and
    /// handed over as `other(message)`; a broken guest traps.
    pub(super) fn into_wit(self) -> wasmtime::Result<WitError> {
        match self {
            HostError::NoSuchStore => Ok(WitError::NoSuchStore),
            HostError::AccessDenied => Ok(WitError::AccessDenied),
            HostError::Backend(err) => {
                tracing::warn!(error = %err, "key-value backend error");
                Ok(WitError::Other(err.0))
            }
            HostError::Trap(err) => Err(err),
        }
    }
}

impl From<KvError> for HostError {
    fn from(err: KvError) -> Self {
        HostError::Backend(err)
    }
}

impl From<wasmtime::component::ResourceTableError> for HostError {
    fn from(err: wasmtime::component::ResourceTableError) -> Self {
        HostError::Trap(err.into())
    }
}

/// What one request may still do with the store.
#[derive(Debug)]
pub struct KvBudget {
    limits: KvLimits,
    read: usize,
}

impl KvBudget {
    pub fn new(limits: KvLimits) -> Self {
        Self { limits, read: 0 }
    }

    pub(super) fn check_value(&self, key: &str, value: &[u8]) -> Result<(), HostError> {
        if value.len() > self.limits.max_value {
            return Err(limit(format!(
                "the value for '{key}' is {} bytes; the limit is {}",
                value.len(),
                self.limits.max_value
            )));
        }
        Ok(())
    }

    pub(super) fn check_batch(&self, keys: usize) -> Result<(), HostError> {
        if keys > self.limits.max_batch_keys {
            return Err(limit(format!(
                "a batch of {keys} keys; the limit is {}",
                self.limits.max_batch_keys
            )));
        }
        Ok(())
    }

    /// Counts `bytes` read; fails once the request has read more than its budget.
    pub(super) fn charge(&mut self, bytes: usize) -> Result<(), HostError> {
        self.read = self.read.saturating_add(bytes);
        if self.read > self.limits.max_read_per_request {
            return Err(limit(format!(
                "this request has read {} bytes from the store; the limit is {}",
                self.read, self.limits.max_read_per_request
            )));
        }
        Ok(())
    }
}

pub(super) fn limit(message: String) -> HostError {
    HostError::Backend(KvError(message))
}

/// A request's view of the store: the shared backend, the request's resource table and budget.
pub struct KvView<'a> {
    pub stores: &'a Stores,
    pub table: &'a mut ResourceTable,
    pub budget: &'a mut KvBudget,
}

impl KvView<'_> {
    /// A bucket resource for `identifier`, if it is a valid bucket name (no `:`, which the Redis
    /// backend uses to separate bucket and key).
    pub(super) fn open_bucket(
        &mut self,
        identifier: String,
    ) -> Result<Resource<Bucket>, HostError> {
        let backend = match self.stores {
            Stores::Any(backend) => {
                let valid = !identifier.is_empty()
                    && identifier.len() <= MAX_BUCKET_NAME
                    && identifier
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                if !valid {
                    return Err(HostError::NoSuchStore);
                }
                backend.clone()
            }
            Stores::Granted(labels) => labels
                .get(&identifier)
                .cloned()
                .ok_or(HostError::AccessDenied)?,
        };
        Ok(self.table.push(Bucket {
            backend,
            name: identifier.into(),
        })?)
    }

    // What both drafts do alike, each call held to the request's budget. The drafts' trait
    // methods are one line each on top of these.

    pub(super) async fn get(
        &mut self,
        bucket: &Resource<Bucket>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, HostError> {
        let (backend, name) = self.bucket(bucket)?;
        let value = backend.get(&name, key).await?;
        self.budget.charge(value.as_ref().map_or(0, Vec::len))?;
        Ok(value)
    }

    pub(super) async fn set(
        &mut self,
        bucket: &Resource<Bucket>,
        key: &str,
        value: &[u8],
    ) -> Result<(), HostError> {
        self.budget.check_value(key, value)?;
        let (backend, name) = self.bucket(bucket)?;
        Ok(backend.set(&name, key, value).await?)
    }

    pub(super) async fn delete(
        &mut self,
        bucket: &Resource<Bucket>,
        key: &str,
    ) -> Result<(), HostError> {
        let (backend, name) = self.bucket(bucket)?;
        Ok(backend.delete(&name, key).await?)
    }

    pub(super) async fn exists(
        &mut self,
        bucket: &Resource<Bucket>,
        key: &str,
    ) -> Result<bool, HostError> {
        let (backend, name) = self.bucket(bucket)?;
        Ok(backend.exists(&name, key).await?)
    }

    pub(super) async fn list_keys(
        &mut self,
        bucket: &Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<super::KeyPage, HostError> {
        let (backend, name) = self.bucket(bucket)?;
        let page = backend.list_keys(&name, cursor).await?;
        self.budget
            .charge(page.keys.iter().map(String::len).sum())?;
        Ok(page)
    }

    pub(super) async fn get_many(
        &mut self,
        bucket: &Resource<Bucket>,
        keys: &[String],
    ) -> Result<super::Values, HostError> {
        self.budget.check_batch(keys.len())?;
        let (backend, name) = self.bucket(bucket)?;
        let values = backend.get_many(&name, keys).await?;
        self.budget.charge(
            values
                .iter()
                .flatten()
                .map(|(key, value)| key.len() + value.len())
                .sum(),
        )?;
        Ok(values)
    }

    pub(super) async fn set_many(
        &mut self,
        bucket: &Resource<Bucket>,
        entries: &[(String, Vec<u8>)],
    ) -> Result<(), HostError> {
        self.budget.check_batch(entries.len())?;
        for (key, value) in entries {
            self.budget.check_value(key, value)?;
        }
        let (backend, name) = self.bucket(bucket)?;
        Ok(backend.set_many(&name, entries).await?)
    }

    pub(super) async fn delete_many(
        &mut self,
        bucket: &Resource<Bucket>,
        keys: &[String],
    ) -> Result<(), HostError> {
        self.budget.check_batch(keys.len())?;
        let (backend, name) = self.bucket(bucket)?;
        Ok(backend.delete_many(&name, keys).await?)
    }

    /// The backend and name of an open bucket (cheap clones: an `Arc` each).
    pub(super) fn bucket(
        &self,
        bucket: &Resource<Bucket>,
    ) -> Result<(Arc<dyn KvBackend>, Arc<str>), HostError> {
        let bucket = self.table.get(bucket)?;
        Ok((bucket.backend.clone(), bucket.name.clone()))
    }
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, HostError> {
        self.open_bucket(identifier)
    }

    fn convert_error(&mut self, err: HostError) -> wasmtime::Result<store::Error> {
        Ok(match err.into_wit()? {
            WitError::NoSuchStore => store::Error::NoSuchStore,
            WitError::AccessDenied => store::Error::AccessDenied,
            WitError::Other(message) => store::Error::Other(message),
        })
    }
}

impl store::HostBucket for KvView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Option<Vec<u8>>, HostError> {
        KvView::get(self, &bucket, &key).await
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), HostError> {
        KvView::set(self, &bucket, &key, &value).await
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Result<(), HostError> {
        KvView::delete(self, &bucket, &key).await
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Result<bool, HostError> {
        KvView::exists(self, &bucket, &key).await
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<store::KeyResponse, HostError> {
        let page = KvView::list_keys(self, &bucket, cursor).await?;
        Ok(store::KeyResponse {
            keys: page.keys,
            cursor: page.cursor,
        })
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KvView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> Result<u64, HostError> {
        // This draft counts in u64, the backend (like Redis) in i64.
        let delta = i64::try_from(delta).map_err(|_| {
            limit(format!(
                "cannot increment '{key}' by {delta}: more than 2^63-1"
            ))
        })?;
        let (backend, name) = self.bucket(&bucket)?;
        let sum = backend.increment(&name, &key, delta).await?;
        u64::try_from(sum).map_err(|_| {
            limit(format!(
                "counter '{key}' is negative ({sum}); this draft counts in u64"
            ))
        })
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<super::Values, HostError> {
        KvView::get_many(self, &bucket, &keys).await
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Result<(), HostError> {
        KvView::set_many(self, &bucket, &key_values).await
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<(), HostError> {
        KvView::delete_many(self, &bucket, &keys).await
    }
}

/// Adds `wasi:keyvalue/{store,atomics,batch}` at `@0.2.0-draft` and `@0.2.0-draft2` to
/// `linker`; `view` finds a request's [`KvView`] in its store data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<_, HasKv>(linker, view)?;
    atomics::add_to_linker::<_, HasKv>(linker, view)?;
    batch::add_to_linker::<_, HasKv>(linker, view)?;
    super::wasi_draft2::add_to_linker(linker, view)
}

pub(super) struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}
