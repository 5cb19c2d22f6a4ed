//! `wasi:config/store`: the operator's configuration of one component (`--config KEY=VALUE`, or
//! a manifest's `[component.NAME.variables]` rendered), read-only, the same for every instance.
//!
//! Two versions of the interface are served, as for `wasi:keyvalue`: `@0.2.0-rc.1`, the one
//! wasmtime 48, `wasmtime serve -S config` and wash 2.10 serve (the default build imports it),
//! and `@0.2.0-draft-2024-09-27`, Spin's (the draft2 build imports it). Pre-release versions
//! never link against each other, so a component gets whichever it imports. A key the operator
//! did not set is `none`: the component's default.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::{HasData, Linker};

mod rc {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasi:config/imports@0.2.0-rc.1",
    });
}

mod spin_draft {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "wasi:config/imports@0.2.0-draft-2024-09-27",
    });
}

use rc::wasi::config0_2_0_rc_1::store as rc_store;
use spin_draft::wasi::config0_2_0_draft_2024_09_27::store as draft_store;

/// One component's configuration: key → value.
pub type ConfigValues = Arc<BTreeMap<String, String>>;

/// What a request's host functions read the configuration through.
pub struct ConfigView<'a>(pub &'a BTreeMap<String, String>);

impl ConfigView<'_> {
    fn get(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }

    fn all(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
}

impl rc_store::Host for ConfigView<'_> {
    fn get(&mut self, key: String) -> Result<Option<String>, rc_store::Error> {
        Ok(ConfigView::get(self, &key))
    }

    fn get_all(&mut self) -> Result<Vec<(String, String)>, rc_store::Error> {
        Ok(self.all())
    }
}

impl draft_store::Host for ConfigView<'_> {
    fn get(&mut self, key: String) -> Result<Option<String>, draft_store::Error> {
        Ok(ConfigView::get(self, &key))
    }

    fn get_all(&mut self) -> Result<Vec<(String, String)>, draft_store::Error> {
        Ok(self.all())
    }
}

struct HasConfig;

impl HasData for HasConfig {
    type Data<'a> = ConfigView<'a>;
}

/// Adds both versions of `wasi:config/store` to `linker`, reading through `view`.
pub fn add_to_linker<T: 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> ConfigView<'_>,
) -> anyhow::Result<()> {
    rc_store::add_to_linker::<T, HasConfig>(linker, view)?;
    draft_store::add_to_linker::<T, HasConfig>(linker, view)?;
    Ok(())
}
