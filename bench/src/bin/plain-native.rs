//! The lean native floor: the todo API written the way one would write it without WebAssembly or
//! a key-value store. Plain hyper 1 on tokio, the todos in one `Mutex<BTreeMap<u64, Todo>>`,
//! serde_json. `bench/run.sh` compares `todo-host` against it, so that the published "wasm tax"
//! is measured against a plain server, not against our own harness.
//!
//! `plain-native [--listen ADDR] [--store memory://]` (`--help` says more); prints the same
//! start-up line as `todo-host` and `native-baseline`.
//!
//! | route | answer (as the component answers it) |
//! |---|---|
//! | `GET /todos?limit=N&after=ID` | 200, the todos with id > `after` (first `limit`, at most 1,000) sorted by `order`, `id`; `X-Total-Count`, `X-Active-Count`, `Link` while more follow |
//! | `POST /todos` | 201 + `Location`, the new todo |
//! | `DELETE /todos` | 204, every todo deleted (ids are not reused) |
//! | `GET /todos/{id}` | 200 or 404 |
//! | `PATCH /todos/{id}` | 200 with the todo after the change: any of `title`, `completed`, `order` |
//! | `PUT /todos/{id}` | 200: `title` required, `completed` false when absent, `order` kept when absent |
//! | `DELETE /todos/{id}` | 204 or 404 |
//! | `OPTIONS` anything | 204, the CORS preflight |
//!
//! Same JSON field names and shapes (`guest/src/todos.rs`'s `TodoView`), statuses, `Location`,
//! CORS and count headers, the same validation (title required on create, trimmed, not blank,
//! at most 1,000 characters; `completed` a boolean; `order` an integer; JSON or no
//! `Content-Type`, else 415; bodies up to 1 MiB, else 413), errors as `{"error": message}`.
//! Not served: `HEAD`, the legacy `/api` routes, the page, percent-encoded ids.

// The allocator `todo-host` runs with, and the faster one for this server too (about 5% more
// req/s than glibc's malloc on `GET /todos/1`, bench/steps.md): the floor stays the fastest
// native server we can write.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Deserializer, Serialize};
use todo_bench::now;
use tokio::net::TcpListener;

/// The largest request body, as `todo-host`'s default (`todo_host::limits::DEFAULT_MAX_BODY`).
const MAX_BODY: usize = 1 << 20;
/// The longest title, in characters, as the component's `MAX_TITLE_CHARS`.
const MAX_TITLE_CHARS: usize = 1000;
/// The most todos one page holds, and the page size when the query names none.
const MAX_LIMIT: usize = 1000;

const JSON: HeaderValue = HeaderValue::from_static("application/json");
const ANY_ORIGIN: HeaderValue = HeaderValue::from_static("*");
const EXPOSED: HeaderValue = HeaderValue::from_static("Link, X-Total-Count, X-Active-Count");

/// Where it listens unless told otherwise: loopback, on the port after `native-baseline`'s 3002.
const DEFAULT_LISTEN: &str = "127.0.0.1:3003";

/// The todo API written plainly (hyper, a `Mutex<BTreeMap>`, serde_json) with the todos in
/// memory: the native floor `bench/run.sh` measures `todo-host` against.
#[derive(Debug, Parser)]
#[command(name = "plain-native")]
struct Cli {
    /// Address to listen on (`HOST:PORT`; port 0 picks a free one).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,

    /// Where the todos are kept: only `memory://`. Taken so that `bench/run.sh` can start every
    /// server with the same flags; any other store is refused rather than ignored.
    #[arg(long, value_name = "URL", value_enum, default_value = "memory://")]
    store: Store,
}

