//! Accounts through the real `todo-host` binary over HTTP: the account cases of
//! `tests/support/account_cases.rs` on the embedded component, on the draft2 build (Spin's
//! `wasi:config`), and on `deploy/spin.toml` through `todo-host up`; then what only a host the
//! tests hold can show: `required` mode, 50 concurrent wrong passwords that compute at most 10
//! hashes, 1,000 randomized operations of two users and anonymous callers with no crossing, and
//! an access log that never holds a token.

mod support;

use std::collections::BTreeMap;

use anyhow::Context;
use serde_json::{Value, json};
use support::{Host, HttpResponse, account_cases, workspace};

fn embedded(mode: &str) -> anyhow::Result<Host> {
    Host::start(&[
        "--store",
        "memory://",
        "--config",
        &format!("accounts={mode}"),
    ])
}

fn draft2(mode: &str) -> anyhow::Result<Host> {
    let wasm = support::todo_component_draft2()?.display().to_string();
    Host::start(&[
        "--store",
        "memory://",
        "--component",
        &wasm,
        "--config",
        &format!("accounts={mode}"),
    ])
}

/// `deploy/spin.toml` with its `accounts` variable set from the command line, on a fresh store.
fn spin_manifest(mode: &str) -> anyhow::Result<(Host, tempfile::TempDir)> {
    support::todo_component_draft2()?;
    support::platforms::files_component_wasip2()?;
    let dir = support::temp_dir()?;
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &config,
        format!(
            "[key_value_store.default]\ntype = \"spin\"\npath = \"{}\"\n",
            dir.path().join("todo.db").display()
        ),
    )?;
    let manifest = workspace().join("deploy/spin.toml");
    let host = Host::start(&[
        "up",
        "--manifest",
        &manifest.display().to_string(),
        "--runtime-config-file",
        &config.display().to_string(),
        "--config",
        &format!("accounts={mode}"),
    ])?;
    Ok((host, dir))
}

/// One test per case and host.
macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        mod draft {
            $(#[test]
            fn $case() -> anyhow::Result<()> {
                super::account_cases::$case(&super::embedded("optional")?)
            })*
        }
        mod draft2 {
            $(#[test]
            fn $case() -> anyhow::Result<()> {
                super::account_cases::$case(&super::draft2("optional")?)
            })*
        }
        mod spin_manifest {
            $(#[test]
            fn $case() -> anyhow::Result<()> {
                let (host, _store) = super::spin_manifest("optional")?;
                super::account_cases::$case(&host)
            })*
        }
    };
}

account_cases::every_account_case!(cases);

