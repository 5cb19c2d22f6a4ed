//! The web page in a real headless Chromium: what a person does, checked in the DOM, persisted
//! across a reload; and single-page apps from `--public` (both APIs, deep links and reloads).
//! Screenshots go to `target/browser/` so a failure can be looked at.

mod support;

use std::time::Instant;

use serde_json::json;
use support::browser::{Browser, CONTROL, ENTER, RELEASE_MODIFIERS};
use support::{Host, seed_todos, seeded_completed, sqlite_url, temp_dir, workspace};

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
fn a_long_list_shows_its_first_page_fast_and_loads_the_rest_as_it_scrolls() -> anyhow::Result<()> {
    const TODOS: u64 = 2_000;
    let dir = temp_dir()?;
    let url = sqlite_url(dir.path());
    seed_todos(&url, TODOS)?;
    let active = (1..=TODOS).filter(|id| !seeded_completed(*id)).count();
    let host = Host::start(&["--store", &url])?;
    let browser = Browser::start()?;
    let count = "return document.getElementById('count').textContent";
    let rows = "return document.querySelectorAll('#list li').length";
    let result = (|| -> anyhow::Result<()> {
        // A first visit starts the browser's own machinery; the second is what a user sees.
        browser.goto(&format!("{}/", host.base))?;
        browser.wait_for(rows, &json!(100))?;
        let started = Instant::now();
        browser.refresh()?;
        browser.wait_for(rows, &json!(100))?;
        let first_screen = started.elapsed();
        // The browser's own clock: navigation start to the first page's data received.
        let data_at = browser.eval(
            "return performance.getEntriesByType('resource').find(e => e.name.includes('/todos?limit=')).responseEnd",
        )?;
        println!(
            "first screen of a 2,000-todo list: {} ms to 100 rows (polled every 50 ms), first page's data in after {:.0} ms",
            first_screen.as_millis(),
            data_at.as_f64().unwrap_or(f64::NAN)
        );
        // The count is the store's, not the page's.
        browser.wait_for(count, &json!(format!("{active} items left")))?;
        browser.wait_for(
            "return document.getElementById('shown').textContent",
            &json!("100 of 2000 loaded"),
        )?;

        // Scrolling to the end loads the next page; so does the button.
        browser.eval("window.scrollTo(0, document.body.scrollHeight); return null")?;
        let at_least =
            |n: usize| format!("return document.querySelectorAll('#list li').length >= {n}");
        browser.wait_for(&at_least(200), &json!(true))?;
        // The button exists and is clicked by script: a WebDriver click at its position can
        // land on a row that the scroll observer's page has just moved under it.
        browser.find("#more")?;
        browser.eval("document.getElementById('more').click(); return null")?;
        browser.wait_for(&at_least(300), &json!(true))?;
        let ids = "return [...document.querySelectorAll('#list li')].slice(0, 300).map(e => Number(e.dataset.id))";
        browser.wait_for(ids, &json!((1..=300).collect::<Vec<u64>>()))?;

        // Completing one on a later page counts at once.
        // A script's click: the list may re-render under WebDriver's element reference as the
        // observer loads another page.
        browser.eval(
            "document.querySelector('#list li[data-id=\"250\"] .toggle').click(); return null",
        )?;
        browser.wait_for(count, &json!(format!("{} items left", active - 1)))?;
        Ok(())
    })();
    browser.screenshot(&workspace().join("target/browser/todo-page-long.png"))?;
    result?;
    let (_, todo) = host.call("GET", "/todos/250", None)?;
    assert_eq!(todo["completed"], true);
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
