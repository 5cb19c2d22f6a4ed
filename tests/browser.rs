//! The web page in a real headless Chromium: what a person does, checked in the DOM, persisted
//! across a reload; and single-page apps from `--public` (both APIs, deep links and reloads).
//! Screenshots go to `target/browser/` so a failure can be looked at.

mod support;

use serde_json::json;
use support::browser::{Browser, CONTROL, ENTER, RELEASE_MODIFIERS};
use support::{Host, sqlite_url, temp_dir, workspace};

/// The titles shown in the list, in order.
const TITLES: &str =
    "return [...document.querySelectorAll('#list li .title')].map(e => e.textContent)";

#[test]
fn the_page_adds_completes_edits_filters_clears_and_persists() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let host = Host::start(&["--store", &sqlite_url(dir.path())])?;
    let browser = Browser::start()?;
    let shot = workspace().join("target/browser/todo-page.png");
    let result = (|| -> anyhow::Result<()> {
        browser.goto(&format!("{}/", host.base))?;
        browser.wait_for("return document.title", &json!("Todos"))?;

        let input = browser.find("#new-todo")?;
        for title in ["buy milk", "walk the dog", "write tests"] {
            browser.type_into(&input, &format!("{title}{ENTER}"))?;
            browser.wait_for(&format!("return document.querySelectorAll('#list li').length >= 1 && [...document.querySelectorAll('#list li .title')].some(e => e.textContent === '{title}')"), &json!(true))?;
        }
        browser.wait_for(TITLES, &json!(["buy milk", "walk the dog", "write tests"]))?;
        browser.wait_for(
            "return document.getElementById('count').textContent",
            &json!("3 items left"),
        )?;

        // Complete the first.
        browser.click(&browser.find("#list li:nth-child(1) .toggle")?)?;
        browser.wait_for(
            "return document.querySelector('#list li:nth-child(1)').className",
            &json!("done"),
        )?;
        browser.wait_for(
            "return document.getElementById('count').textContent",
            &json!("2 items left"),
        )?;

        // Edit the second: double-click, replace the text, Enter.
        browser.double_click(&browser.find("#list li:nth-child(2) .title")?)?;
        let edit = browser.find("#list li:nth-child(2) .edit")?;
        browser.type_into(
            &edit,
            &format!("{CONTROL}a{RELEASE_MODIFIERS}walk the cat{ENTER}"),
        )?;
        browser.wait_for(TITLES, &json!(["buy milk", "walk the cat", "write tests"]))?;

        // Filters are links that keep the choice in the URL hash.
        browser.click(&browser.find("a[data-filter=active]")?)?;
        browser.wait_for(TITLES, &json!(["walk the cat", "write tests"]))?;
        assert!(browser.current_url()?.ends_with("#/active"));
        browser.click(&browser.find("a[data-filter=completed]")?)?;
        browser.wait_for(TITLES, &json!(["buy milk"]))?;
        browser.click(&browser.find("a[data-filter=all]")?)?;
        browser.wait_for(TITLES, &json!(["buy milk", "walk the cat", "write tests"]))?;

        browser.click(&browser.find("#clear-completed")?)?;
        browser.wait_for(TITLES, &json!(["walk the cat", "write tests"]))?;

        // A reload shows what the store kept.
        browser.refresh()?;
        browser.wait_for(TITLES, &json!(["walk the cat", "write tests"]))?;
        browser.wait_for(
            "return document.getElementById('count').textContent",
            &json!("2 items left"),
        )?;
        browser.wait_for(
            "return document.getElementById('error').textContent",
            &json!(""),
        )?;
        Ok(())
    })();
    browser.screenshot(&shot)?;
    result?;

    // The page talked to the real API: the store agrees.
    let (_, todos) = host.call("GET", "/todos", None)?;
    let titles: Vec<&str> = todos
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["title"].as_str())
        .collect();
    assert_eq!(titles, ["walk the cat", "write tests"]);
    Ok(())
}

#[test]
fn the_page_shows_api_errors_to_the_user() -> anyhow::Result<()> {
    // Every todo is too large to store: values over 10 bytes are refused by the host (413).
    let host = Host::start(&["--store", "memory://", "--kv-max-value", "10"])?;
    let browser = Browser::start()?;
    browser.goto(&format!("{}/", host.base))?;
    browser.wait_for("return document.title", &json!("Todos"))?;
    browser.type_into(&browser.find("#new-todo")?, &format!("doomed{ENTER}"))?;
    browser.wait_for(
        "return document.getElementById('error').classList.contains('shown') && document.getElementById('error').textContent.includes('at most 10 bytes')",
        &json!(true),
    )?;
    browser.screenshot(&workspace().join("target/browser/todo-page-error.png"))?;
    Ok(())
}

#[test]
fn a_static_spa_from_public_calls_both_apis() -> anyhow::Result<()> {
    let public = workspace().join("tests/fixtures/public");
    let host = Host::start(&[
        "--store",
        "memory://",
        "--public",
        &public.display().to_string(),
    ])?;
    host.call("POST", "/api/rule", Some(r#"{"name":"a rule","desc":"d"}"#))?;
    host.call("POST", "/todos", Some(r#"{"title":"a todo"}"#))?;

    let browser = Browser::start()?;
    browser.goto(&format!("{}/", host.base))?;
    browser.wait_for(
        "return document.getElementById('status').textContent",
        &json!("rules 2, todos 2"),
    )?;
    browser.wait_for(
        "return [...document.querySelectorAll('li')].map(e => e.textContent)",
        &json!(["1: a rule", "2: a todo", "1: a rule", "2: a todo"]),
    )?;
    browser.screenshot(&workspace().join("target/browser/public-spa.png"))?;
    Ok(())
}

#[test]
fn a_deep_link_into_a_public_spa_loads_its_route_and_survives_a_reload() -> anyhow::Result<()> {
    let spa = workspace().join("tests/fixtures/spa");
    let host = Host::start(&[
        "--store",
        "memory://",
        "--public",
        &spa.display().to_string(),
    ])?;
    let browser = Browser::start()?;
    // `?.` and `??`: on a page that is not the fixture's (the todo page) these read `null`, and
    // the wait fails saying so.
    let route = "return document.getElementById('route')?.textContent ?? null";
    let status = "return document.getElementById('status')?.textContent ?? null";
    let todos = "return [...document.querySelectorAll('#todos li')].map(e => e.textContent)";
    let result = (|| -> anyhow::Result<()> {
        // Opened directly, as a bookmark or a shared link would: no page loaded before it.
        browser.goto(&format!("{}/deep/link", host.base))?;
        browser.wait_for("return document.title", &json!("SPA fallback fixture"))?;
        browser.wait_for(route, &json!("/deep/link"))?;
        browser.wait_for(status, &json!("todos 1"))?;
        browser.wait_for(todos, &json!(["1: visited /deep/link"]))?;

        // A reload asks the host for the deep link again; the app's script runs again.
        browser.refresh()?;
        browser.wait_for(route, &json!("/deep/link"))?;
        browser.wait_for(status, &json!("todos 2"))?;
        browser.wait_for(
            todos,
            &json!(["1: visited /deep/link", "2: visited /deep/link"]),
        )?;
        assert!(browser.current_url()?.ends_with("/deep/link"));
        Ok(())
    })();
    browser.screenshot(&workspace().join("target/browser/spa-deep-link.png"))?;
    result?;

    // Both visits reached the real API.
    assert_eq!(support::listed_ids(&host)?, [1, 2]);
    Ok(())
}
