//! The legacy API of the classic Express app, which its Ant Design Pro list page calls.
//!
//! A rule is a todo seen differently: `key` = id, `name` = title, `desc` = description,
//! `status` = 1 open / 2 done, `progress` = 0 or 100.
//!
//! | route | body | answer |
//! |---|---|---|
//! | `GET /api/rule?current=&pageSize=` | | `{data, total, success, pageSize, current}`: page `current` of the rules in id order |
//! | `POST /api/rule` | `{name, desc?}` JSON or form | the new rule |
//! | `PUT /api/rule` | `{key, name?, desc?, status?}` | the rule after the change; 404 unknown key |
//! | `DELETE /api/rule` | `{key: [k, ...]}` (at most [`MAX_PAGE_SIZE`] keys) | `{list: [the first page of rules left], pagination: {total, current: 1, pageSize}}`; unknown keys are ignored |
//!
//! Pages are counted in **id order** (creation order), found through the index, so page 1 and
//! the last page of a million rules cost the same. A `current` past the last page answers 200
//! with an empty `data` and the real `total`: the convention of the Ant Design table this API
//! serves, which then steps back a page. `current` or `pageSize` that is not a whole number from
//! 1 (`pageSize`: up to [`MAX_PAGE_SIZE`]) is a 400.
//! | `GET /api/currentUser` | | a fixed demo user |

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::body::{self, Accepts};
use crate::error::ApiError;
use crate::http::{Request, Response};
use crate::index::Store;
use crate::kv::Kv;
use crate::records::{self, NewTodo, TodoRecord};
use crate::time::Timestamp;

/// Methods of `/api/rule`.
pub const RULE_ALLOW: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS";
/// Methods of `/api/currentUser`.
pub const CURRENT_USER_ALLOW: &str = "GET, HEAD, OPTIONS";
/// Page size when the client names none.
pub const DEFAULT_PAGE_SIZE: u64 = 20;
/// The largest page a client may ask for.
pub const MAX_PAGE_SIZE: u64 = 1000;
/// Who owns every rule: the app has one demo user.
const OWNER: &str = "demo";

const STATUS_OPEN: u8 = 1;
const STATUS_DONE: u8 = 2;

/// A todo as the legacy API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule<'a> {
    pub key: u64,
    pub name: &'a str,
    pub desc: &'a str,
    pub status: u8,
    pub progress: u8,
    pub owner: &'static str,
    pub created_at: &'a str,
    pub updated_at: &'a str,
}

impl<'a> From<&'a TodoRecord> for Rule<'a> {
    fn from(record: &'a TodoRecord) -> Self {
        Self {
            key: record.id,
            name: &record.title,
            desc: &record.description,
            status: if record.completed {
                STATUS_DONE
            } else {
                STATUS_OPEN
            },
            progress: if record.completed { 100 } else { 0 },
            owner: OWNER,
            created_at: &record.created_at,
            updated_at: &record.updated_at,
        }
    }
}

/// `/api/currentUser`.
pub fn current_user(request: &Request) -> Result<Response, ApiError> {
    if request.method != "GET" {
        return Err(ApiError::MethodNotAllowed {
            method: request.method.clone(),
            path: request.path.clone(),
            allow: CURRENT_USER_ALLOW,
        });
    }
    Ok(Response::json(
        200,
        &json!({
            "name": "Demo User",
            "avatar": "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 1 1'%3E%3Crect width='1' height='1' fill='%234a7'/%3E%3C/svg%3E",
            "userid": "00000001",
            "email": "demo@example.com",
            "signature": "Stateless compute, stateful store.",
            "title": "Todo owner",
            "access": "admin",
        }),
    ))
}