/// A request with headers and an optional JSON body; any status is an answer.
fn send(
    host: &Host,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> anyhow::Result<HttpResponse> {
    let body = body.map(Value::to_string);
    host.request_with(
        method,
        path,
        headers,
        body.as_deref().map(|b| ("application/json", b)),
    )
}

fn credentials(name: &str, password: &str) -> Value {
    json!({"userName": name, "password": password, "type": "account"})
}

/// Registers `name`; answers the `Cookie` header value that signs it in.
fn register(host: &Host, name: &str) -> anyhow::Result<String> {
    let response = send(
        host,
        "POST",
        "/api/register",
        &[],
        Some(&credentials(name, "correct horse")),
    )?;
    anyhow::ensure!(
        response.status == 201,
        "register {name}: {}",
        response.text()
    );
    let cookie = response.header("set-cookie").context("no Set-Cookie")?;
    Ok(cookie.split(';').next().unwrap_or_default().to_string())
}

#[test]
fn required_mode_answers_401_to_anonymous_callers_on_every_todo_route_and_serves_the_page() {
    for (name, host) in [
        ("embedded", embedded("required").map(|h| (h, None))),
        (
            "spin manifest",
            spin_manifest("required").map(|(h, dir)| (h, Some(dir))),
        ),
    ] {
        let (host, _store) = host.unwrap_or_else(|err| panic!("{name}: {err:#}"));
        for (method, path) in [
            ("GET", "/todos"),
            ("POST", "/todos"),
            ("GET", "/todos/1"),
            ("DELETE", "/todos"),
            ("GET", "/api/rule"),
            ("GET", "/api/currentUser"),
        ] {
            let response = send(&host, method, path, &[], None).expect("an answer");
            assert_eq!(response.status, 401, "{name}: {method} {path}");
        }
        let page = send(&host, "GET", "/", &[], None).expect("an answer");
        assert_eq!(page.status, 200, "{name}");
        let cookie = register(&host, "ann").expect("signed up");
        let created = send(
            &host,
            "POST",
            "/todos",
            &[("cookie", &cookie)],
            Some(&json!({"title": "mine"})),
        )
        .expect("an answer");
        assert_eq!(created.status, 201, "{name}: {}", created.text());
        let me = send(
            &host,
            "GET",
            "/api/currentUser",
            &[("cookie", &cookie)],
            None,
        )
        .expect("an answer");
        assert_eq!(me.json()["userid"], "ann", "{name}");
    }
}

#[test]
fn fifty_concurrent_wrong_passwords_for_one_name_compute_at_most_ten_hashes() -> anyhow::Result<()>
{
    let host = embedded("optional")?;
    register(&host, "ann")?;
    let answers: Vec<HttpResponse> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..50)
            .map(|_| {
                scope.spawn(|| {
                    send(
                        &host,
                        "POST",
                        "/api/login/account",
                        &[],
                        Some(&credentials("ann", "wrong horse!")),
                    )
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a worker panicked"))
            .collect::<anyhow::Result<_>>()
    })?;
    // A 200 `"status":"error"` is an answer after a hash; a 429 is refused before any.
    let hashed = answers.iter().filter(|a| a.status == 200).count();
    let refused = answers.iter().filter(|a| a.status == 429).count();
    assert_eq!(
        hashed + refused,
        50,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert!(hashed <= 10, "{hashed} hashes computed");
    assert!(
        answers
            .iter()
            .filter(|a| a.status == 200)
            .all(|a| a.json()["status"] == "error")
    );
    assert!(
        answers
            .iter()
            .filter(|a| a.status == 429)
            .all(|a| a.header("retry-after").is_some())
    );
    Ok(())
}

/// Who acts in the randomized run.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Actor {
    Anonymous,
    Ann,
    Bob,
}

#[test]
fn a_thousand_randomized_operations_over_http_never_cross_lists() -> anyhow::Result<()> {
    let host = embedded("optional")?;
    let ann = register(&host, "ann")?;
    register(&host, "bob")?;
    let token = send(
        &host,
        "POST",
        "/api/tokens",
        &[],
        Some(&credentials("bob", "correct horse")),
    )?
    .json()["token"]
        .as_str()
        .context("no token")?
        .to_string();
    let bob = format!("Bearer {token}");
    let headers = |actor: Actor| -> Vec<(&str, &str)> {
        match actor {
            Actor::Anonymous => vec![],
            Actor::Ann => vec![("cookie", ann.as_str())],
            Actor::Bob => vec![("authorization", bob.as_str())],
        }
    };
    let mut model: BTreeMap<Actor, BTreeMap<u64, String>> = BTreeMap::new();
    let mut highest = 0u64;
    let mut seed = 0x0dd_ba11_u64;
    let mut roll = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let actors = [Actor::Anonymous, Actor::Ann, Actor::Bob];
    for step in 0..1_000u64 {
        let actor = actors[roll(3) as usize];
        let id = 1 + roll(highest + 2);
        let legacy = roll(2) == 1;
        let list = model.entry(actor).or_default();
        let headers = headers(actor);
        match roll(8) {
            0..=2 => {
                let title = format!("{actor:?} {step}");
                let response = if legacy {
                    send(
                        &host,
                        "POST",
                        "/api/rule",
                        &headers,
                        Some(&json!({"name": title})),
                    )?
                } else {
                    send(
                        &host,
                        "POST",
                        "/todos",
                        &headers,
                        Some(&json!({"title": title})),
                    )?
                };
                let body = response.json();
                let new = body["id"].as_u64().or(body["key"].as_u64());
                let new = new.with_context(|| format!("{step}: {}", response.text()))?;
                assert!(!list.contains_key(&new), "{step}: id {new} reused");
                highest = highest.max(new);
                list.insert(new, title);
            }
            3..=4 => {
                let response = send(&host, "GET", &format!("/todos/{id}"), &headers, None)?;
                match list.get(&id) {
                    Some(title) => assert_eq!(response.json()["title"], title.as_str(), "{step}"),
                    None => assert_eq!(response.status, 404, "{step}: {actor:?} read {id}"),
                }
            }
            5 => {
                let title = format!("{actor:?} renamed {step}");
                let response = send(
                    &host,
                    "PATCH",
                    &format!("/todos/{id}"),
                    &headers,
                    Some(&json!({"title": title})),
                )?;
                match list.get_mut(&id) {
                    Some(old) => {
                        assert_eq!(response.status, 200, "{step}");
                        *old = title;
                    }
                    None => assert_eq!(response.status, 404, "{step}: {actor:?} changed {id}"),
                }
            }
            6 => {
                let response = send(&host, "DELETE", &format!("/todos/{id}"), &headers, None)?;
                let expected = if list.remove(&id).is_some() { 204 } else { 404 };
                assert_eq!(response.status, expected, "{step}: {actor:?} deleted {id}");
            }
            _ => {
                let response = send(&host, "GET", "/todos", &headers, None)?;
                let mut seen: Vec<(u64, String)> = response
                    .json()
                    .as_array()
                    .context("not a list")?
                    .iter()
                    .map(|t| {
                        let id = t["id"].as_u64().unwrap_or(0);
                        (id, t["title"].as_str().unwrap_or_default().to_string())
                    })
                    .collect();
                seen.sort();
                let expected: Vec<(u64, String)> =
                    list.iter().map(|(id, t)| (*id, t.clone())).collect();
                assert_eq!(seen, expected, "{step}: {actor:?}'s list");
            }
        }
    }
    Ok(())
}

#[test]
fn the_access_log_holds_no_cookie_no_token_and_no_password() -> anyhow::Result<()> {
    let dir = support::temp_dir()?;
    let log = dir.path().join("host.log");
    let (mut child, base) = support::host_logging_to(&log, &["--config", "accounts=optional"])?;
    let agent = ureq::agent();
    let registered = agent
        .post(&format!("{base}/api/register?note=x"))
        .send_json(credentials("ann", "correct horse"))?;
    let cookie = registered
        .header("set-cookie")
        .context("no cookie")?
        .to_string();
    let token = cookie
        .split(';')
        .next()
        .and_then(|pair| pair.split_once('='))
        .map(|(_, token)| token.to_string())
        .context("no token")?;
    agent
        .get(&format!("{base}/todos"))
        .set("cookie", &format!("todo_session={token}"))
        .call()?;
    agent
        .get(&format!("{base}/todos"))
        .set("authorization", &format!("Bearer {token}"))
        .call()?;
    // Stopped as a deployment stops it, so the log is flushed to the end.
    support::signal(child.id(), "TERM")?;
    child.wait()?;
    let text = std::fs::read_to_string(&log)?;
    assert!(text.contains("/todos"), "no access log: {text}");
    for secret in [token.as_str(), "correct horse", "todo_session="] {
        assert!(!text.contains(secret), "the log holds '{secret}'");
    }
    Ok(())
}

#[test]
fn a_sign_in_fits_in_32_mib_of_instance_memory_and_not_in_16() -> anyhow::Result<()> {
    for (cap, fits) in [("32MiB", true), ("16MiB", false)] {
        let host = Host::start(&[
            "--store",
            "memory://",
            "--max-memory",
            cap,
            "--config",
            "accounts=optional",
        ])?;
        let response = send(
            &host,
            "POST",
            "/api/register",
            &[],
            Some(&credentials("ann", "correct horse")),
        )?;
        if fits {
            assert_eq!(response.status, 201, "{cap}: {}", response.text());
        } else {
            // Argon2's 19 MiB do not fit: this request fails, and the host serves on.
            assert!(response.status >= 500, "{cap}: {}", response.status);
            assert_eq!(
                send(&host, "GET", "/todos", &[], None)?.status,
                200,
                "{cap}"
            );
        }
    }
    Ok(())
}
