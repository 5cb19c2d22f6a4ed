//! Spin-style application manifests: several components on several routes in one host.
//!
//! `todo-host up [--build] --manifest spin.toml [--runtime-config-file runtime-config.toml]`
//! reads the subset of Spin's manifest (version 2) that matters here:
//!
//! ```toml
//! spin_manifest_version = 2
//! [application]
//! name = "todo"
//! [[trigger.http]]
//! route = "/todos/..."        # a prefix with `/...`, or an exact path
//! component = "todo"
//! [[trigger.http]]
//! route = "/..."              # every other path: the most specific route wins
//! component = "files"
//! [component.todo]
//! source = "todo.wasm"        # relative to the manifest
//! key_value_stores = ["default"]
//! [component.files]
//! source = "files.wasm"
//! files = [{ source = "public", destination = "/public" }]   # read-only
//! [component.todo.build]      # `up --build` runs it first, like `spin up --build`
//! command = "cargo build --target wasm32-wasip2 --release"     # by `sh -c`; or a list
//! workdir = ".."              # relative to the manifest
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
//! beside the manifest; a SQLite file's missing folders (`.spin/`) are created on start. Every
//! mistake (an unknown label, a route to no component, a missing
//! source) fails at start-up with a message that names it.
//!
//! This file reads and checks, and knows nothing of how an app runs: `app.rs` turns a
//! [`LoadedManifest`] into the app the host starts.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::kv::BackendConfig;
use crate::routes::Route;

/// A manifest, read and checked: its components, the stores they use, and how to build them.
#[derive(Debug)]
pub struct LoadedManifest {
    /// `[application] name`.
    pub name: String,
    /// In the manifest's order (by name).
    pub components: Vec<ManifestComponent>,
    /// Store label → where it lives: the runtime config's entries, and `default` when a
    /// component uses it without one.
    pub stores: BTreeMap<String, BackendConfig>,
    /// Each component's `[component.NAME.build]`, in the manifest's order.
    pub builds: Vec<BuildStep>,
    /// `[variables]`: the application's variables, which components' variables are made of.
    pub variables: BTreeMap<String, Variable>,
}

/// One application variable of `[variables]`, as Spin declares it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// Its value when the operator gives none.
    #[serde(default)]
    pub default: Option<String>,
    /// Whether the operator must give a value (`--config NAME=VALUE`).
    #[serde(default)]
    pub required: bool,
    /// Spin keeps a secret out of its logs; nothing here logs a value.
    #[serde(default)]
    #[allow(dead_code)]
    pub secret: bool,
}

/// One `[component.NAME]`, with the routes its triggers give it.
#[derive(Debug, Clone)]
pub struct ManifestComponent {
    pub id: String,
    /// The component file, relative paths joined to the manifest's folder. It need not exist
    /// yet: it may be what the component's build makes.
    pub source: PathBuf,
    pub routes: Vec<Route>,
    /// The store labels it may open, each a bucket of its own.
    pub key_value_stores: Vec<String>,
    /// A host directory mounted read-only, and where the guest sees it.
    pub files: Option<(PathBuf, String)>,
    /// `[component.NAME.variables]`: key → template (`"{{ accounts }}"`), what the component
    /// reads through `wasi:config/store` once rendered ([`render_variables`]).
    pub variables: BTreeMap<String, String>,
}

/// A component's build command, as `spin build` runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildStep {
    pub component: String,
    /// Run by `sh -c`, one after the other.
    pub commands: Vec<String>,
    /// Where they run: the manifest's folder joined with the build's `workdir`.
    pub workdir: PathBuf,
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
    variables: BTreeMap<String, Variable>,
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
    build: Option<BuildSpec>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    files: Vec<FileMount>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct BuildSpec {
    command: Commands,
    #[serde(default)]
    workdir: Option<String>,
    /// What `spin watch` watches; nothing here watches.
    #[serde(default)]
    #[allow(dead_code)]
    watch: Vec<String>,
}

/// One command, or several run in order (Spin takes both).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Commands {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FileMount {
    Dir(String),
    Mapped { source: String, destination: String },
}

#[derive(Debug, Default, Deserialize)]
struct RuntimeConfig {
    /// Label → entry; each backend reads its own entries ([`BackendConfig::from_runtime_config`]).
    #[serde(default)]
    key_value_store: BTreeMap<String, toml::Table>,
}