/// The stores `--store` accepts.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Store {
    /// One `Mutex<BTreeMap>` in this process, lost on exit.
    #[value(name = "memory://")]
    Memory,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let listener = TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let store = match cli.store {
        Store::Memory => "memory",
    };
    println!(
        "Serving HTTP on http://{}/ (store: {store}, plain native)",
        listener.local_addr()?
    );
    let todos = Arc::new(Todos::default());
    loop {
        let (stream, _) = listener.accept().await?;
        // Small answers on keep-alive connections: without TCP_NODELAY, Nagle's algorithm holds
        // a response back until the previous one is acknowledged.
        let _ = stream.set_nodelay(true);
        let todos = todos.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, todos.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A todo as it is kept.
#[derive(Debug)]
struct Todo {
    id: u64,
    title: String,
    completed: bool,
    order: i64,
    created_at: String,
    updated_at: String,
}

/// Every todo, by id, with what the list headers need kept up to date rather than counted.
#[derive(Debug, Default)]
struct Table {
    todos: BTreeMap<u64, Todo>,
    /// The highest id issued: ids are never reused, even after a delete.
    last_id: u64,
    /// How many of `todos` are completed, for `X-Active-Count`.
    completed: usize,
}

/// The store. A `std::sync::Mutex`, not tokio's: it is never held across an `.await`, and each
/// critical section is a map operation plus, for reads, the serialization of what was read
/// (serializing under the lock saves cloning the todos out).
#[derive(Debug, Default)]
struct Todos(Mutex<Table>);

impl Todos {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves a table that is still consistent (every change
        // is a single insert or remove plus a counter), so a poisoned lock is used as is.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A todo as the API shows it, with the same field names as the component's `TodoView`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct View<'a> {
    id: u64,
    title: &'a str,
    completed: bool,
    order: i64,
    url: ItemUrl<'a>,
    created_at: &'a str,
    updated_at: &'a str,
}

impl<'a> View<'a> {
    fn new(todo: &'a Todo, authority: &'a str) -> Self {
        Self {
            id: todo.id,
            title: &todo.title,
            completed: todo.completed,
            order: todo.order,
            url: ItemUrl {
                authority,
                id: todo.id,
            },
            created_at: &todo.created_at,
            updated_at: &todo.updated_at,
        }
    }
}

/// `http://AUTHORITY/todos/ID`, written straight into the JSON rather than built as a `String`
/// per todo first.
struct ItemUrl<'a> {
    authority: &'a str,
    id: u64,
}

impl fmt::Display for ItemUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}/todos/{}", self.authority, self.id)
    }
}

impl Serialize for ItemUrl<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The fields a `POST` or `PATCH` body may set. Unknown fields are ignored, as the component
/// ignores them; a field present with the wrong type (`null` included) is a 400.
#[derive(Deserialize)]
struct Fields {
    #[serde(default, deserialize_with = "present")]
    title: Option<String>,
    #[serde(default, deserialize_with = "present")]
    completed: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    order: Option<i64>,
}

/// A field that, when present, must hold a `T`: `null` is not "absent".
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// A failed request, answered as `{"error": message}` with its status (and `Allow` for 405).
struct Failure {
    status: StatusCode,
    message: String,
    allow: Option<&'static str>,
}

impl Failure {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            allow: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn no_todo(id: u64) -> Self {
        Self::new(StatusCode::NOT_FOUND, format!("no todo with id {id}"))
    }

    fn method_not_allowed(method: &Method, path: &str, allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("method {method} is not allowed on {path}; allowed: {allow}"),
            )
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = json(self.status, &serde_json::json!({ "error": self.message }));
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        response
    }
}

const COLLECTION_ALLOW: &str = "GET, HEAD, POST, DELETE, OPTIONS";
const ITEM_ALLOW: &str = "GET, HEAD, PATCH, PUT, DELETE, OPTIONS";

async fn answer(
    request: Request<hyper::body::Incoming>,
    todos: Arc<Todos>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = route(request, &todos)
        .await
        .unwrap_or_else(Failure::into_response);
    response
        .headers_mut()
        .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, ANY_ORIGIN);
    Ok(response)
}

