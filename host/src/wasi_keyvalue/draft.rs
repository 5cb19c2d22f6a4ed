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

impl_common_keyvalue!(
    store: store,
    atomics: atomics,
    batch: batch,
    cursor: u64,
    parse_cursor: Ok::<u64, HostError>,
    format_cursor: std::convert::identity,
    get_many: Values,
    get_many_answer: values_as_they_are,
);

/// This draft answers `get-many` as the backends do: per key, the key and value or nothing.
fn values_as_they_are(_keys: Vec<String>, values: Values) -> Values {
    values
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