/// Reads `manifest` and, if given, `runtime_config`, and checks that they fit together. A
/// component's source need not exist yet: it may be what its build makes.
pub fn load(manifest: &Path, runtime_config: Option<&Path>) -> anyhow::Result<LoadedManifest> {
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
    for (label, entry) in config.key_value_store {
        let backend = BackendConfig::from_runtime_config(&label, entry, config_base)
            .with_context(|| format!("runtime config {}", runtime_config_name(runtime_config)))?;
        stores.insert(label, backend);
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
    for name in parsed.variables.keys() {
        check_variable_name(name).map_err(|err| {
            anyhow::anyhow!("manifest {}: [variables]: {err}", manifest.display())
        })?;
    }
    let mut components = Vec::new();
    let mut builds = Vec::new();
    for (id, spec) in parsed.component {
        for (key, template) in &spec.variables {
            check_variable_name(key)
                .and_then(|()| {
                    template_names(template)?.into_iter().try_for_each(|name| {
                        match parsed.variables.contains_key(name) {
                            true => Ok(()),
                            false => Err(format!(
                                "it uses variable '{name}', which [variables] does not declare"
                            )),
                        }
                    })
                })
                .map_err(|err| anyhow::anyhow!("component '{id}', variable '{key}': {err}"))?;
        }
        for label in &spec.key_value_stores {
            if !stores.contains_key(label) {
                if label == "default" {
                    // Like Spin: `default` needs no runtime config.
                    let path = base.join(".spin/sqlite_key_value.db");
                    stores.insert(
                        label.clone(),
                        BackendConfig::from_url(&format!("sqlite://{}", path.display()))?,
                    );
                } else {
                    bail!(
                        "component '{id}' uses key-value store '{label}', which the runtime config does not define \
                         (add [key_value_store.{label}] with type = {})",
                        crate::kv::runtime_config_types()
                    );
                }
            }
        }
        let files = match spec.files.as_slice() {
            [] => None,
            [mount] => Some(mount_of(&id, base, mount)?),
            _ => bail!("component '{id}': this host mounts one directory per component"),
        };
        if let Some(build) = spec.build {
            builds.push(BuildStep {
                component: id.clone(),
                commands: match build.command {
                    Commands::One(command) => vec![command],
                    Commands::Many(commands) => commands,
                },
                workdir: base.join(build.workdir.unwrap_or_default()),
            });
        }
        components.push(ManifestComponent {
            routes: routes.remove(&id).unwrap_or_default(),
            source: base.join(&spec.source),
            key_value_stores: spec.key_value_stores,
            id,
            files,
            variables: spec.variables,
        });
    }
    if components.iter().all(|c| c.routes.is_empty()) {
        bail!(
            "manifest {} has no [[trigger.http]] route",
            manifest.display()
        );
    }
    Ok(LoadedManifest {
        name: parsed.application.name,
        components,
        stores,
        builds,
        variables: parsed.variables,
    })
}

/// Checks a variable or configuration key as Spin does: a lower-case letter, then lower-case
/// letters, digits and single `_`s.
pub fn check_variable_name(name: &str) -> Result<(), String> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.contains("__")
        && !name.ends_with('_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a variable name: a lower-case letter, then lower-case letters, digits and single '_'"
        ))
    }
}

/// A piece of a variable template: text as written, or a `{{ name }}` to fill in.
enum TemplatePart<'a> {
    Text(&'a str),
    Variable(&'a str),
}

/// `template` in pieces, each `{{ name }}` checked as a variable name: the one parser both the
/// load-time check and the rendering use.
fn template_parts(template: &str) -> Result<Vec<TemplatePart<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        parts.push(TemplatePart::Text(&rest[..start]));
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("'{template}' opens '{{{{' and never closes it"))?;
        let name = after[..end].trim();
        check_variable_name(name)?;
        parts.push(TemplatePart::Variable(name));
        rest = &after[end + 2..];
    }
    parts.push(TemplatePart::Text(rest));
    Ok(parts)
}

/// The variable names `{{ name }}` in `template`, in order.
fn template_names(template: &str) -> Result<Vec<&str>, String> {
    Ok(template_parts(template)?
        .into_iter()
        .filter_map(|part| match part {
            TemplatePart::Variable(name) => Some(name),
            TemplatePart::Text(_) => None,
        })
        .collect())
}

/// The configuration `component` sees: each of its variables' templates with every
/// `{{ name }}` replaced by the application variable's value, `--config` (`given`) first, then
/// its default. A required variable without a value, or one used with no value at all, is an
/// error naming it.
pub fn render_variables(
    component: &ManifestComponent,
    declared: &BTreeMap<String, Variable>,
    given: &BTreeMap<String, String>,
) -> anyhow::Result<BTreeMap<String, String>> {
    for (name, variable) in declared {
        if variable.required && !given.contains_key(name) {
            bail!("variable '{name}' is required: give it with --config {name}=VALUE");
        }
    }
    let mut rendered = BTreeMap::new();
    for (key, template) in &component.variables {
        let parts = template_parts(template).map_err(|err| {
            anyhow::anyhow!("component '{}', variable '{key}': {err}", component.id)
        })?;
        let mut value = String::new();
        for part in parts {
            match part {
                TemplatePart::Text(text) => value.push_str(text),
                TemplatePart::Variable(name) => {
                    let given = given
                        .get(name)
                        .or_else(|| declared.get(name).and_then(|v| v.default.as_ref()));
                    let Some(given) = given else {
                        bail!(
                            "component '{}', variable '{key}': variable '{name}' has no value and no default; \
                             give it with --config {name}=VALUE",
                            component.id
                        );
                    };
                    value.push_str(given);
                }
            }
        }
        rendered.insert(key.clone(), value);
    }
    Ok(rendered)
}

fn runtime_config_name(path: Option<&Path>) -> String {
    path.map_or_else(|| "(none)".to_string(), |p| p.display().to_string())
}

/// Runs each build step's commands in its folder, in order, as `spin up --build` does; their
/// output goes to stderr (stdout carries only the start-up line). Fails on the first command that
/// fails, naming it.
pub async fn run_builds(builds: &[BuildStep]) -> anyhow::Result<()> {
    for build in builds {
        for command in &build.commands {
            tracing::info!(component = %build.component, workdir = %build.workdir.display(), %command, "building");
            let status = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(&build.workdir)
                .stdin(std::process::Stdio::null())
                .stdout(std::io::stderr())
                .status()
                .await
                .with_context(|| {
                    format!(
                        "component '{}': cannot run build command `{command}` in {}",
                        build.component,
                        build.workdir.display()
                    )
                })?;
            if !status.success() {
                bail!(
                    "component '{}': build command `{command}` in {} failed ({status})",
                    build.component,
                    build.workdir.display()
                );
            }
        }
    }
    Ok(())
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