/// `/api/rule`.
pub fn rule(request: &Request, kv: &dyn Kv, now: Timestamp) -> Result<Response, ApiError> {
    match request.method.as_str() {
        "GET" => list_page(request, kv, now),
        "POST" => {
            let map = body::object(request, Accepts::JsonOrForm)?;
            let name = body::title(&map, "name")?
                .ok_or_else(|| ApiError::BadRequest("field 'name' is required".to_string()))?;
            let new = NewTodo {
                title: name,
                description: body::text(&map, "desc")?.unwrap_or_default(),
                ..NewTodo::default()
            };
            let record = records::create(kv, new, now)?;
            Ok(Response::json(200, &Rule::from(&record)))
        }
        "PUT" => {
            let map = body::object(request, Accepts::JsonOrForm)?;
            let key = map
                .get("key")
                .ok_or_else(|| ApiError::BadRequest("field 'key' is required".to_string()))
                .and_then(|value| body::id_value("key", value))?;
            let name = body::title(&map, "name")?;
            let desc = body::text(&map, "desc")?;
            let status = status(&map)?;
            let mut record = records::get(kv, key)?;
            if let Some(name) = name {
                record.title = name;
            }
            if let Some(desc) = desc {
                record.description = desc;
            }
            if let Some(status) = status {
                record.completed = status == STATUS_DONE;
            }
            record.updated_at = now.to_rfc3339();
            records::update(kv, &record)?;
            Ok(Response::json(200, &Rule::from(&record)))
        }
        "DELETE" => {
            let map = body::object(request, Accepts::JsonOrForm)?;
            let keys = delete_keys(&map)?;
            if keys.len() > MAX_PAGE_SIZE as usize {
                return Err(ApiError::BadRequest(format!(
                    "field 'key' names {} keys; one delete takes at most {MAX_PAGE_SIZE} (a page)",
                    keys.len()
                )));
            }
            records::delete_ids(kv, &keys, now)?;
            let (left, total) = page(kv, now, 1, DEFAULT_PAGE_SIZE)?;
            let list: Vec<Rule> = left.iter().map(Rule::from).collect();
            Ok(Response::json(
                200,
                &json!({
                    "list": list,
                    "pagination": { "total": total, "current": 1, "pageSize": DEFAULT_PAGE_SIZE },
                }),
            ))
        }
        method => Err(ApiError::MethodNotAllowed {
            method: method.to_string(),
            path: request.path.clone(),
            allow: RULE_ALLOW,
        }),
    }
}

fn list_page(request: &Request, kv: &dyn Kv, now: Timestamp) -> Result<Response, ApiError> {
    let mut current = 1;
    let mut page_size = DEFAULT_PAGE_SIZE;
    for (name, value) in body::query_pairs(request)? {
        match name.as_str() {
            "current" => current = positive_param("current", &value, u64::MAX)?,
            "pageSize" => page_size = positive_param("pageSize", &value, MAX_PAGE_SIZE)?,
            // The list page sends sorter, filter and search fields; they do not narrow this list.
            _ => {}
        }
    }
    let (todos, total) = page(kv, now, current, page_size)?;
    let data: Vec<Rule> = todos.iter().map(Rule::from).collect();
    Ok(Response::json(
        200,
        &json!({
            "data": data,
            "total": total,
            "success": true,
            "pageSize": page_size,
            "current": current,
        }),
    ))
}

/// Page `current` (from 1) of `page_size` rules in id order, and how many rules there are.
fn page(
    kv: &dyn Kv,
    now: Timestamp,
    current: u64,
    page_size: u64,
) -> Result<(Vec<TodoRecord>, u64), ApiError> {
    let store = Store::open(kv, now)?;
    let skip = (current - 1).saturating_mul(page_size);
    let page = store.page(0, skip, page_size as usize)?;
    let (total, _) = store.totals()?;
    let records = store.records(&page.ids)?;
    store.flush()?;
    Ok((records, total))
}

fn positive_param(name: &str, value: &str, max: u64) -> Result<u64, ApiError> {
    body::parse_id(value).filter(|n| *n <= max).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "query parameter '{name}' must be an integer from 1 to {max}, got '{value}'"
        ))
    })
}

/// `status` as 1 or 2, given as a number or a string of digits (as a `key` is).
fn status(map: &Map<String, Value>) -> Result<Option<u8>, ApiError> {
    let Some(value) = map.get("status") else {
        return Ok(None);
    };
    let parsed = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(text) => body::parse_id(text),
        _ => None,
    };
    match parsed {
        Some(1) => Ok(Some(STATUS_OPEN)),
        Some(2) => Ok(Some(STATUS_DONE)),
        _ => Err(ApiError::BadRequest(format!(
            "field 'status' must be 1 (open) or 2 (done), got {value}"
        ))),
    }
}

/// The keys of a delete: `{"key": [k, ...]}` or `{"key": k}`.
fn delete_keys(map: &Map<String, Value>) -> Result<Vec<u64>, ApiError> {
    match map.get("key") {
        None => Err(ApiError::BadRequest(
            "field 'key' is required: a key or a list of keys".to_string(),
        )),
        Some(Value::Array(items)) => items.iter().map(|v| body::id_value("key", v)).collect(),
        Some(value) => Ok(vec![body::id_value("key", value)?]),
    }
}
