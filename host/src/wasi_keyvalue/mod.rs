//! The host side of `wasi:keyvalue`: what a guest's `store`, `atomics` and `batch` calls do, on
//! the [`KvBackend`] its component may reach. The WIT face of the store; the backends are in
//! [`crate::kv`].
//!
//! Two drafts of the interface are linked side by side, because pre-release versions never link
//! against each other: [`draft`] (`@0.2.0-draft`: wasmtime, wasmCloud) and [`draft2`]
//! (`@0.2.0-draft2`: Spin). Each holds only its generated bindings and the conversions to them;
//! what they do alike lives here, once: opening buckets (`KvView::open_bucket`), every call held
//! to the request's [`KvBudget`], and the one place a host error becomes what the guest sees
//! (`HostError::into_wit`).
//!
//! A bucket resource is only a name: opening one copies nothing, so every instance sees the
//! shared store as it is now, and what it writes is there for the next request.
//!
//! Who is at fault decides the answer. A backend that fails (Redis down, a disk error) is the
//! store's fault: the guest gets `error::other(message)` and decides (the todo component answers
//! 503). A guest that breaks a limit of this host (a value larger than `--kv-max-value`, more
//! than `--kv-max-read` bytes read in one request) is the guest's fault: its instance is stopped
//! with a [`KvLimitBroken`] trap, which the host answers itself (413 for a value too large, 500
//! for the rest) and logs as the component's fault, not as an outage.

/// What both drafts' generated traits spell alike, delegated to [`KvView`]: `store` (`open`,
/// the one error mapping), the bucket's `get`/`set`/`delete`/`exists`/`list-keys`/`drop`,
/// `batch`, and the draft's `add_to_linker`. Each draft's module invokes it with its generated modules; what
/// differs it writes itself (counters, compare-and-swap) or names here: its cursor type and the
/// functions that turn it into and from the backend's `u64`, and the shape of its `get-many`
/// answer.
macro_rules! impl_common_keyvalue {
    (
        store: $store:ident,
        atomics: $atomics:ident,
        batch: $batch:ident,
        cursor: $cursor:ty,
        parse_cursor: $parse_cursor:path,
        format_cursor: $format_cursor:path,
        get_many: $get_many:ty,
        get_many_answer: $get_many_answer:path $(,)?
    ) => {
        impl $store::Host for KvView<'_> {
            async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, HostError> {
                self.open_bucket(identifier)
            }

            fn convert_error(&mut self, err: HostError) -> wasmtime::Result<$store::Error> {
                Ok(match err.into_wit()? {
                    WitError::NoSuchStore => $store::Error::NoSuchStore,
                    WitError::AccessDenied => $store::Error::AccessDenied,
                    WitError::Other(message) => $store::Error::Other(message),
                })
            }
        }

        impl $store::HostBucket for KvView<'_> {
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

            async fn delete(
                &mut self,
                bucket: Resource<Bucket>,
                key: String,
            ) -> Result<(), HostError> {
                KvView::delete(self, &bucket, &key).await
            }

            async fn exists(
                &mut self,
                bucket: Resource<Bucket>,
                key: String,
            ) -> Result<bool, HostError> {
                KvView::exists(self, &bucket, &key).await
            }

            async fn list_keys(
                &mut self,
                bucket: Resource<Bucket>,
                cursor: Option<$cursor>,
            ) -> Result<$store::KeyResponse, HostError> {
                let cursor = cursor.map($parse_cursor).transpose()?;
                let page = KvView::list_keys(self, &bucket, cursor).await?;
                Ok($store::KeyResponse {
                    keys: page.keys,
                    cursor: page.cursor.map($format_cursor),
                })
            }

            async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
                self.table.delete(bucket)?;
                Ok(())
            }
        }

        impl $batch::Host for KvView<'_> {
            async fn get_many(
                &mut self,
                bucket: Resource<Bucket>,
                keys: Vec<String>,
            ) -> Result<$get_many, HostError> {
                let values = KvView::get_many(self, &bucket, &keys).await?;
                Ok($get_many_answer(keys, values))
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

        /// Adds this draft's `wasi:keyvalue/{store,atomics,batch}` to `linker`.
        pub fn add_to_linker<T: Send + 'static>(
            linker: &mut Linker<T>,
            view: fn(&mut T) -> KvView<'_>,
        ) -> wasmtime::Result<()> {
            $store::add_to_linker::<_, HasKv>(linker, view)?;
            $atomics::add_to_linker::<_, HasKv>(linker, view)?;
            $batch::add_to_linker::<_, HasKv>(linker, view)?;
            Ok(())
        }
    };
}

