//! The canonical `/todos` API, compatible with the Todo-Backend specification.
//!
//! | route | answer |
//! |---|---|
//! | `GET /todos` | 200, every todo sorted by `order`, then `id` |
//! | `POST /todos` | 201 + `Location`, the new todo |
//! | `DELETE /todos` | 204, every todo deleted |
//! | `GET /todos/{id}` | 200 or 404 |
//! | `PATCH /todos/{id}` | 200 with the todo after the change: any of `title`, `completed`, `order` |
//! | `PUT /todos/{id}` | 200: `title` required, `completed` false when absent, `order` kept when absent |
//! | `DELETE /todos/{id}` | 204 or 404 |

use serde::Serialize;

use crate::body::{self, Accepts};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::kv::Kv;
use crate::records::{self, NewTodo, TodoRecord};
use crate::time::Timestamp;

/// Methods of `/todos`.
pub const COLLECTION_ALLOW: &str = "GET, HEAD, POST, DELETE, OPTIONS";
/// Methods of `/todos/{id}`.
pub const ITEM_ALLOW: &str = "GET, HEAD, PATCH, PUT, DELETE, OPTIONS";

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
        "GET" => {
            let todos = records::list(kv)?;
            let views: Vec<TodoView> = todos.iter().map(|t| TodoView::new(t, &base)).collect();
            Ok(Response::json(200, &views))
        }
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
            records::delete_all(kv)?;
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
    let id = body::parse_id(id_text).ok_or_else(|| {
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
            records::save(kv, &record)?;
            Ok(Response::json(200, &TodoView::new(&record, &base)))
        }
    }
}
