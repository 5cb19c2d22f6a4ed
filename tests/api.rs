//! Every route and status code of both APIs, through the real `todo-host` binary over HTTP;
//! once with the embedded todo component (`wasi:keyvalue@0.2.0-draft`), once with the same
//! component built for `@0.2.0-draft2` (`--features draft2`, the draft Spin speaks).

mod support;

use support::{Host, api_cases};

fn embedded() -> anyhow::Result<Host> {
    Host::start(&["--store", "memory://"])
}

fn draft2() -> anyhow::Result<Host> {
    let wasm = support::todo_component_draft2()?.display().to_string();
    Host::start(&["--store", "memory://", "--component", &wasm])
}

/// One test per case and build.
macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        mod draft {
            $(#[test]
            fn $case() -> anyhow::Result<()> {
                super::api_cases::$case(&super::embedded()?)
            })*
        }
        mod draft2 {
            $(#[test]
            fn $case() -> anyhow::Result<()> {
                super::api_cases::$case(&super::draft2()?)
            })*
        }
    };
}

cases!(
    todos_crud_over_http,
    errors_over_http_carry_status_and_json_message,
    preflight_head_and_the_page,
    a_body_that_only_says_json_is_fine_and_accept_is_never_refused,
    legacy_api_over_http,
);
