//! The canonical `/todos` API, compatible with the Todo-Backend specification.
//!
//! | route | answer |
//! |---|---|
//! | `GET /todos?limit=N&after=ID` | 200, one page: see below |
//! | `POST /todos` | 201 + `Location`, the new todo |
//! | `DELETE /todos` | 204, every todo deleted |
//! | `GET /todos/{id}` | 200 or 404 |
//! | `PATCH /todos/{id}` | 200 with the todo after the change: any of `title`, `completed`, `order` |
//! | `PUT /todos/{id}` | 200: `title` required, `completed` false when absent, `order` kept when absent |
//! | `DELETE /todos/{id}` | 204 or 404 |
//!
//! # Pages
//!
//! The list is cut into pages in **id order** (creation order): a page holds the first `limit`
//! todos (default and maximum [`MAX_LIMIT`]) whose id is greater than `after` (default 0). The
//! todos *within* a page are sorted by `order`, then `id`, so a store of up to [`MAX_LIMIT`]
//! todos answers `GET /todos` with every todo in the Todo-Backend order, as before. While more
//! todos follow, the answer carries `Link: <URL>; rel="next"`, the same query with `after` set to
//! the page's highest id. Every answer also carries `X-Total-Count` (todos in the store) and
//! `X-Active-Count` (those not completed), read from the index, not counted.
//!
//! `after` is a plain id, not a secret: the id of a deleted todo is a fine cursor (the next page
//! starts after it), and so is any id up to the highest one issued. `limit` outside
//! `1..=`[`MAX_LIMIT`], or a non-numeric, negative, repeated or too-high `after` (past the highest
//! id ever issued: forged, or from another store) is a 400 and changes nothing.

use serde::Serialize;

use crate::body::{self, Accepts};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::index::Store;
use crate::kv::Kv;
use crate::records::{self, NewTodo, TodoRecord};
use crate::time::Timestamp;

/// Methods of `/todos`.
pub const COLLECTION_ALLOW: &str = "GET, HEAD, POST, DELETE, OPTIONS";
/// Methods of `/todos/{id}`.
pub const ITEM_ALLOW: &str = "GET, HEAD, PATCH, PUT, DELETE, OPTIONS";

/// The most todos one page holds, and how many `GET /todos` answers when it names no `limit`.
pub const MAX_LIMIT: usize = 1000;

/// A todo as the canonical API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TodoView<'a> {
    pub id: u64,
    pub title: &'a str,
    pub completed: bool,
    pub order: i64,
    pub url: String,
    pub created_at: &'a str,
    pub updated_at: &'a str,
}

impl<'a> TodoView<'a> {
    /// The view of `record` for a client that reached us at `base_url`.
    pub fn new(record: &'a TodoRecord, base_url: &str) -> Self {
        Self {
            id: record.id,
            title: &record.title,
            completed: record.completed,
            order: record.order,
            url: item_url(base_url, record.id),
            created_at: &record.created_at,
            updated_at: &record.updated_at,
        }
    }
}

fn item_url(base_url: &str, id: u64) -> String {
    format!("{base_url}/todos/{id}")
}

/// `/todos`.
pub fn collection(request: &Request, kv: &dyn Kv, now: Timestamp) -> Result<Response, ApiError> {
    let base = request.base_url();
    match request.method.as_str() {
        "GET" => list_page(request, kv, now),
        "POST" => {
            let map = body::object(request, Accepts::Json)?;
            let title = body::title(&map, "title")?
                .ok_or_else(|| ApiError::BadRequest("field 'title' is required".to_string()))?;
            let new = NewTodo {
                title,
                completed: body::boolean(&map, "completed")?.unwrap_or(false),
                order: body::integer(&map, "order")?,
                description: String::new(),
            };
            let record = records::create(kv, new, now)?;
            let view = TodoView::new(&record, &base);
            let location = view.url.clone();
            Ok(Response::json(201, &view).with_header("location", location))
        }
        "DELETE" => {
            records::delete_all(kv, now)?;
            Ok(Response::empty(204))
        }
        method => Err(ApiError::MethodNotAllowed {
            method: method.to_string(),
            path: request.path.clone(),
            allow: COLLECTION_ALLOW,
        }),
    }
}

