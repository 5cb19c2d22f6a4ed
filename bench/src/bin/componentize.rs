//! `componentize CORE.wasm COMPONENT.wasm`: makes a component of a core module built for
//! `wasm32-unknown-unknown` with wit-bindgen (its component-type section names the world), as
//! `host/build.rs` does for the todo component. `bench/run.sh` uses it for the hello floor: the
//! counter fixture without a C library.

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [core, component] = args.as_slice() else {
        anyhow::bail!("usage: componentize CORE.wasm COMPONENT.wasm");
    };
    let module = std::fs::read(core).with_context(|| format!("cannot read {core}"))?;
    let encoded = wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|encoder| encoder.validate(true).encode())
        .with_context(|| format!("cannot make a component of {core}"))?;
    std::fs::write(component, encoded).with_context(|| format!("cannot write {component}"))
}