async fn route(
    request: Request<hyper::body::Incoming>,
    todos: &Todos,
) -> Result<Response<Full<Bytes>>, Failure> {
    let (parts, body) = request.into_parts();
    if parts.method == Method::OPTIONS {
        return Ok(preflight());
    }
    let path = parts.uri.path();
    // One trailing slash is forgiven (`/todos/`), as the component forgives it.
    let trimmed = path
        .strip_suffix('/')
        .filter(|p| !p.is_empty())
        .unwrap_or(path);
    let authority = parts
        .headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("localhost");
    if trimmed == "/todos" {
        return match parts.method {
            Method::GET => list(todos, parts.uri.query(), authority),
            Method::POST => {
                let fields = read_fields(&parts.headers, body).await?;
                create(todos, fields, authority)
            }
            Method::DELETE => {
                let mut table = todos.lock();
                table.todos.clear();
                table.completed = 0;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            ref method => Err(Failure::method_not_allowed(method, path, COLLECTION_ALLOW)),
        };
    }
    let Some(id_text) = trimmed.strip_prefix("/todos/").filter(|t| !t.contains('/')) else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("no route for {path}"),
        ));
    };
    if !matches!(
        parts.method,
        Method::GET | Method::PATCH | Method::PUT | Method::DELETE
    ) {
        return Err(Failure::method_not_allowed(&parts.method, path, ITEM_ALLOW));
    }
    let id = parse_id(id_text).ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            format!("no todo with id '{id_text}': ids are positive integers"),
        )
    })?;
    match parts.method {
        Method::GET => {
            let table = todos.lock();
            let todo = table.todos.get(&id).ok_or_else(|| Failure::no_todo(id))?;
            Ok(json(StatusCode::OK, &View::new(todo, authority)))
        }
        Method::DELETE => {
            let mut table = todos.lock();
            let todo = table
                .todos
                .remove(&id)
                .ok_or_else(|| Failure::no_todo(id))?;
            if todo.completed {
                table.completed -= 1;
            }
            Ok(empty(StatusCode::NO_CONTENT))
        }
        ref method => {
            // PATCH or PUT. Validate the body before touching the store: a bad request changes
            // nothing.
            let replace = *method == Method::PUT;
            let fields = read_fields(&parts.headers, body).await?;
            let title = match (fields.title, replace) {
                (Some(title), _) => Some(valid_title(&title)?),
                (None, false) => None,
                (None, true) => {
                    return Err(Failure::bad_request(
                        "PUT replaces the todo: field 'title' is required",
                    ));
                }
            };
            let completed = if replace {
                Some(fields.completed.unwrap_or(false))
            } else {
                fields.completed
            };
            let stamp = now().to_rfc3339();
            let mut table = todos.lock();
            let table = &mut *table;
            let todo = table
                .todos
                .get_mut(&id)
                .ok_or_else(|| Failure::no_todo(id))?;
            if let Some(title) = title {
                todo.title = title;
            }
            if let Some(completed) = completed {
                match (todo.completed, completed) {
                    (false, true) => table.completed += 1,
                    (true, false) => table.completed -= 1,
                    _ => {}
                }
                todo.completed = completed;
            }
            if let Some(order) = fields.order {
                todo.order = order;
            }
            todo.updated_at = stamp;
            Ok(json(StatusCode::OK, &View::new(todo, authority)))
        }
    }
}

/// `GET /todos`: one page, as `guest/src/todos.rs` cuts it.
fn list(
    todos: &Todos,
    query: Option<&str>,
    authority: &str,
) -> Result<Response<Full<Bytes>>, Failure> {
    let (limit, after) = page_query(query.unwrap_or(""))?;
    let table = todos.lock();
    if after > table.last_id {
        return Err(Failure::bad_request(format!(
            "query parameter 'after' is {after}, past the highest id this store has issued ({}): \
             a cursor must come from a page of this store",
            table.last_id
        )));
    }
    let page_size = limit.unwrap_or(MAX_LIMIT);
    let mut page: Vec<&Todo> = table
        .todos
        .range(after + 1..)
        .map(|(_, todo)| todo)
        .take(page_size + 1)
        .collect();
    let more = page.len() > page_size;
    page.truncate(page_size);
    let last = page.last().map(|todo| todo.id);
    page.sort_unstable_by_key(|todo| (todo.order, todo.id));
    let views: Vec<View> = page.iter().map(|todo| View::new(todo, authority)).collect();
    let mut response = json(StatusCode::OK, &views);
    let total = table.todos.len();
    let active = total - table.completed;
    drop(table);
    let headers = response.headers_mut();
    headers.insert("x-total-count", HeaderValue::from(total));
    headers.insert("x-active-count", HeaderValue::from(active));
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED);
    if let (true, Some(last)) = (more, last) {
        let limit = limit.map(|n| format!("limit={n}&")).unwrap_or_default();
        let link = format!("<http://{authority}/todos?{limit}after={last}>; rel=\"next\"");
        if let Ok(value) = HeaderValue::try_from(link) {
            headers.insert(header::LINK, value);
        }
    }
    Ok(response)
}

