//! The web page in a real headless Chromium: what a person does, checked in the DOM, persisted
//! across a reload; accounts on the page (sign-up, sign-in, sign-out, one list each, the sign-in
//! form first in `required` mode, no account controls when accounts are off); and single-page
//! apps from `--public` (both APIs, deep links and reloads). Screenshots go to `target/browser/`
//! so a failure can be looked at.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::browser::{Browser, CONTROL, ENTER, RELEASE_MODIFIERS, SignedIn};
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
    let titles = support::titles(&todos);
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

/// Who the page says is signed in.
const WHO: &str = "return document.getElementById('who').textContent";
/// Whether the sign-in form, the list and the sign-out button are shown.
const SHOWN: &str =
    "return ['account-form', 'todos', 'sign-out'].map(id => !document.getElementById(id).hidden)";
/// The page's inline message under the sign-in form.
const ACCOUNT_MESSAGE: &str = "return document.getElementById('account-message').textContent";
/// How many requests for the list the page has made since it was loaded.
const LIST_FETCHES: &str = "return performance.getEntriesByType('resource').filter(e => new URL(e.name).pathname.startsWith('/todos')).length";
/// What the page says to an anonymous visitor in `optional` mode.
const ANONYMOUS_IN_OPTIONAL: &str = "Not signed in: this is the shared public list.";

/// Fills the page's account form with `name` and `password` and presses `button` (`#sign-in` or
/// `#sign-up`).
fn submit_account_form(
    browser: &Browser,
    button: &str,
    name: &str,
    password: &str,
) -> anyhow::Result<()> {
    for (field, value) in [("#user-name", name), ("#password", password)] {
        let input = browser.find(field)?;
        browser.clear(&input)?;
        browser.type_into(&input, value)?;
    }
    browser.click(&browser.find(button)?)
}

/// Adds `titles` through the page's input, waiting for each to be listed.
fn add_on_the_page(browser: &Browser, titles: &[&str]) -> anyhow::Result<()> {
    let input = browser.find("#new-todo")?;
    for title in titles {
        browser.type_into(&input, &format!("{title}{ENTER}"))?;
        browser.wait_for(
            &format!("return [...document.querySelectorAll('#list li .title')].some(e => e.textContent === {})", json!(title)),
            &json!(true),
        )?;
    }
    Ok(())
}

