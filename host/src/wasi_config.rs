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

/// The key under which every component also finds the most bytes this host stores under one
/// key (`--kv-max-value`), unless its configuration sets that key itself: the todo component
/// keeps its index pages within it, since a larger value would be refused with a trap.
pub const KV_MAX_VALUE_KEY: &str = "kv_max_value";

/// What a request's host functions read the configuration through: the component's values,
/// and this host's `--kv-max-value` ([`KV_MAX_VALUE_KEY`]).
pub struct ConfigView<'a> {
    pub values: &'a BTreeMap<String, String>,
    pub kv_max_value: usize,
}

impl ConfigView<'_> {
    fn get(&self, key: &str) -> Option<String> {
        match self.values.get(key) {
            Some(value) => Some(value.clone()),
            None if key == KV_MAX_VALUE_KEY => Some(self.kv_max_value.to_string()),
            None => None,
        }
    }

    fn all(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = self
            .values
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        if !self.values.contains_key(KV_MAX_VALUE_KEY) {
            all.push((KV_MAX_VALUE_KEY.to_string(), self.kv_max_value.to_string()));
        }
        all
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_limit_is_served_unless_the_operator_sets_the_key() {
        let unset = BTreeMap::from([("accounts".to_string(), "off".to_string())]);
        let view = ConfigView {
            values: &unset,
            kv_max_value: 300,
        };
        assert_eq!(view.get(KV_MAX_VALUE_KEY).as_deref(), Some("300"));
        assert_eq!(view.get("accounts").as_deref(), Some("off"));
        assert_eq!(view.get("other"), None);
        assert!(
            view.all()
                .contains(&(KV_MAX_VALUE_KEY.to_string(), "300".to_string()))
        );
        let set = BTreeMap::from([(KV_MAX_VALUE_KEY.to_string(), "4096".to_string())]);
        let view = ConfigView {
            values: &set,
            kv_max_value: 300,
        };
        assert_eq!(view.get(KV_MAX_VALUE_KEY).as_deref(), Some("4096"));
        assert_eq!(view.all().len(), 1);
    }
}
