//! What one request may ask of its host besides HTTP: the store, the time, the operator's
//! configuration and randomness. The component fills a [`Context`] from its imports
//! (`wasi:keyvalue`, `wasi:clocks`, `wasi:config/store`, `wasi:random`); native tests and
//! servers fill it with [`MemoryKv`](crate::kv::MemoryKv), a [`Settings`] map and
//! [`SeededEntropy`].

use std::cell::Cell;
use std::collections::BTreeMap;

use crate::kv::Kv;
use crate::time::Timestamp;

/// The operator's settings as the host serves them (`wasi:config/store`).
pub trait Config {
    /// The value of `key`, `None` when the host has none; `Err` with the host's message when it
    /// could not say.
    fn get(&self, key: &str) -> Result<Option<String>, String>;
}

/// Random bytes (`wasi:random/random` in the component): session tokens and password salts.
pub trait Entropy {
    /// Fills `bytes` with random bytes.
    fn fill(&self, bytes: &mut [u8]);
}

/// Everything a request is answered with besides itself.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The bucket of record.
    pub kv: &'a dyn Kv,
    /// The wall-clock time the request is answered at.
    pub now: Timestamp,
    /// The operator's settings.
    pub config: &'a dyn Config,
    /// Randomness for tokens and salts.
    pub entropy: &'a dyn Entropy,
}

/// A host that serves no configuration: every key unset, so accounts are off.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoConfig;

impl Config for NoConfig {
    fn get(&self, _key: &str) -> Result<Option<String>, String> {
        Ok(None)
    }
}

/// Settings from a map, as `--config key=value` gives them: for tests and native servers.
#[derive(Debug, Default, Clone)]
pub struct Settings(pub BTreeMap<String, String>);

impl Settings {
    /// Settings holding `pairs`.
    pub fn from_pairs<'p>(pairs: impl IntoIterator<Item = (&'p str, &'p str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        )
    }
}

impl Config for Settings {
    fn get(&self, key: &str) -> Result<Option<String>, String> {
        Ok(self.0.get(key).cloned())
    }
}

/// Deterministic bytes (SplitMix64) from a seed. For tests and benches, where runs must repeat:
/// never where a token must be unguessable (the component uses the host's `wasi:random`).
#[derive(Debug)]
pub struct SeededEntropy(Cell<u64>);

impl SeededEntropy {
    /// A stream starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Cell::new(seed))
    }
}

impl Entropy for SeededEntropy {
    fn fill(&self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let state = self.0.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
            self.0.set(state);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}
