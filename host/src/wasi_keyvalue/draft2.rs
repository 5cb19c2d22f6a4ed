//! `wasi:keyvalue@0.2.0-draft2` (Spin): its generated bindings and the conversions to them; the
//! work is [`super::KvView`]'s, as for [`super::draft`].
//!
//! What is particular to this draft: `list-keys` cursors are strings (ours carry the backend's
//! numeric cursor), `increment` is signed, `get-many` answers `(key, option<value>)` pairs, and
//! there is compare-and-swap: `cas::new` remembers the value it saw, `swap` writes only if the
//! value is still that one, else answers `cas-failed` with the `cas` back.

use wasmtime::component::{Linker, Resource};

use super::{Bucket, HasKv, HostError, KvView, WitError};
use crate::kv::{KvBackend, KvError};

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasi:keyvalue/imports@0.2.0-draft2",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store@0.2.0-draft2.bucket": crate::wasi_keyvalue::Bucket,
            "wasi:keyvalue/atomics@0.2.0-draft2.cas": crate::wasi_keyvalue::draft2::Cas,
        },
        trappable_error_type: {
            "wasi:keyvalue/store@0.2.0-draft2.error" => crate::wasi_keyvalue::HostError,
        },
    });
}

use generated::wasi::keyvalue0_2_0_draft2::{atomics, batch, store};

/// A compare-and-swap handle: the key and the value seen when it was made.
pub struct Cas {
    backend: std::sync::Arc<dyn KvBackend>,
    bucket: std::sync::Arc<str>,
    key: String,
    seen: Option<Vec<u8>>,
}

fn parse_cursor(cursor: Option<String>) -> Result<Option<u64>, HostError> {
    cursor
        .map(|text| {
            text.parse::<u64>().map_err(|_| {
                HostError::Backend(KvError(format!(
                    "'{text}' is not a cursor this host gave out"
                )))
            })
        })
        .transpose()
}

impl store::Host for KvView<'_> {
    async fn open(&mut self, identifier: String) -> Result<Resource<Bucket>, HostError> {
        self.open_bucket(identifier)
    }

    fn convert_error(&mut self, err: HostError) -> wasmtime::Result<store::Error> {
        to_store_error(err)
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
        cursor: Option<String>,
    ) -> Result<store::KeyResponse, HostError> {
        let page = KvView::list_keys(self, &bucket, parse_cursor(cursor)?).await?;
        Ok(store::KeyResponse {
            keys: page.keys,
            cursor: page.cursor.map(|c| c.to_string()),
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
        delta: i64,
    ) -> Result<i64, HostError> {
        KvView::increment(self, &bucket, &key, delta).await
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let handle = self.table.delete(cas)?;
        if let Err(err) = self.budget.check_value(&handle.key, &value) {
            return Ok(Err(atomics::CasError::StoreError(to_store_error(err)?)));
        }
        let swapped = handle
            .backend
            .compare_and_swap(&handle.bucket, &handle.key, handle.seen.as_deref(), &value)
            .await;
        match swapped {
            Ok(true) => Ok(Ok(())),
            // Someone wrote in between: the guest gets its `cas` back to look again.
            Ok(false) => {
                let again = self.table.push(handle)?;
                Ok(Err(atomics::CasError::CasFailed(again)))
            }
            Err(err) => Ok(Err(atomics::CasError::StoreError(to_store_error(
                err.into(),
            )?))),
        }
    }
}

fn to_store_error(err: HostError) -> wasmtime::Result<store::Error> {
    Ok(match err.into_wit()? {
        WitError::NoSuchStore => store::Error::NoSuchStore,
        WitError::AccessDenied => store::Error::AccessDenied,
        WitError::Other(message) => store::Error::Other(message),
    })
}

impl atomics::HostCas for KvView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> Result<Resource<Cas>, HostError> {
        let (backend, name) = self.bucket(&bucket)?;
        let seen = KvView::get(self, &bucket, &key).await?;
        Ok(self.table.push(Cas {
            backend,
            bucket: name,
            key,
            seen,
        })?)
    }

    async fn current(&mut self, cas: Resource<Cas>) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self.table.get(&cas)?.seen.clone())
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, HostError> {
        let values = KvView::get_many(self, &bucket, &keys).await?;
        Ok(keys
            .into_iter()
            .zip(values)
            .map(|(key, found)| (key, found.map(|(_, value)| value)))
            .collect())
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

/// Adds `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2` to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<_, HasKv>(linker, view)?;
    atomics::add_to_linker::<_, HasKv>(linker, view)?;
    batch::add_to_linker::<_, HasKv>(linker, view)?;
    Ok(())
}
