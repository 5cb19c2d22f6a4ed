//! A real headless Chromium, driven over the W3C WebDriver protocol through `chromedriver`
//! (Debian's `chromium` and `chromium-driver`; `cargo xtask setup` installs them). The protocol
//! is plain JSON over HTTP, so this small client needs nothing beyond the HTTP client the tests
//! already use.
//!
//! Why not `fantoccini` or `thirtyfour`: both are async and bring their own HTTP stack (hyper or
//! reqwest on tokio) beside the blocking `ureq` every other test speaks, to send the dozen
//! commands these tests use. The whole protocol surface needed here fits in this file.
//!
//! [`SignedIn`] is the HTTP side of the account tests: a person registered and signed in over the
//! API, whose todos a page then has to show.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::Host;
use super::tools::install_hint;

/// The key WebDriver uses for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Special keys of WebDriver's "send keys".
pub const ENTER: &str = "\u{E007}";
pub const ESCAPE: &str = "\u{E00C}";
pub const CONTROL: &str = "\u{E009}";
pub const RELEASE_MODIFIERS: &str = "\u{E000}";

/// A browser session, ended (and its driver stopped) when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

/// An element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts `chromedriver` on a free port and opens a headless Chromium session.
    pub fn start() -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start chromedriver: {}",
                    install_hint(
                        "the browser tests need Debian's chromium and chromium-driver",
                        "apt-get install chromium chromium-driver"
                    )
                )
            })?;
        let profile = tempfile::tempdir()?;
        let mut browser = Self {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !browser
            .get("/status")
            .is_ok_and(|s| s["value"]["ready"] == true)
        {
            if Instant::now() > deadline {
                bail!("chromedriver did not become ready within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let binary = if Path::new("/usr/bin/chromium").exists() {
            "/usr/bin/chromium"
        } else {
            "chromium"
        };
        let args = [
            "--headless".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--disable-quic".to_string(),
            "--no-first-run".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--window-size=1200,900".to_string(),
            format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let created = browser.post(
            "/session",
            json!({ "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": binary, "args": args },
            }}}),
        )?;
        browser.session = created["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("no session in {created}"))?
            .to_string();
        Ok(browser)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn session_path(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = match ureq::get(&self.url(path)).call() {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(err) => return Err(err.into()),
        };
        checked(response.into_json()?)
    }

    fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let response = match ureq::post(&self.url(path)).send_json(body) {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(err) => return Err(err.into()),
        };
        checked(response.into_json()?)
    }

    /// Opens `url`.
    pub fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.post(&self.session_path("/url"), json!({ "url": url }))?;
        Ok(())
    }

    /// Reloads the page.
    pub fn refresh(&self) -> anyhow::Result<()> {
        self.post(&self.session_path("/refresh"), json!({}))?;
        Ok(())
    }

    /// The current URL.
    pub fn current_url(&self) -> anyhow::Result<String> {
        Ok(self.get(&self.session_path("/url"))?["value"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// The first element matching CSS `selector`.
    pub fn find(&self, selector: &str) -> anyhow::Result<Element> {
        let found = self
            .post(
                &self.session_path("/element"),
                json!({ "using": "css selector", "value": selector }),
            )
            .with_context(|| format!("no element matches {selector:?}"))?;
        element(&found["value"])
    }

    /// Clicks `element`.
    pub fn click(&self, element: &Element) -> anyhow::Result<()> {
        self.post(
            &self.session_path(&format!("/element/{}/click", element.0)),
            json!({}),
        )?;
        Ok(())
    }

    /// Double-clicks `element` with the mouse, as a person would.
    pub fn double_click(&self, element: &Element) -> anyhow::Result<()> {
        let origin = json!({ ELEMENT: element.0 });
        self.post(
            &self.session_path("/actions"),
            json!({ "actions": [{
                "type": "pointer", "id": "mouse", "parameters": { "pointerType": "mouse" },
                "actions": [
                    { "type": "pointerMove", "origin": origin, "x": 0, "y": 0 },
                    { "type": "pointerDown", "button": 0 }, { "type": "pointerUp", "button": 0 },
                    { "type": "pointerDown", "button": 0 }, { "type": "pointerUp", "button": 0 },
                ],
            }]}),
        )?;
        Ok(())
    }

    /// Empties the text field `element`. Only for plain fields: a React app keeps its own copy
    /// of the value and does not see this; type over a selection there (`CONTROL` `a`).
    pub fn clear(&self, element: &Element) -> anyhow::Result<()> {
        self.post(
            &self.session_path(&format!("/element/{}/clear", element.0)),
            json!({}),
        )?;
        Ok(())
    }

    /// Waits up to 10 s for an element matching CSS `selector`, and returns it: for pages that
    /// render after their script has run (a single-page app's route).
    pub fn wait_find(&self, selector: &str) -> anyhow::Result<Element> {
        let script = format!(
            "return document.querySelector({}) !== null",
            Value::from(selector)
        );
        self.wait_for(&script, &json!(true))?;
        self.find(selector)
    }

    /// Types `text` (with WebDriver's special keys, e.g. [`ENTER`]) into `element`.
    pub fn type_into(&self, element: &Element, text: &str) -> anyhow::Result<()> {
        self.post(
            &self.session_path(&format!("/element/{}/value", element.0)),
            json!({ "text": text }),
        )?;
        Ok(())
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub fn eval(&self, script: &str) -> anyhow::Result<Value> {
        Ok(self.post(
            &self.session_path("/execute/sync"),
            json!({ "script": script, "args": [] }),
        )?["value"]
            .take())
    }

    /// Waits up to 10 s until `script` returns `expected`; fails with the last value seen.
    pub fn wait_for(&self, script: &str, expected: &Value) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let value = self.eval(script)?;
            if &value == expected {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("waited 10 s for {script:?} to return {expected}; it returns {value}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Saves a PNG screenshot of the page to `path`.
    pub fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let shot = self.get(&self.session_path("/screenshot"))?;
        let png = BASE64
            .decode(shot["value"].as_str().context("no screenshot data")?)
            .context("the screenshot is not base64")?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = ureq::delete(&self.url(&format!("/session/{}", self.session))).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A person signed in over HTTP, beside the browser: sets up what a page should then show (todos
/// in their own list), through the session cookie the API gave them, as a browser would send it.
pub struct SignedIn {
    base: String,
    /// `todo_session=TOKEN`, as the `Cookie` header carries it.
    cookie: String,
}

impl SignedIn {
    /// Creates the account `name` on `host` (`POST /api/register`), which signs it in.
    pub fn register(host: &Host, name: &str, password: &str) -> anyhow::Result<Self> {
        let url = format!("{}/api/register", host.base);
        let response = ureq::post(&url)
            .send_json(json!({ "userName": name, "password": password }))
            .with_context(|| format!("POST {url} for {name:?}"))?;
        anyhow::ensure!(
            response.status() == 201,
            "POST {url} for {name:?}: {}",
            response.status()
        );
        let cookie = response
            .all("set-cookie")
            .into_iter()
            .filter_map(|set| set.split(';').next())
            .find(|pair| pair.trim_start().starts_with("todo_session="))
            .with_context(|| format!("no todo_session cookie from POST {url}"))?
            .trim()
            .to_string();
        Ok(Self {
            base: host.base.clone(),
            cookie,
        })
    }

    /// Sends `method path` with the session cookie and an optional JSON `body`; returns the
    /// status and the answer as JSON (`Null` when empty).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}{path}", self.base);
        let request = ureq::request(method, &url).set("cookie", &self.cookie);
        let result = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        let response = match result {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(err) => return Err(err).with_context(|| format!("{method} {url}")),
        };
        let status = response.status();
        let text = response.into_string()?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Adds todos with `titles` to this person's list.
    pub fn add_todos(&self, titles: &[&str]) -> anyhow::Result<()> {
        for title in titles {
            let (status, todo) = self.call("POST", "/todos", Some(json!({ "title": title })))?;
            anyhow::ensure!(status == 201, "POST /todos {title:?}: {status} {todo}");
        }
        Ok(())
    }
}

fn checked(answer: Value) -> anyhow::Result<Value> {
    if let Some(error) = answer["value"]["error"].as_str() {
        bail!("WebDriver: {error}: {}", answer["value"]["message"]);
    }
    Ok(answer)
}

fn element(value: &Value) -> anyhow::Result<Element> {
    Ok(Element(
        value[ELEMENT]
            .as_str()
            .with_context(|| format!("not an element: {value}"))?
            .to_string(),
    ))
}
