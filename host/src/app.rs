//! An app: the components a host runs, the routes each answers, and the key-value stores and
//! files each may reach.
//!
//! There is one way to start: `todo-host` alone is an app of one component (the embedded todo
//! component, or `--component`) on every path, with `--store` as its store and `--public` as its
//! files; `todo-host up` reads an app from a Spin-style manifest ([`crate::manifest`], which
//! only reads and checks it). Both become an [`App`], which `Server::bind` starts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;

use crate::config::{AppSource, Config};
use crate::engine::ComponentSource;
use crate::kv::BackendConfig;
use crate::manifest::{self, LoadedManifest};
use crate::routes::Route;

/// The store label of the command line's `--store`.
pub const DEFAULT_STORE_LABEL: &str = "default";
/// Where the guest sees the `--public` folder.
pub const PUBLIC_MOUNT: &str = "/public";

/// Components, their routes, and the stores they use: checked, not yet started.
#[derive(Debug, Clone)]
pub struct App {
    /// The manifest's application name; `None` for the command line's single component.
    pub name: Option<String>,
    pub components: Vec<AppComponent>,
    /// Store label → where it lives.
    pub backends: BTreeMap<String, BackendConfig>,
}

/// One component of an [`App`].
#[derive(Debug, Clone)]
pub struct AppComponent {
    pub id: String,
    pub source: ComponentSource,
    pub routes: Vec<Route>,
    pub key_value: KvGrant,
    /// A host directory mounted read-only, and where the guest sees it.
    pub files: Option<(PathBuf, String)>,
}

/// Which buckets a component may open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvGrant {
    /// Any bucket name, all in the store of this label: the command line's `--store`.
    AnyBucketIn(String),
    /// Only these store labels, each a bucket of its own: what a manifest grants.
    Labels(Vec<String>),
}

impl KvGrant {
    /// The store labels this grant names.
    pub fn labels(&self) -> Vec<&str> {
        match self {
            KvGrant::AnyBucketIn(label) => vec![label.as_str()],
            KvGrant::Labels(labels) => labels.iter().map(String::as_str).collect(),
        }
    }
}

impl App {
    /// The app `config` describes: the command line's single component, or the app of its
    /// manifest (built first with `--build`).
    pub async fn from_config(config: &Config) -> anyhow::Result<Self> {
        match &config.app {
            None => Self::single(config),
            Some(AppSource {
                manifest,
                runtime_config,
                build,
            }) => {
                let loaded = manifest::load(manifest, runtime_config.as_deref())?;
                if *build {
                    manifest::run_builds(&loaded.builds).await?;
                }
                for component in &loaded.components {
                    let buildable = loaded.builds.iter().any(|b| b.component == component.id);
                    anyhow::ensure!(
                        component.source.is_file(),
                        "component '{}': source {} does not exist{}",
                        component.id,
                        component.source.display(),
                        if buildable && !*build {
                            "; `todo-host up --build` runs its build command first"
                        } else {
                            ""
                        }
                    );
                }
                Ok(Self::from_manifest(loaded))
            }
        }
    }

    /// The app of a manifest: each component on its triggers' routes, reaching only the store
    /// labels it names.
    fn from_manifest(loaded: LoadedManifest) -> Self {
        Self {
            name: Some(loaded.name),
            components: loaded
                .components
                .into_iter()
                .map(|component| AppComponent {
                    id: component.id,
                    source: ComponentSource::File(component.source),
                    routes: component.routes,
                    key_value: KvGrant::Labels(component.key_value_stores),
                    files: component.files,
                })
                .collect(),
            backends: loaded.stores,
        }
    }

    /// The command line's app: one component on every path, `--store` under the label
    /// `default` with any bucket name, `--public` mounted at [`PUBLIC_MOUNT`].
    pub fn single(config: &Config) -> anyhow::Result<Self> {
        let source = match &config.component {
            Some(path) => ComponentSource::File(path.clone()),
            None => ComponentSource::embedded(),
        };
        let files = match &config.public {
            Some(dir) => {
                let canonical = dir
                    .canonicalize()
                    .with_context(|| format!("cannot use public folder {}", dir.display()))?;
                anyhow::ensure!(
                    canonical.is_dir(),
                    "public folder {} is not a directory",
                    dir.display()
                );
                Some((canonical, PUBLIC_MOUNT.to_string()))
            }
            None => None,
        };
        Ok(Self {
            name: None,
            components: vec![AppComponent {
                id: "todo".to_string(),
                source,
                routes: vec![Route::Prefix(String::new())],
                key_value: KvGrant::AnyBucketIn(DEFAULT_STORE_LABEL.to_string()),
                files,
            }],
            backends: BTreeMap::from([(DEFAULT_STORE_LABEL.to_string(), config.store.clone())]),
        })
    }
}