pub mod draft;
pub mod draft2;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::kv::{KeyPage, KvBackend, KvError, Values};
use crate::limits::KvLimits;

/// The longest bucket name a guest may open.
const MAX_BUCKET_NAME: usize = 64;

/// An open bucket: a namespace in one shared backend.
pub struct Bucket {
    backend: Arc<dyn KvBackend>,
    name: Arc<str>,
}

/// Which buckets a component may open.
pub enum KvAccess {
    /// Any bucket name, all in one backend: the CLI's `--store`.
    AnyBucket(Arc<dyn KvBackend>),
    /// Only these store labels, each in its own backend: what an app manifest grants a
    /// component.
    Labels(HashMap<String, Arc<dyn KvBackend>>),
}

/// A guest that broke one of this host's key-value limits; the host answers for it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct KvLimitBroken {
    /// What the client is told: 413 when what it asked to store is too large, else 500.
    pub status: u16,
    pub message: String,
}

/// What a keyvalue call can fail with before it becomes the WIT `error`.
#[derive(Debug)]
pub enum HostError {
    NoSuchStore,
    AccessDenied,
    /// The store failed: the guest hears of it as `error::other`.
    Backend(KvError),
    /// The guest broke a limit, or passed a resource handle that is not its own: this traps.
    Trap(wasmtime::Error),
}

/// The `error` variant both drafts share, before it becomes either one's generated type.
enum WitError {
    NoSuchStore,
    AccessDenied,
    Other(String),
}

