//! Which component answers which path: Spin's routes (`/path` exact, `/prefix/...` a prefix)
//! and the table that picks the most specific one.

use anyhow::bail;

/// Where a component listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/path`: that path only.
    Exact(String),
    /// `/prefix/...`: the prefix and everything under it (`/...`: every path).
    Prefix(String),
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Exact(path) => write!(f, "{path}"),
            Route::Prefix(prefix) => write!(f, "{prefix}/..."),
        }
    }
}

impl Route {
    /// Parses a Spin route: `/path` (exact) or `/prefix/...`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        if !text.starts_with('/') {
            bail!("route '{text}' must start with '/'");
        }
        Ok(match text.strip_suffix("/...") {
            Some(prefix) => Route::Prefix(prefix.to_string()),
            None => Route::Exact(text.trim_end_matches('/').to_string()),
        })
    }

    /// Whether `path` (no query) is this route's.
    pub fn matches(&self, path: &str) -> bool {
        let path = path.trim_end_matches('/');
        match self {
            Route::Exact(exact) => path == exact,
            Route::Prefix(prefix) => {
                path == prefix
                    || path
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
                    || prefix.is_empty()
            }
        }
    }

    /// How specific the route is: an exact route before any prefix, longer prefixes first.
    pub fn specificity(&self) -> (bool, usize) {
        match self {
            Route::Exact(exact) => (true, exact.len()),
            Route::Prefix(prefix) => (false, prefix.len()),
        }
    }
}

/// Each route to what serves it; a path goes to the most specific route that matches it.
#[derive(Debug)]
pub struct RouteTable<T> {
    /// Most specific route first.
    table: Vec<(Route, T)>,
}

impl<T> RouteTable<T> {
    /// The table of `routes`, in any order.
    pub fn new(mut routes: Vec<(Route, T)>) -> Self {
        routes.sort_by_key(|(route, _)| std::cmp::Reverse(route.specificity()));
        Self { table: routes }
    }

    /// What serves `path` (no query), if any route matches it.
    pub fn pick(&self, path: &str) -> Option<&T> {
        self.table
            .iter()
            .find(|(route, _)| route.matches(path))
            .map(|(_, served)| served)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_exact_paths_and_prefixes() -> anyhow::Result<()> {
        let all = Route::parse("/...")?;
        let api = Route::parse("/api/...")?;
        let hello = Route::parse("/hello")?;
        assert!(all.matches("/") && all.matches("/todos/1"));
        assert!(api.matches("/api") && api.matches("/api/rule") && !api.matches("/apis"));
        assert!(hello.matches("/hello") && hello.matches("/hello/") && !hello.matches("/hello/x"));
        assert!(hello.specificity() > api.specificity() && api.specificity() > all.specificity());
        assert!(Route::parse("nope").is_err());
        Ok(())
    }

    #[test]
    fn the_most_specific_route_wins_whatever_the_order() -> anyhow::Result<()> {
        let table = RouteTable::new(vec![
            (Route::parse("/...")?, "all"),
            (Route::parse("/api/...")?, "api"),
            (Route::parse("/api/rule")?, "rule"),
        ]);
        assert_eq!(table.pick("/api/rule"), Some(&"rule"));
        assert_eq!(table.pick("/api/currentUser"), Some(&"api"));
        assert_eq!(table.pick("/todos"), Some(&"all"));
        let narrow = RouteTable::new(vec![(Route::parse("/count")?, ())]);
        assert_eq!(narrow.pick("/other"), None);
        Ok(())
    }
}
