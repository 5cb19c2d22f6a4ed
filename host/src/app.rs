//! An app: the components a host runs, the routes each answers, and the key-value stores and
//! files each may reach.
//!
//! There is one way to start: `todo-host` alone is an app of one component (the embedded todo
//! component, or `--component`) on every path, with `--store` as its store; with `--public DIR`
//! it is an app of two, as Spin serves files beside an app: that component on the todo API's
//! routes, and the embedded files component (`guest/files/`) with DIR on every other path.
//! `todo-host up` reads an app from a Spin-style manifest ([`crate::manifest`], which only reads
//! and checks it). Both become an [`App`], which `Server::bind` starts.

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
/// The id of the files component in the command line's app.
pub const FILES_COMPONENT_ID: &str = "files";

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
    /// What it reads through `wasi:config/store`: `--config`, or its rendered manifest variables.
    pub config: BTreeMap<String, String>,
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
                Self::from_manifest(loaded, &config.variables)
            }
        }
    }

    /// The app of a manifest: each component on its triggers' routes, reaching only the store
    /// labels it names, configured by its variables rendered with `variables` (`--config`).
    fn from_manifest(
        loaded: LoadedManifest,
        variables: &BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        let mut components = Vec::new();
        for component in loaded.components {
            let config = manifest::render_variables(&component, &loaded.variables, variables)?;
            components.push(AppComponent {
                id: component.id,
                source: ComponentSource::File(component.source),
                routes: component.routes,
                key_value: KvGrant::Labels(component.key_value_stores),
                files: component.files,
                config,
            });
        }
        Ok(Self {
            name: Some(loaded.name),
            components,
            backends: loaded.stores,
        })
    }

    /// The command line's app: one component on every path, `--store` under the label
    /// `default` with any bucket name. With `--public`, that component answers only the todo
    /// API's routes ([`todo_guest::router::API_ROUTES`]) and the files component every other
    /// path, with the folder mounted at [`PUBLIC_MOUNT`] and no store.
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
        let mut components = vec![AppComponent {
            id: "todo".to_string(),
            source,
            routes: vec![Route::Prefix(String::new())],
            key_value: KvGrant::AnyBucketIn(DEFAULT_STORE_LABEL.to_string()),
            files: None,
            config: config.variables.clone(),
        }];
        if let Some(files) = files {
            components[0].routes = todo_guest::router::API_ROUTES
                .iter()
                .map(|route| Route::parse(route))
                .collect::<anyhow::Result<_>>()?;
            components.push(AppComponent {
                id: FILES_COMPONENT_ID.to_string(),
                source: ComponentSource::embedded_files(),
                routes: vec![Route::Prefix(String::new())],
                key_value: KvGrant::Labels(Vec::new()),
                files: Some(files),
                config: BTreeMap::new(),
            });
        }
        Ok(Self {
            name: None,
            components,
            backends: BTreeMap::from([(DEFAULT_STORE_LABEL.to_string(), config.store.clone())]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::RouteTable;

    /// The component id that `app` routes `path` to.
    fn served_by<'a>(app: &'a App, path: &str) -> Option<&'a str> {
        let table = RouteTable::new(
            app.components
                .iter()
                .flat_map(|c| c.routes.iter().map(|r| (r.clone(), c.id.as_str())))
                .collect(),
        );
        table.pick(path).copied()
    }

    #[test]
    fn without_a_public_folder_the_todo_component_serves_every_path() -> anyhow::Result<()> {
        let app = App::single(&Config::default())?;
        assert_eq!(app.components.len(), 1);
        for path in ["/", "/todos/1", "/app.js", "/openapi.json"] {
            assert_eq!(served_by(&app, path), Some("todo"), "{path}");
        }
        Ok(())
    }

    #[test]
    fn a_public_folder_goes_to_the_files_component_and_the_api_to_the_todo_one()
    -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let config = Config {
            public: Some(dir.path().to_path_buf()),
            ..Config::default()
        };
        let app = App::single(&config)?;
        let files = app
            .components
            .iter()
            .find(|c| c.id == FILES_COMPONENT_ID)
            .context("no files component")?;
        assert_eq!(files.key_value, KvGrant::Labels(Vec::new()), "no store");
        assert_eq!(
            files.files.as_ref().map(|(_, guest)| guest.as_str()),
            Some(PUBLIC_MOUNT)
        );
        let todo = app
            .components
            .iter()
            .find(|c| c.id == "todo")
            .context("no todo component")?;
        assert!(todo.files.is_none(), "the todo component mounts nothing");
        // The host's routes and the guest's own test of an API path agree on every path.
        for path in [
            "/",
            "/index.html",
            "/app.js",
            "/deep/link",
            "/todos",
            "/todos/",
            "/todos/7",
            "/todos/7/x",
            "/todosx",
            "/api",
            "/api/rule",
            "/api/currentUser",
            "/apis",
            "/openapi.json",
            "/openapi.json/x",
        ] {
            let expected = if todo_guest::router::is_api_path(path) {
                "todo"
            } else {
                FILES_COMPONENT_ID
            };
            assert_eq!(served_by(&app, path), Some(expected), "{path}");
        }
        Ok(())
    }
}