/// `POST /todos`.
fn create(
    todos: &Todos,
    fields: Fields,
    authority: &str,
) -> Result<Response<Full<Bytes>>, Failure> {
    let title = fields
        .title
        .ok_or_else(|| Failure::bad_request("field 'title' is required"))?;
    let title = valid_title(&title)?;
    let completed = fields.completed.unwrap_or(false);
    let stamp = now().to_rfc3339();
    let mut table = todos.lock();
    table.last_id += 1;
    let id = table.last_id;
    let todo = Todo {
        id,
        title,
        completed,
        order: fields
            .order
            .unwrap_or(i64::try_from(id).unwrap_or(i64::MAX)),
        created_at: stamp.clone(),
        updated_at: stamp,
    };
    let mut response = json(StatusCode::CREATED, &View::new(&todo, authority));
    table.completed += usize::from(completed);
    table.todos.insert(id, todo);
    drop(table);
    if let Ok(location) = HeaderValue::try_from(format!("http://{authority}/todos/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The query of a page: `limit` (when given) and `after` (0 when not); other names are ignored,
/// a repeated one is a 400.
fn page_query(query: &str) -> Result<(Option<usize>, u64), Failure> {
    let (mut limit, mut after) = (None, None);
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            "limit" => {
                let n = digits(value)
                    .filter(|n| (1..=MAX_LIMIT as u64).contains(n))
                    .ok_or_else(|| {
                        Failure::bad_request(format!(
                            "query parameter 'limit' must be an integer from 1 to {MAX_LIMIT}, got '{value}'"
                        ))
                    })?;
                limit.replace(n as usize).map(|_| ())
            }
            "after" => {
                let n = digits(value).ok_or_else(|| {
                    Failure::bad_request(format!(
                        "query parameter 'after' must be the id of a todo (a whole number), got '{value}'"
                    ))
                })?;
                after.replace(n).map(|_| ())
            }
            _ => None,
        };
        if slot.is_some() {
            return Err(Failure::bad_request(format!(
                "query parameter '{name}' is given more than once"
            )));
        }
    }
    Ok((limit, after.unwrap_or(0)))
}

/// A whole number in ASCII digits only (no sign, no spaces) that fits 64 bits.
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A todo id: ASCII digits, a positive 64-bit number.
fn parse_id(text: &str) -> Option<u64> {
    digits(text).filter(|id| *id > 0)
}

/// The body of a `POST` or `PATCH`: JSON (or no `Content-Type`), at most [`MAX_BODY`] bytes, an
/// object.
async fn read_fields(headers: &HeaderMap, body: hyper::body::Incoming) -> Result<Fields, Failure> {
    // The body is read whatever its type, as todo-host reads it before the component runs:
    // a connection whose request body was left unread cannot be kept alive.
    let bytes = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| {
            Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {MAX_BODY} bytes"),
            )
        })?
        .to_bytes();
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let text = content_type.to_str().unwrap_or("");
        let media = text
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let json = media == "application/json"
            || (media.starts_with("application/") && media.ends_with("+json"));
        if !json {
            return Err(Failure::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Type '{text}': send application/json"),
            ));
        }
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Failure::bad_request(
            "request body is empty: expected a JSON object",
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|err| Failure::bad_request(format!("request body is not a valid todo: {err}")))
}

/// A title as kept: trimmed, not blank, at most [`MAX_TITLE_CHARS`] characters.
fn valid_title(title: &str) -> Result<String, Failure> {
    let trimmed = title.trim();
    if trimmed.is_empty() {
        return Err(Failure::bad_request("field 'title' must not be empty"));
    }
    let chars = trimmed.chars().count();
    if chars > MAX_TITLE_CHARS {
        return Err(Failure::bad_request(format!(
            "field 'title' is {chars} characters long; the limit is {MAX_TITLE_CHARS}"
        )));
    }
    Ok(trimmed.to_string())
}

/// A JSON answer with `status`.
fn json(status: StatusCode, value: &impl Serialize) -> Response<Full<Bytes>> {
    // Serializing our own plain structs cannot fail; fall back to `null` rather than panic.
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, JSON);
    response
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// The CORS preflight answer, as the component gives it.
fn preflight() -> Response<Full<Bytes>> {
    let mut response = empty(StatusCode::NO_CONTENT);
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    response
}