impl HostError {
    /// The one place a host error becomes what the guest sees: backend errors are logged and
    /// handed over as `other(message)`; a broken limit or handle traps.
    fn into_wit(self) -> wasmtime::Result<WitError> {
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

    /// The guest broke a limit; `status` is what its client will be told.
    fn limit(status: u16, message: String) -> Self {
        HostError::Trap(wasmtime::Error::new(KvLimitBroken { status, message }))
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
    /// Calls made, shared with whoever reports on the request.
    calls: Arc<AtomicU32>,
}

impl KvBudget {
    pub fn new(limits: KvLimits, calls: Arc<AtomicU32>) -> Self {
        Self {
            limits,
            read: 0,
            calls,
        }
    }

    fn check_value(&self, key: &str, value: &[u8]) -> Result<(), HostError> {
        if value.len() > self.limits.max_value {
            return Err(HostError::limit(
                413,
                format!(
                    "the value for '{key}' is {} bytes; this host stores at most {} bytes under one key",
                    value.len(),
                    self.limits.max_value
                ),
            ));
        }
        Ok(())
    }

    /// Counts `bytes` read; fails once the request has read more than its budget.
    fn charge(&mut self, bytes: usize) -> Result<(), HostError> {
        self.read = self.read.saturating_add(bytes);
        if self.read > self.limits.max_read_per_request {
            return Err(HostError::limit(
                500,
                format!(
                    "the component read {} bytes from the store in one request; the limit is {}",
                    self.read, self.limits.max_read_per_request
                ),
            ));
        }
        Ok(())
    }

    /// Keys per backend round trip: a guest's larger batch is split, so that one call never
    /// holds the backend (a SQLite write lock, a Redis `MGET`) for long, whatever the guest asks.
    fn batch_keys(&self) -> usize {
        self.limits.max_batch_keys.max(1)
    }
}

/// A request's view of the store: what its component may open, its resource table and budget.
pub struct KvView<'a> {
    pub access: &'a KvAccess,
    pub table: &'a mut ResourceTable,
    pub budget: &'a mut KvBudget,
}

// What both drafts do alike, each call held to the request's budget. The drafts' trait methods
// are one line each on top of these.
impl KvView<'_> {
    /// A bucket resource for `identifier`: any valid bucket name (no `:`, which the Redis backend
    /// uses to separate bucket and key) with [`KvAccess::AnyBucket`], a granted label otherwise.
    fn open_bucket(&mut self, identifier: String) -> Result<Resource<Bucket>, HostError> {
        let backend = match self.access {
            KvAccess::AnyBucket(backend) => {
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
            KvAccess::Labels(labels) => labels
                .get(&identifier)
                .cloned()
                .ok_or(HostError::AccessDenied)?,
        };
        Ok(self.table.push(Bucket {
            backend,
            name: identifier.into(),
        })?)
    }

    async fn get(
        &mut self,
        bucket: &Resource<Bucket>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, HostError> {
        let (backend, name) = self.bucket(bucket)?;
        let value = backend.get(&name, key).await?;
        self.budget.charge(value.as_ref().map_or(0, Vec::len))?;
        Ok(value)
    }

    async fn set(
        &mut self,
        bucket: &Resource<Bucket>,
        key: &str,
        value: &[u8],
    ) -> Result<(), HostError> {
        self.budget.check_value(key, value)?;
        let (backend, name) = self.bucket(bucket)?;
        Ok(backend.set(&name, key, value).await?)
    }

    async fn delete(&mut self, bucket: &Resource<Bucket>, key: &str) -> Result<(), HostError> {
        let (backend, name) = self.bucket(bucket)?;
        Ok(backend.delete(&name, key).await?)
    }

    async fn exists(&mut self, bucket: &Resource<Bucket>, key: &str) -> Result<bool, HostError> {
        let (backend, name) = self.bucket(bucket)?;
        Ok(backend.exists(&name, key).await?)
    }

    async fn list_keys(
        &mut self,
        bucket: &Resource<Bucket>,
        cursor: Option<u64>,
    ) -> Result<KeyPage, HostError> {
        let (backend, name) = self.bucket(bucket)?;
        let page = backend.list_keys(&name, cursor).await?;
        self.budget
            .charge(page.keys.iter().map(String::len).sum())?;
        Ok(page)
    }

    async fn increment(
        &mut self,
        bucket: &Resource<Bucket>,
        key: &str,
        delta: i64,
    ) -> Result<i64, HostError> {
        let (backend, name) = self.bucket(bucket)?;
        Ok(backend.increment(&name, key, delta).await?)
    }

    async fn get_many(
        &mut self,
        bucket: &Resource<Bucket>,
        keys: &[String],
    ) -> Result<Values, HostError> {
        let (backend, name) = self.bucket(bucket)?;
        let mut values = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(self.budget.batch_keys()) {
            let found = backend.get_many(&name, chunk).await?;
            self.budget.charge(
                found
                    .iter()
                    .flatten()
                    .map(|(key, value)| key.len() + value.len())
                    .sum(),
            )?;
            values.extend(found);
        }
        Ok(values)
    }

    async fn set_many(
        &mut self,
        bucket: &Resource<Bucket>,
        entries: &[(String, Vec<u8>)],
    ) -> Result<(), HostError> {
        for (key, value) in entries {
            self.budget.check_value(key, value)?;
        }
        let (backend, name) = self.bucket(bucket)?;
        for chunk in entries.chunks(self.budget.batch_keys()) {
            backend.set_many(&name, chunk).await?;
        }
        Ok(())
    }

    async fn delete_many(
        &mut self,
        bucket: &Resource<Bucket>,
        keys: &[String],
    ) -> Result<(), HostError> {
        let (backend, name) = self.bucket(bucket)?;
        for chunk in keys.chunks(self.budget.batch_keys()) {
            backend.delete_many(&name, chunk).await?;
        }
        Ok(())
    }

    /// The backend and name of an open bucket (cheap clones: an `Arc` each).
    fn bucket(
        &self,
        bucket: &Resource<Bucket>,
    ) -> Result<(Arc<dyn KvBackend>, Arc<str>), HostError> {
        // Every call on a bucket goes through here: count it once.
        self.budget.calls.fetch_add(1, Ordering::Relaxed);
        let bucket = self.table.get(bucket)?;
        Ok((bucket.backend.clone(), bucket.name.clone()))
    }
}

/// Adds `wasi:keyvalue/{store,atomics,batch}` at `@0.2.0-draft` and `@0.2.0-draft2` to
/// `linker`; `view` finds a request's [`KvView`] in its store data.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    draft::add_to_linker(linker, view)?;
    draft2::add_to_linker(linker, view)
}

/// The `HasData` marker both drafts' generated `add_to_linker` take.
struct HasKv;

impl HasData for HasKv {
    type Data<'a> = KvView<'a>;
}
