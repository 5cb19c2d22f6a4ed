//! `wasi:keyvalue@0.2.0-draft2` (Spin): its generated bindings and the conversions to them; the
//! work is [`super::KvView`]'s, as for [`super::draft`].
//!
//! What is particular to this draft: `list-keys` cursors are strings (ours carry the backend's
//! numeric cursor), `increment` is signed, `get-many` answers `(key, option<value>)` pairs, and
//! there is compare-and-swap: `cas::new` remembers the value it saw, `swap` writes only if the
//! value is still that one, else answers `cas-failed` with the `cas` back.

use wasmtime::component::{Linker, Resource};

use super::{Bucket, HasKv, HostError, KvView, WitError};
use crate::kv::{KvBackend, KvError, Values};

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

/// This draft's cursors are strings; ours carry the backend's `u64`.
fn parse_cursor(text: String) -> Result<u64, HostError> {
    text.parse::<u64>().map_err(|_| {
        HostError::Backend(KvError(format!(
            "'{text}' is not a cursor this host gave out"
        )))
    })
}

impl_common_keyvalue!(
    store: store,
    atomics: atomics,
    batch: batch,
    cursor: String,
    parse_cursor: parse_cursor,
    format_cursor: format_cursor,
    get_many: Vec<(String, Option<Vec<u8>>)>,
    get_many_answer: pairs,
);

fn format_cursor(cursor: u64) -> String {
    cursor.to_string()
}

/// This draft answers `get-many` with `(key, option<value>)` for every key asked for.
fn pairs(keys: Vec<String>, values: Values) -> Vec<(String, Option<Vec<u8>>)> {
    keys.into_iter()
        .zip(values)
        .map(|(key, found)| (key, found.map(|(_, value)| value)))
        .collect()
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
            return Ok(Err(atomics::CasError::StoreError(
                store::Host::convert_error(self, err)?,
            )));
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
            Err(err) => Ok(Err(atomics::CasError::StoreError(
                store::Host::convert_error(self, err.into())?,
            ))),
        }
    }
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
