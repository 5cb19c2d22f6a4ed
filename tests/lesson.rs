//! The lesson's own frontend against this backend (issue #24, item 8): the Ant Design Pro app
//! built into the seed's `public/` (`pusongyang/todolist-backend`, branch `lesson04-homework`),
//! served with `--public` in `required` mode, signs in through its own form at `/user/login` and
//! then lists that user's todos on its `/list` page, in a real headless Chromium.
//!
//! The seed's files are not part of this repository. The test runs when `TODO_LESSON_PUBLIC`
//! names a folder holding that built `public/` (its `index.html` and bundles), and passes with a
//! note otherwise:
//!
//! ```sh
//! git clone --branch lesson04-homework https://github.com/pusongyang/todolist-backend /tmp/seed
//! TODO_LESSON_PUBLIC=/tmp/seed/public cargo test --release --test lesson
//! ```
//!
//! What the app does, and so what this test relies on: its sign-in form has the inputs
//! `#userName` and `#password` and a submit button; it posts `POST /api/login/account` with
//! `{"userName", "password", "type": "account"}`, keeps `currentAuthority` from the answer, and
//! on `"status": "ok"` goes to the `redirect` query parameter (or `/`); its layout treats the
//! visitor as signed in when `GET /api/currentUser` answers a `userid`; its `/list` page is an
//! Ant Design table of `GET /api/rule` (a rule's `name` is a todo's title). Every request is
//! sent with `credentials: "include"`, so the session cookie is all it needs.

mod support;

use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;
use support::browser::{Browser, CONTROL, ENTER, RELEASE_MODIFIERS, SignedIn};
use support::{Host, workspace};

/// The folder holding the seed's built `public/`, from the environment.
const PUBLIC_VAR: &str = "TODO_LESSON_PUBLIC";

/// The text of every cell of the list page's table body.
const CELLS: &str =
    "return [...document.querySelectorAll('.ant-table-tbody td')].map(e => e.textContent.trim())";

/// Whether the table lists both of dana's todos.
const SHOWS_DANAS: &str = "const cells = [...document.querySelectorAll('.ant-table-tbody td')].map(e => e.textContent.trim()); return ['read lesson four', 'ship the backend'].every(t => cells.includes(t))";

#[test]
fn the_lessons_frontend_signs_in_and_lists_that_users_todos() -> anyhow::Result<()> {
    let Some(public) = std::env::var_os(PUBLIC_VAR).map(PathBuf::from) else {
        eprintln!(
            "skipped: set {PUBLIC_VAR} to the seed's built public/ folder (pusongyang/todolist-backend, branch lesson04-homework) to run this test"
        );
        return Ok(());
    };
    let index = public.join("index.html");
    anyhow::ensure!(
        index.is_file(),
        "{PUBLIC_VAR}={} holds no index.html: it should name the seed's built public/ folder",
        public.display()
    );
    let public = public
        .canonicalize()
        .with_context(|| format!("{PUBLIC_VAR}={}", public.display()))?;

    let host = Host::start(&[
        "--store",
        "memory://",
        "--public",
        &public.display().to_string(),
        "--config",
        "accounts=required",
    ])?;
    // Two people; the page must show the first one's todos and none of the other's.
    let dana = SignedIn::register(&host, "dana", "dana's password")?;
    dana.add_todos(&["read lesson four", "ship the backend"])?;
    let eve = SignedIn::register(&host, "eve", "eve's password")?;
    eve.add_todos(&["eve's secret"])?;
    // Anonymous callers get nothing in `required` mode: what the app sees before it signs in.
    let (status, _) = host.call("GET", "/api/rule?current=1&pageSize=20", None)?;
    assert_eq!(status, 401);
    let (status, _) = host.call("GET", "/api/currentUser", None)?;
    assert_eq!(status, 401);

    let browser = Browser::start()?;
    let result = (|| -> anyhow::Result<()> {
        // The app's own sign-in route, sent on to its list page afterwards, as its layout does
        // when it bounces a visitor who is not signed in.
        let list = format!("{}/list", host.base);
        let redirect = list.replace(':', "%3A").replace('/', "%2F");
        browser.goto(&format!("{}/user/login?redirect={redirect}", host.base))?;
        let name = browser.wait_find("#userName")?;
        let password = browser.find("#password")?;

        // A wrong password first: the app shows its inline error and stays on the form.
        browser.type_into(&name, "dana")?;
        browser.type_into(&password, "not dana's password")?;
        browser.click(&browser.find("button[type=submit]")?)?;
        browser.wait_for(
            "return document.querySelector('.ant-alert-error') !== null",
            &json!(true),
        )?;
        assert!(browser.current_url()?.contains("/user/login"));

        // The right one, submitted with Enter as a person would: signed in, on the list page.
        // Selected and typed over: WebDriver's "clear" sets the value behind React's back, and
        // the form would keep the old one.
        browser.type_into(
            &password,
            &format!("{CONTROL}a{RELEASE_MODIFIERS}dana's password{ENTER}"),
        )?;
        browser.wait_for("return location.pathname", &json!("/list"))?;
        browser.wait_for(
            "return localStorage.getItem('antd-pro-authority')",
            &json!(r#"["user"]"#),
        )?;
        browser.wait_for(SHOWS_DANAS, &json!(true))?;
        let cells = browser.eval(CELLS)?;
        let cells: Vec<&str> = cells
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str())
            .collect();
        assert!(
            !cells.contains(&"eve's secret"),
            "another user's todo on dana's list: {cells:?}"
        );

        // A reload of the list page keeps her signed in: the app asks `/api/currentUser` again.
        browser.refresh()?;
        browser.wait_for("return location.pathname", &json!("/list"))?;
        browser.wait_for(SHOWS_DANAS, &json!(true))?;
        Ok(())
    })();
    browser.screenshot(&workspace().join("target/browser/lesson-list.png"))?;
    result?;
    Ok(())
}
