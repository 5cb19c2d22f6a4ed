//! Helpers the guest's test files share; each includes this folder with `mod support;`.

use todo_guest::Response;

/// The message of an error answer (`{"error": ...}`), or `""` when the body has none.
pub fn error_of(response: &Response) -> String {
    response.body_json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