/// `/todos/{id}`; `id_text` is the raw path segment.
pub fn item(
    request: &Request,
    id_text: &str,
    kv: &dyn Kv,
    now: Timestamp,
) -> Result<Response, ApiError> {
    let allowed = ["GET", "PATCH", "PUT", "DELETE"];
    if !allowed.contains(&request.method.as_str()) {
        return Err(ApiError::MethodNotAllowed {
            method: request.method.clone(),
            path: request.path.clone(),
            allow: ITEM_ALLOW,
        });
    }
    // The segment is percent-decoded first, like every path segment: `/todos/%32` is
    // `/todos/2`, as `/todos/0002` is.
    let decoded = crate::percent::decode(id_text)?;
    let id = body::parse_id(&decoded).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no todo with id '{id_text}': ids are positive integers"
        ))
    })?;
    let base = request.base_url();
    match request.method.as_str() {
        "GET" => {
            let record = records::get(kv, id)?;
            Ok(Response::json(200, &TodoView::new(&record, &base)))
        }
        "DELETE" => {
            records::delete(kv, id)?;
            Ok(Response::empty(204))
        }
        method => {
            // Validate the body before touching the bucket: a bad request changes nothing.
            let map = body::object(request, Accepts::Json)?;
            let title = body::title(&map, "title")?;
            let completed = body::boolean(&map, "completed")?;
            let order = body::integer(&map, "order")?;
            let mut record = records::get(kv, id)?;
            if method == "PUT" {
                record.title = title.ok_or_else(|| {
                    ApiError::BadRequest("PUT replaces the todo: field 'title' is required".into())
                })?;
                record.completed = completed.unwrap_or(false);
            } else {
                if let Some(title) = title {
                    record.title = title;
                }
                if let Some(completed) = completed {
                    record.completed = completed;
                }
            }
            if let Some(order) = order {
                record.order = order;
            }
            record.updated_at = now.to_rfc3339();
            records::update(kv, &record)?;
            Ok(Response::json(200, &TodoView::new(&record, &base)))
        }
    }
}

/// The query of a page: `limit` (when given) and `after`.
struct PageQuery {
    limit: Option<usize>,
    after: u64,
}

fn page_query(request: &Request) -> Result<PageQuery, ApiError> {
    let mut query = PageQuery {
        limit: None,
        after: 0,
    };
    for (name, value) in body::query_pairs(request)? {
        match name.as_str() {
            "limit" => {
                let limit = digits(&value)
                    .filter(|n| (1..=MAX_LIMIT as u64).contains(n))
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "query parameter 'limit' must be an integer from 1 to {MAX_LIMIT}, got '{value}'"
                        ))
                    })?;
                query.limit = Some(limit as usize);
            }
            "after" => {
                query.after = digits(&value).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "query parameter 'after' must be the id of a todo (a whole number), got '{value}'"
                    ))
                })?;
            }
            // Other parameters do not narrow the list.
            _ => {}
        }
    }
    Ok(query)
}

/// A whole number written in ASCII digits only (no sign, no spaces), that fits 64 bits.
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `GET /todos`: one page, as the module doc says.
fn list_page(request: &Request, kv: &dyn Kv, now: Timestamp) -> Result<Response, ApiError> {
    let query = page_query(request)?;
    let store = Store::open_after(kv, now, query.after)?;
    if query.after > store.max_id() {
        return Err(ApiError::BadRequest(format!(
            "query parameter 'after' is {}, past the highest id this store has issued ({}): \
             a cursor must come from a page of this store",
            query.after,
            store.max_id()
        )));
    }
    let limit = query.limit.unwrap_or(MAX_LIMIT);
    let page = store.page(query.after, 0, limit)?;
    let (total, done) = store.totals()?;
    let mut todos = store.records(&page.ids)?;
    store.flush()?;
    todos.sort_by_key(|todo| (todo.order, todo.id));
    let base = request.base_url();
    let views: Vec<TodoView> = todos.iter().map(|t| TodoView::new(t, &base)).collect();
    let mut response = Response::json(200, &views)
        .with_header("x-total-count", total.to_string())
        .with_header("x-active-count", total.saturating_sub(done).to_string())
        .with_header(
            "access-control-expose-headers",
            "Link, X-Total-Count, X-Active-Count",
        );
    if let (true, Some(last)) = (page.more, page.ids.last()) {
        let limit = query
            .limit
            .map(|limit| format!("limit={limit}&"))
            .unwrap_or_default();
        response = response.with_header(
            "link",
            format!("<{base}/todos?{limit}after={last}>; rel=\"next\""),
        );
    }
    Ok(response)
}
