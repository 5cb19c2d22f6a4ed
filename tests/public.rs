//! `--public DIR`: static files first, with the right types, ETags and no way out of the folder;
//! single-page-app routes get the folder's `index.html`, missing assets a JSON 404; the folder is
//! read-only for the guest.

mod support;

use std::path::Path;

use serde_json::json;
use support::{Host, fixture, raw_call, raw_request, temp_dir, workspace};

/// A public folder with one file of each served type, a subfolder, and symlinks that point out.
fn public_folder(root: &Path) -> anyhow::Result<std::path::PathBuf> {
    let public = root.join("public");
    std::fs::create_dir_all(public.join("sub"))?;
    std::fs::write(root.join("secret.txt"), "outside the folder")?;
    for (name, bytes) in [
        (
            "index.html",
            &b"<!doctype html><title>static home</title>"[..],
        ),
        ("app.js", b"console.log('hi')"),
        ("style.css", b"body{}"),
        ("data.json", b"{\"ok\":true}"),
        ("logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
        ("image.png", b"\x89PNG\r\n\x1a\n"),
        ("favicon.ico", b"\0\0\x01\0"),
        ("font.woff2", b"wOF2"),
        ("sub/index.html", b"<title>sub home</title>"),
    ] {
        std::fs::write(public.join(name), bytes)?;
    }
    std::os::unix::fs::symlink(root.join("secret.txt"), public.join("leak.txt"))?;
    std::os::unix::fs::symlink(root, public.join("up"))?;
    Ok(public)
}

/// A host serving `public` with `--public`.
fn public_host(public: &Path) -> anyhow::Result<Host> {
    Host::start(&[
        "--store",
        "memory://",
        "--public",
        &public.display().to_string(),
    ])
}

#[test]
fn files_are_served_with_their_content_types() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let public = public_folder(dir.path())?;
    let host = public_host(&public)?;
    assert!(host.banner.contains("public: "), "{}", host.banner);
    for (path, content_type, body) in [
        ("/", "text/html; charset=utf-8", "static home"),
        ("/index.html", "text/html; charset=utf-8", "static home"),
        ("/app.js", "text/javascript; charset=utf-8", "console.log"),
        ("/style.css", "text/css; charset=utf-8", "body{}"),
        ("/data.json", "application/json", "\"ok\""),
        ("/logo.svg", "image/svg+xml", "<svg"),
        ("/image.png", "image/png", "PNG"),
        ("/favicon.ico", "image/x-icon", ""),
        ("/font.woff2", "font/woff2", "wOF2"),
        ("/sub/", "text/html; charset=utf-8", "sub home"),
        ("/sub", "text/html; charset=utf-8", "sub home"),
    ] {
        let response = host.request("GET", path, None)?;
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            response.header("content-type"),
            Some(content_type),
            "{path}"
        );
        assert!(
            response.text().contains(body),
            "{path}: {}",
            response.text()
        );
        assert!(response.header("etag").is_some(), "{path}");
    }
    // A route of a single-page app gets the folder's index.html; the APIs are untouched.
    let fallback = host.request("GET", "/some/spa/route", None)?;
    assert_eq!(fallback.status, 200);
    assert!(
        fallback.text().contains("static home"),
        "{}",
        fallback.text()
    );
    assert_eq!(
        host.call("POST", "/todos", Some(r#"{"title":"x"}"#))?.0,
        201
    );
    Ok(())
}

/// Whether `response` is HTML, whatever its charset parameter.
fn is_html(response: &support::HttpResponse) -> bool {
    response
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html"))
}

#[test]
fn a_deep_link_serves_the_public_index_html() -> anyhow::Result<()> {
    let spa = workspace().join("tests/fixtures/spa");
    let index = std::fs::read(spa.join("index.html"))?;
    let host = public_host(&spa)?;
    for route in ["/deep/link", "/deep", "/a/b/c/d"] {
        let response = host.request("GET", route, None)?;
        assert_eq!(response.status, 200, "{route}: {}", response.text());
        assert!(
            is_html(&response),
            "{route}: {:?}",
            response.header("content-type")
        );
        assert!(
            response.body == index,
            "{route} is not the SPA's index.html: {}",
            response.text()
        );
    }
    // An asset that is not there is a JSON 404, not a page that the browser would try to run.
    for asset in ["/foo.js", "/deep/foo.js", "/styles/missing.css"] {
        let response = host.request("GET", asset, None)?;
        assert_eq!(response.status, 404, "{asset}: {}", response.text());
        assert_eq!(
            response.header("content-type"),
            Some("application/json"),
            "{asset}"
        );
        assert!(
            response.json()["error"].is_string(),
            "{asset}: {}",
            response.text()
        );
    }
    // The APIs are the APIs, unknown API routes included.
    let todos = host.request("GET", "/todos", None)?;
    assert_eq!((todos.status, todos.json()), (200, json!([])));
    assert_eq!(todos.header("content-type"), Some("application/json"));
    assert_eq!(
        host.call("POST", "/todos", Some(r#"{"title":"x"}"#))?.0,
        201
    );
    assert_eq!(host.call("GET", "/api/rule", None)?.1["total"], 1);
    for unknown in ["/todos/1/more", "/api/nothing-here"] {
        let response = host.request("GET", unknown, None)?;
        assert_eq!(response.status, 404, "{unknown}: {}", response.text());
        assert_eq!(
            response.header("content-type"),
            Some("application/json"),
            "{unknown}"
        );
    }
    Ok(())
}

#[test]
fn without_a_public_index_html_a_deep_link_gets_the_component_page() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    std::fs::write(dir.path().join("app.js"), "console.log('no index here')")?;
    let host = public_host(dir.path())?;
    let spa_index = std::fs::read(workspace().join("tests/fixtures/spa/index.html"))?;
    let response = host.request("GET", "/deep/link", None)?;
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(is_html(&response), "{:?}", response.header("content-type"));
    assert!(
        response.text().contains("<title>Todos</title>"),
        "{}",
        response.text()
    );
    assert!(response.body != spa_index);
    assert_eq!(
        host.request("GET", "/app.js", None)?.text(),
        "console.log('no index here')"
    );
    Ok(())
}

#[test]
fn etag_and_if_none_match_give_304() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let public = public_folder(dir.path())?;
    let host = public_host(&public)?;
    let first = host.request("GET", "/app.js", None)?;
    let etag = first.header("etag").unwrap_or_default().to_string();
    assert!(etag.starts_with('"') && etag.len() > 2, "{etag}");
    let request = format!(
        "GET /app.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n"
    );
    let response = raw_request(host.addr(), request.as_bytes())?;
    assert_eq!(response.status, 304, "{}", response.head);
    assert!(response.body.is_empty(), "{}", response.text());
    // A changed file has a new ETag.
    std::fs::write(public.join("app.js"), "console.log('changed')")?;
    let changed = host.request("GET", "/app.js", None)?;
    assert_ne!(changed.header("etag").unwrap_or_default(), etag);
    Ok(())
}

#[test]
fn nothing_outside_the_folder_can_be_reached() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let public = public_folder(dir.path())?;
    let host = public_host(&public)?;
    for (path, status) in [
        ("/../secret.txt", 400),
        ("/sub/../../secret.txt", 400),
        ("/%2e%2e/secret.txt", 400),
        ("/%2E%2E%2Fsecret.txt", 400),
        ("/..%5csecret.txt", 400),
        ("/%2Fetc%2Fpasswd", 400),
        ("/leak.txt", 403),
        ("/up/secret.txt", 403),
    ] {
        let response = raw_call(host.addr(), "GET", path, None)?;
        assert_eq!(
            response.status,
            status,
            "{path}: {}",
            String::from_utf8_lossy(&response.body)
        );
        assert!(
            !String::from_utf8_lossy(&response.body).contains("outside the folder"),
            "{path} leaked"
        );
        assert!(response.json()["error"].is_string(), "{path}");
    }
    Ok(())
}

