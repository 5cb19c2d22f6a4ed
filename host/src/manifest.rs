//! Spin-style application manifests: several components on several routes in one host.
//!
//! `todo-host up --manifest spin.toml [--runtime-config-file runtime-config.toml]` reads the
//! subset of Spin's manifest (version 2) that matters here:
//!
//! ```toml
//! spin_manifest_version = 2
//! [application]
//! name = "todo"
//! [[trigger.http]]
//! route = "/..."              # a prefix with `/...`, or an exact path
//! component = "todo"
//! [component.todo]
//! source = "todo.wasm"        # relative to the manifest
//! key_value_stores = ["default"]
//! files = [{ source = "public", destination = "/public" }]   # read-only
//! ```
//!
//! and the runtime config that says where each key-value store label lives:
//!
//! ```toml
//! [key_value_store.default]
//! type = "spin"               # SQLite; `path` relative to the runtime config
//! path = ".spin/todo.db"
//! [key_value_store.shared]
//! type = "redis"
//! url = "redis://127.0.0.1:6379"
//! ```
//!
//! A component can open only the labels its manifest grants (others: `access-denied`). The label
//! `default` needs no runtime config: like Spin, it is a SQLite file, `.spin/sqlite_key_value.db`
//! beside the manifest. Every mistake (an unknown label, a route to no component, a missing
//! source) fails at start-up with a message that names it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

/// An application read from a manifest and its runtime config, checked and ready to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub name: String,
    pub components: Vec<AppComponent>,
    /// Store label → store URL (`sqlite://…`, `redis://…`, `memory://`).
    pub stores: BTreeMap<String, String>,
}

/// One component of an [`App`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppComponent {
    pub id: String,
    /// The `.wasm` file.
    pub source: PathBuf,
    pub routes: Vec<Route>,
    /// Store labels it may open.
    pub key_value_stores: Vec<String>,
    /// A host directory mounted read-only, and where the guest sees it.
    pub files: Option<(PathBuf, String)>,
}

/// Where a trigger listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/path`: that path only.
    Exact(String),
    /// `/prefix/...`: the prefix and everything under it (`/...`: every path).
    Prefix(String),
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Exact(path) => write!(f, "{path}"),
            Route::Prefix(prefix) => write!(f, "{prefix}/..."),
        }
    }
}

impl Route {
    fn parse(text: &str) -> anyhow::Result<Self> {
        if !text.starts_with('/') {
            bail!("route '{text}' must start with '/'");
        }
        Ok(match text.strip_suffix("/...") {
            Some(prefix) => Route::Prefix(prefix.to_string()),
            None => Route::Exact(text.trim_end_matches('/').to_string()),
        })
    }

