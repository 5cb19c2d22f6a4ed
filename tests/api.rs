//! Every route and status code of both APIs, through the real `todo-host` binary over HTTP;
//! once with the embedded todo component (`wasi:keyvalue@0.2.0-draft`), once with the same
//! component built for `@0.2.0-draft2` (`--features draft2`, the draft Spin speaks), and once
//! more with accounts `optional` and no credential: anonymous callers see the API as before
//! accounts (`tests/accounts.rs` covers signed-in ones). Some cases
//! run under changed host limits: the guest must work under any KV batch limit, and have no body
//! cap of its own below the host's.

mod support;

use support::{Host, api_cases};

fn embedded(flags: &[&str]) -> anyhow::Result<Host> {
    let mut args = vec!["--store", "memory://"];
    args.extend_from_slice(flags);
    Host::start(&args)
}

fn optional(flags: &[&str]) -> anyhow::Result<Host> {
    let mut args = vec!["--store", "memory://", "--config", "accounts=optional"];
    args.extend_from_slice(flags);
    Host::start(&args)
}

fn draft2(flags: &[&str]) -> anyhow::Result<Host> {
    let wasm = support::todo_component_draft2()?.display().to_string();
    let mut args = vec!["--store", "memory://", "--component", &wasm];
    args.extend_from_slice(flags);
    Host::start(&args)
}

/// One test per case and build; `case with [flags]` starts that case's host with extra flags.
macro_rules! cases {
    ($($case:ident $(with [$($flag:expr),*])?),* $(,)?) => {
        mod draft {
            $(#[test]
            fn $case() -> anyhow::Result<()> {
                super::api_cases::$case(&super::embedded(&[$($($flag),*)?])?)
            })*
        }
        mod draft2 {
            $(#[test]
            fn $case() -> anyhow::Result<()> {
                super::api_cases::$case(&super::draft2(&[$($($flag),*)?])?)
            })*
        }
        mod anonymous_with_accounts_optional {
            $(#[test]
            fn $case() -> anyhow::Result<()> {
                super::api_cases::$case(&super::optional(&[$($($flag),*)?])?)
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
    lists_and_bulk_deletes_work_under_a_small_kv_batch_limit with ["--kv-max-batch-keys", "7"],
    a_body_under_a_raised_host_limit_is_accepted with ["--max-body", "3MiB"],
    the_same_body_under_the_default_limit_gets_413,
);
