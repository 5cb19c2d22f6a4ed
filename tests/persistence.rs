//! Durability of the default store: what one host process wrote, the next one on the same SQLite
//! file reads.

mod support;

use support::{Host, sqlite_url, temp_dir};

#[test]
fn todos_survive_a_restart_on_the_same_sqlite_file() -> anyhow::Result<()> {
    let dir = temp_dir()?;
    let store = sqlite_url(dir.path());

    let first = Host::start(&["--store", &store])?;
    for i in 0..25 {
        let (status, _) = first.call(
            "POST",
            "/todos",
            Some(&format!(r#"{{"title":"todo {i}"}}"#)),
        )?;
        assert_eq!(status, 201);
    }
    first.call("PATCH", "/todos/3", Some(r#"{"completed":true}"#))?;
    first.call("DELETE", "/todos/4", None)?;
    assert!(first.terminate()?.success());

    let second = Host::start(&["--store", &store])?;
    let (_, list) = second.call("GET", "/todos", None)?;
    let todos = list.as_array().cloned().unwrap_or_default();
    assert_eq!(todos.len(), 24);
    assert!(todos.iter().any(|t| t["id"] == 3 && t["completed"] == true));
    assert!(todos.iter().all(|t| t["id"] != 4));
    // The id counter persisted too: no id is handed out twice across restarts.
    let (_, new) = second.call("POST", "/todos", Some(r#"{"title":"after restart"}"#))?;
    assert_eq!(new["id"], 26);
    Ok(())
}