#[test]
fn the_public_folder_is_read_only_for_the_guest() -> anyhow::Result<()> {
    // `--public` mounts the folder into the files component, which only reads. A guest that
    // tries to write (the faults fixture) gets the same mount from a manifest's `files`.
    let dir = temp_dir()?;
    let public = public_folder(dir.path())?;
    let faults = fixture("faults")?.display().to_string();
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        format!(
            "spin_manifest_version = 2\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"faults\"\n\
             [component.faults]\nsource = \"{faults}\"\n\
             files = [{{ source = \"{}\", destination = \"/public\" }}]\n",
            public.display()
        ),
    )?;
    let host = Host::start(&["up", "--manifest", &manifest.display().to_string()])?;
    let read = host.request("GET", "/read-file?path=/public/data.json", None)?;
    assert_eq!(
        (read.status, read.text()),
        (200, "{\"ok\":true}".to_string()),
        "reading works"
    );
    let write = host.request("GET", "/write-file?path=/public/new.txt", None)?;
    assert_eq!(write.status, 403, "the guest wrote: {}", write.text());
    let overwrite = host.request("GET", "/write-file?path=/public/data.json", None)?;
    assert_eq!(overwrite.status, 403);
    assert!(!public.join("new.txt").exists());
    assert_eq!(
        std::fs::read_to_string(public.join("data.json"))?,
        "{\"ok\":true}"
    );
    Ok(())
}

#[test]
fn the_api_routes_stay_the_todo_components_whatever_the_folder_holds() -> anyhow::Result<()> {
    // The files component answers every path but the API's: files named like API routes are
    // never served, and preflight, HEAD and 405 work on the files component's paths too.
    let dir = temp_dir()?;
    let public = public_folder(dir.path())?;
    std::fs::write(public.join("openapi.json"), "{\"not\":\"the contract\"}")?;
    std::fs::create_dir_all(public.join("todos"))?;
    std::fs::write(public.join("todos/index.html"), "<title>shadow</title>")?;
    std::fs::create_dir_all(public.join("api"))?;
    std::fs::write(public.join("api/rule"), "shadow")?;
    let host = public_host(&public)?;
    let contract = host.request("GET", "/openapi.json", None)?;
    assert_eq!(contract.status, 200);
    assert!(
        contract.json()["openapi"].is_string(),
        "{}",
        contract.text()
    );
    let todos = host.request("GET", "/todos", None)?;
    assert_eq!((todos.status, todos.json()), (200, json!([])));
    assert_eq!(host.call("GET", "/api/rule", None)?.1["success"], true);
    let preflight = host.request("OPTIONS", "/app.js", None)?;
    assert_eq!(preflight.status, 204);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("*"),
        "CORS on the files component's answers too"
    );
    let head = host.request("HEAD", "/app.js", None)?;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let post = host.request("POST", "/app.js", Some(("text/plain", "x")))?;
    assert_eq!(post.status, 405, "{}", post.text());
    assert_eq!(post.header("allow"), Some("GET, HEAD, OPTIONS"));
    Ok(())
}

#[test]
fn a_missing_public_folder_fails_at_start_and_names_it() -> anyhow::Result<()> {
    let err = Host::start(&["--store", "memory://", "--public", "/no/such/folder"]).err();
    let message = format!("{err:?}");
    assert!(err.is_some(), "started without its public folder");
    assert!(message.contains("did not start"), "{message}");
    Ok(())
}