#[test]
fn people_sign_up_on_the_page_and_each_sees_only_their_own_todos() -> anyhow::Result<()> {
    let host = Host::start(&["--store", "memory://", "--config", "accounts=optional"])?;
    let (status, _) = host.call("POST", "/todos", Some(r#"{"title":"on the public list"}"#))?;
    assert_eq!(status, 201);
    let browser = Browser::start()?;
    let result = (|| -> anyhow::Result<()> {
        // Anonymous in `optional` mode: the public list, and the form to sign in or up.
        browser.goto(&format!("{}/", host.base))?;
        browser.wait_for(WHO, &json!(ANONYMOUS_IN_OPTIONAL))?;
        browser.wait_for(SHOWN, &json!([true, true, false]))?;
        browser.wait_for(TITLES, &json!(["on the public list"]))?;

        // Alice signs up: signed in at once, with a list of her own, empty.
        submit_account_form(&browser, "#sign-up", "alice", "alice's password")?;
        browser.wait_for(WHO, &json!("Signed in as alice"))?;
        browser.wait_for(SHOWN, &json!([false, true, true]))?;
        browser.wait_for(TITLES, &json!([]))?;
        add_on_the_page(&browser, &["alice's first", "alice's second"])?;
        browser.wait_for(TITLES, &json!(["alice's first", "alice's second"]))?;
        // A reload keeps her signed in: the cookie is the browser's.
        browser.refresh()?;
        browser.wait_for(WHO, &json!("Signed in as alice"))?;
        browser.wait_for(TITLES, &json!(["alice's first", "alice's second"]))?;

        // Signed out: back to the public list, hers gone from the page.
        browser.click(&browser.find("#sign-out")?)?;
        browser.wait_for(WHO, &json!(ANONYMOUS_IN_OPTIONAL))?;
        browser.wait_for(TITLES, &json!(["on the public list"]))?;

        // Bob signs up and sees none of hers; the name she took is refused to him.
        submit_account_form(&browser, "#sign-up", "alice", "bob's password")?;
        browser.wait_for(&format!("{ACCOUNT_MESSAGE} !== ''"), &json!(true))?;
        browser.wait_for(WHO, &json!(ANONYMOUS_IN_OPTIONAL))?;
        submit_account_form(&browser, "#sign-up", "bob", "bob's password")?;
        browser.wait_for(WHO, &json!("Signed in as bob"))?;
        browser.wait_for(TITLES, &json!([]))?;
        browser.wait_for(ACCOUNT_MESSAGE, &json!(""))?;
        add_on_the_page(&browser, &["bob's only"])?;
        browser.wait_for(TITLES, &json!(["bob's only"]))?;
        browser.click(&browser.find("#sign-out")?)?;
        browser.wait_for(WHO, &json!(ANONYMOUS_IN_OPTIONAL))?;

        // A wrong password is an inline message; nobody is signed in.
        submit_account_form(&browser, "#sign-in", "alice", "not her password")?;
        browser.wait_for(ACCOUNT_MESSAGE, &json!("Wrong user name or password."))?;
        browser.wait_for(WHO, &json!(ANONYMOUS_IN_OPTIONAL))?;
        browser.wait_for(TITLES, &json!(["on the public list"]))?;

        // Alice signs back in: her todos are there, and only hers.
        submit_account_form(&browser, "#sign-in", "alice", "alice's password")?;
        browser.wait_for(WHO, &json!("Signed in as alice"))?;
        browser.wait_for(TITLES, &json!(["alice's first", "alice's second"]))?;
        browser.wait_for(ACCOUNT_MESSAGE, &json!(""))?;
        browser.wait_for(
            "return document.getElementById('count').textContent",
            &json!("2 items left"),
        )?;
        Ok(())
    })();
    browser.screenshot(&workspace().join("target/browser/todo-page-accounts.png"))?;
    result?;

    // The store agrees: the public list kept its one todo, nobody's went there.
    let (_, todos) = host.call("GET", "/todos", None)?;
    let titles = support::titles(&todos);
    assert_eq!(titles, ["on the public list"]);
    Ok(())
}

#[test]
fn in_required_mode_the_page_asks_to_sign_in_before_it_fetches_the_list() -> anyhow::Result<()> {
    let host = Host::start(&["--store", "memory://", "--config", "accounts=required"])?;
    let carol = SignedIn::register(&host, "carol", "carol's password")?;
    carol.add_todos(&["carol's todo"])?;
    let browser = Browser::start()?;
    let result = (|| -> anyhow::Result<()> {
        browser.goto(&format!("{}/", host.base))?;
        browser.wait_for(WHO, &json!("Sign in to see your todos."))?;
        browser.wait_for(SHOWN, &json!([true, false, false]))?;
        browser.wait_for(
            "return document.activeElement && document.activeElement.id",
            &json!("user-name"),
        )?;
        // Give a list fetch every chance to show up: the page made none.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(browser.eval(LIST_FETCHES)?, json!(0));
        assert_eq!(
            browser.eval("return document.querySelectorAll('#list li').length")?,
            json!(0)
        );

        submit_account_form(&browser, "#sign-in", "carol", "carol's password")?;
        browser.wait_for(WHO, &json!("Signed in as carol"))?;
        browser.wait_for(SHOWN, &json!([false, true, true]))?;
        browser.wait_for(TITLES, &json!(["carol's todo"]))?;
        add_on_the_page(&browser, &["added on the page"])?;

        // Signed out: the form again, and nothing of hers left on the page.
        browser.click(&browser.find("#sign-out")?)?;
        browser.wait_for(WHO, &json!("Sign in to see your todos."))?;
        browser.wait_for(SHOWN, &json!([true, false, false]))?;
        browser.wait_for(
            "return document.querySelectorAll('#list li').length",
            &json!(0),
        )?;
        // And a reload after sign-out fetches no list either: the cookie is gone.
        browser.refresh()?;
        browser.wait_for(SHOWN, &json!([true, false, false]))?;
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(browser.eval(LIST_FETCHES)?, json!(0));
        Ok(())
    })();
    browser.screenshot(&workspace().join("target/browser/todo-page-required.png"))?;
    result?;

    // What she added on the page is in her list, over the API too.
    let (status, todos) = carol.call("GET", "/todos", None)?;
    assert_eq!(status, 200, "{todos}");
    let titles = support::titles(&todos);
    assert_eq!(titles, ["carol's todo", "added on the page"]);
    Ok(())
}

#[test]
fn when_the_server_refuses_the_session_the_page_asks_to_sign_in_again() -> anyhow::Result<()> {
    let args = ["--store", "memory://", "--config", "accounts=optional"];
    let first = Host::start(&args)?;
    let addr = first.addr().to_string();
    let browser = Browser::start()?;
    let result = (|| -> anyhow::Result<()> {
        browser.goto(&format!("{}/", first.base))?;
        browser.wait_for(WHO, &json!(ANONYMOUS_IN_OPTIONAL))?;
        submit_account_form(&browser, "#sign-up", "dora", "dora's password")?;
        browser.wait_for(WHO, &json!("Signed in as dora"))?;
        add_on_the_page(&browser, &["before the restart"])?;

        // A new server on the same address with an empty store: it knows no session, and the
        // browser still sends the cookie.
        drop(first);
        let second = Host::start_on(&addr, &args)?;
        browser.type_into(
            &browser.find("#new-todo")?,
            &format!("after the restart{ENTER}"),
        )?;
        // The change is refused (401): the page signs out and shows the form again, with the
        // public list, and not a word of hers.
        browser.wait_for(
            ACCOUNT_MESSAGE,
            &json!("Your session has ended: sign in again."),
        )?;
        browser.wait_for(WHO, &json!(ANONYMOUS_IN_OPTIONAL))?;
        browser.wait_for(SHOWN, &json!([true, true, false]))?;
        browser.wait_for(TITLES, &json!([]))?;
        browser.wait_for(
            "return document.getElementById('error').textContent",
            &json!(""),
        )?;
        // The refused todo went nowhere, and the cookie is gone: the page is anonymous now.
        assert_eq!(support::listed_ids(&second)?, Vec::<u64>::new());
        add_on_the_page(&browser, &["anonymous now"])?;
        assert_eq!(support::listed_ids(&second)?, [1]);
        Ok(())
    })();
    browser.screenshot(&workspace().join("target/browser/todo-page-session-ended.png"))?;
    result
}

#[test]
fn a_sign_up_refused_for_too_many_shows_the_servers_reason_on_the_page() -> anyhow::Result<()> {
    let host = Host::start(&[
        "--store",
        "memory://",
        "--config",
        "accounts=optional",
        "--config",
        "signups_per_minute=1",
    ])?;
    let browser = Browser::start()?;
    let result = (|| -> anyhow::Result<()> {
        browser.goto(&format!("{}/", host.base))?;
        browser.wait_for(WHO, &json!(ANONYMOUS_IN_OPTIONAL))?;
        // The minute's one sign-up is taken over HTTP just before the page asks, in the same
        // minute: the counter is per minute of the clock, so a minute about to end is let pass.
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            % 60;
        if second >= 50 {
            std::thread::sleep(Duration::from_secs(61 - second));
        }
        SignedIn::register(&host, "first", "first's password")?;
        submit_account_form(&browser, "#sign-up", "second", "second's password")?;
        browser.wait_for(
            "return performance.getEntriesByType('resource').filter(e => new URL(e.name).pathname === '/api/register').map(e => e.responseStatus)",
            &json!([429]),
        )?;
        // The server's own words are shown, and nobody is signed in.
        let (_, refused) = host.call(
            "POST",
            "/api/register",
            Some(r#"{"userName":"third","password":"third's password"}"#),
        )?;
        let reason = refused["error"].as_str().unwrap_or_default().to_string();
        assert!(!reason.is_empty(), "no reason in {refused}");
        browser.wait_for(ACCOUNT_MESSAGE, &json!(reason))?;
        browser.wait_for(WHO, &json!(ANONYMOUS_IN_OPTIONAL))?;
        Ok(())
    })();
    browser.screenshot(&workspace().join("target/browser/todo-page-429.png"))?;
    result
}

#[test]
fn without_accounts_the_page_shows_no_account_controls() -> anyhow::Result<()> {
    let host = Host::start(&["--store", "memory://"])?;
    let browser = Browser::start()?;
    browser.goto(&format!("{}/", host.base))?;
    browser.wait_for("return document.title", &json!("Todos"))?;
    // The page asked, heard that there are no accounts (a 404), and went on as it always has.
    browser.wait_for(
        "return performance.getEntriesByType('resource').some(e => new URL(e.name).pathname === '/api/session')",
        &json!(true),
    )?;
    add_on_the_page(&browser, &["no accounts here"])?;
    let visible = "return ['account', 'account-form', 'sign-out', 'user-name', 'password', 'who'].filter(id => document.getElementById(id).offsetParent !== null)";
    browser.wait_for(visible, &json!([]))?;
    assert_eq!(
        browser.eval("return document.getElementById('error').textContent")?,
        json!("")
    );
    browser.screenshot(&workspace().join("target/browser/todo-page-no-accounts.png"))?;
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
