//! `wasi:keyvalue@0.2.0-draft` (wasmtime, wasmCloud): its generated bindings and the conversions
//! to them; the work is [`super::KvView`]'s.
//!
//! What is particular to this draft: cursors are `u64`, `increment` counts in `u64` (the
//! backends in `i64`, like Redis), and `get-many` answers `option<(key, value)>` per key.

use wasmtime::component::{Linker, Resource};

use super::{Bucket, HasKv, HostError, KvView, WitError};
use crate::kv::{KvError, Values};

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasi:keyvalue/imports@0.2.0-draft",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store@0.2.0-draft.bucket": crate::wasi_keyvalue::Bucket,
        },
        trappable_error_type: {
            "wasi:keyvalue/store@0.2.0-draft.error" => crate::wasi_keyvalue::HostError,
        },
    });
}

use generated::wasi::keyvalue0_2_0_draft::{atomics, batch, store};

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
        let delta = i64::try_from(delta).map_err(|_| {
            KvError(format!(
                "cannot increment '{key}' by {delta}: more than 2^63-1"
            ))
        })?;
        let sum = KvView::increment(self, &bucket, &key, delta).await?;
        u64::try_from(sum).map_err(|_| {
            HostError::Backend(KvError(format!(
                "counter '{key}' is negative ({sum}); this draft counts in u64"
            )))
        })
    }
}

impl batch::Host for KvView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Result<Values, HostError> {
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

/// Adds `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft` to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> KvView<'_>,
) -> wasmtime::Result<()> {
    store::add_to_linker::<_, HasKv>(linker, view)?;
    atomics::add_to_linker::<_, HasKv>(linker, view)?;
    batch::add_to_linker::<_, HasKv>(linker, view)?;
    Ok(())
}
