//! Plain HTTP request and response values: what the logic sees instead of WIT resources.

/// An incoming request, fully read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Upper-case method name, e.g. `GET`.
    pub method: String,
    /// The path without the query string, as sent (not percent-decoded).
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// `http` or `https`: used to build absolute todo URLs.
    pub scheme: String,
    /// `host[:port]` the client addressed: used to build absolute todo URLs.
    pub authority: String,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The `If-None-Match` header, if any: for `304 Not Modified` on public files.
    pub if_none_match: Option<String>,
    /// The `Cookie` header (several joined by `; `), if any: a session cookie of accounts.
    pub cookie: Option<String>,
    /// The `Authorization` header, if any: a bearer token of accounts.
    pub authorization: Option<String>,
    /// The `Origin` header, if any: a cross-site write with a cookie is refused.
    pub origin: Option<String>,
    /// The `Sec-Fetch-Site` header, if any: the browser's own word on where a request came from.
    pub fetch_site: Option<String>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Request {
    /// A request with no body, for `method` and `path_and_query`; handy in tests and tools.
    pub fn new(method: &str, path_and_query: &str) -> Self {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path.to_string(), Some(query.to_string())),
            None => (path_and_query.to_string(), None),
        };
        Self {
            method: method.to_ascii_uppercase(),
            path,
            query,
            scheme: "http".to_string(),
            authority: "localhost".to_string(),
            content_type: None,
            if_none_match: None,
            cookie: None,
            authorization: None,
            origin: None,
            fetch_site: None,
            body: Vec::new(),
        }
    }

    /// The same request with a JSON body.
    pub fn with_json(self, body: &str) -> Self {
        self.with_body("application/json", body.as_bytes())
    }

    /// The same request with a body of the given content type.
    pub fn with_body(mut self, content_type: &str, body: &[u8]) -> Self {
        self.content_type = Some(content_type.to_string());
        self.body = body.to_vec();
        self
    }

    /// The base URL (`scheme://authority`) the client used to reach us.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }
}

/// An outgoing response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    pub fn empty(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON response with `status` and `value` serialized as its body.
    pub fn json(status: u16, value: &impl serde::Serialize) -> Self {
        // Serializing our own plain structs cannot fail; fall back to `null` rather than panic.
        let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
        Self::empty(status)
            .with_header("content-type", "application/json")
            .with_body(body)
    }

    /// The same response with one more header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The same response with `body`.
    pub fn with_body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// The value of header `name` (lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON (`null` when it is not JSON); for tests and tools.
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}