    /// Whether `path` (no query) is this route's.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        match self {
            Route::Exact(exact) => path == exact,
            Route::Prefix(prefix) => {
                path == prefix
                    || path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
                    || prefix.is_empty()
            }
        }
    }

    /// How specific the route is: an exact route before any prefix, longer prefixes first.
    pub fn specificity(&self) -> (bool, usize) {
        match self {
            Route::Exact(exact) => (true, exact.len()),
            Route::Prefix(prefix) => (false, prefix.len()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    spin_manifest_version: u32,
    #[serde(default)]
    application: Application,
    #[serde(default)]
    trigger: Triggers,
    #[serde(default)]
    component: BTreeMap<String, ComponentSpec>,
    #[serde(default)]
    #[allow(dead_code)]
    variables: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
struct Application {
    #[serde(default)]
    name: String,
}

#[derive(Debug, Default, Deserialize)]
struct Triggers {
    #[serde(default)]
    http: Vec<HttpTrigger>,
}

#[derive(Debug, Deserialize)]
struct HttpTrigger {
    route: String,
    component: String,
}

#[derive(Debug, Deserialize)]
struct ComponentSpec {
    source: String,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    files: Vec<FileMount>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileMount {
    Dir(String),
    Mapped { source: String, destination: String },
}

#[derive(Debug, Default, Deserialize)]
struct RuntimeConfig {
    #[serde(default)]
    key_value_store: BTreeMap<String, StoreSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum StoreSpec {
    Spin { path: Option<String> },
    Redis { url: String },
    Memory {},
}

/// Reads `manifest` and, if given, `runtime_config`, and checks that they fit together.
pub fn load(manifest: &Path, runtime_config: Option<&Path>) -> anyhow::Result<App> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("cannot read manifest {}", manifest.display()))?;
    let parsed: Manifest = toml::from_str(&text).with_context(|| {
        format!(
            "manifest {} is not a valid Spin manifest",
            manifest.display()
        )
    })?;
    if parsed.spin_manifest_version != 2 {
        bail!(
            "manifest {} has spin_manifest_version = {}; this host reads version 2",
            manifest.display(),
            parsed.spin_manifest_version
        );
    }
    let base = manifest.parent().unwrap_or(Path::new("."));
    let config = match runtime_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read runtime config {}", path.display()))?;
            toml::from_str::<RuntimeConfig>(&text)
                .with_context(|| format!("runtime config {} is not valid", path.display()))?
        }
        None => RuntimeConfig::default(),
    };
    let config_base = runtime_config.and_then(Path::parent).unwrap_or(base);
    let mut stores = BTreeMap::new();
    for (label, spec) in config.key_value_store {
        let url = match spec {
            StoreSpec::Spin { path } => {
                let path = path.unwrap_or_else(|| format!(".spin/{label}.db"));
                format!("sqlite://{}", config_base.join(path).display())
            }
            StoreSpec::Redis { url } => url,
            StoreSpec::Memory {} => "memory://".to_string(),
        };
        stores.insert(label, url);
    }

    let mut routes: HashMap<String, Vec<Route>> = HashMap::new();
    for trigger in &parsed.trigger.http {
        if !parsed.component.contains_key(&trigger.component) {
            bail!(
                "the trigger for route '{}' names component '{}', which the manifest does not define",
                trigger.route,
                trigger.component
            );
        }
        routes
            .entry(trigger.component.clone())
            .or_default()
            .push(Route::parse(&trigger.route)?);
    }
    let mut components = Vec::new();
    for (id, spec) in parsed.component {
        let source = base.join(&spec.source);
        if !source.is_file() {
            bail!(
                "component '{id}': source {} does not exist",
                source.display()
            );
        }
        for label in &spec.key_value_stores {
            if !stores.contains_key(label) {
                if label == "default" {
                    let path = base.join(".spin/sqlite_key_value.db");
                    stores.insert(label.clone(), format!("sqlite://{}", path.display()));
                } else {
                    bail!(
                        "component '{id}' uses key-value store '{label}', which the runtime config does not define \
                         (add [key_value_store.{label}] with type = \"spin\" or \"redis\")"
                    );
                }
            }
        }
        let files = match spec.files.as_slice() {
            [] => None,
            [mount] => Some(mount_of(&id, base, mount)?),
            _ => bail!("component '{id}': this host mounts one directory per component"),
        };
        components.push(AppComponent {
            routes: routes.remove(&id).unwrap_or_default(),
            id,
            source,
            key_value_stores: spec.key_value_stores,
            files,
        });
    }
    if components.iter().all(|c| c.routes.is_empty()) {
        bail!(
            "manifest {} has no [[trigger.http]] route",
            manifest.display()
        );
    }
    Ok(App {
        name: parsed.application.name,
        components,
        stores,
    })
}

fn mount_of(id: &str, base: &Path, mount: &FileMount) -> anyhow::Result<(PathBuf, String)> {
    let (source, destination) = match mount {
        FileMount::Dir(dir) => {
            let dir = dir.trim_end_matches("/**").trim_end_matches('/');
            (dir.to_string(), format!("/{dir}"))
        }
        FileMount::Mapped {
            source,
            destination,
        } => (source.clone(), destination.clone()),
    };
    let host = base.join(&source);
    if !host.is_dir() {
        bail!(
            "component '{id}': files source {} is not a directory (only directories are mounted)",
            host.display()
        );
    }
    Ok((host, destination))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_exact_paths_and_prefixes() -> anyhow::Result<()> {
        let all = Route::parse("/...")?;
        let api = Route::parse("/api/...")?;
        let hello = Route::parse("/hello")?;
        assert!(all.matches("/") && all.matches("/todos/1"));
        assert!(api.matches("/api") && api.matches("/api/rule") && !api.matches("/apis"));
        assert!(hello.matches("/hello") && hello.matches("/hello/") && !hello.matches("/hello/x"));
        assert!(hello.specificity() > api.specificity() && api.specificity() > all.specificity());
        assert!(Route::parse("nope").is_err());
        Ok(())
    }
}
