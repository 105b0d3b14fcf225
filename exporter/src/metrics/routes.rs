//! `http_route`: the first configured pattern (`metrics.routes`, such as `/users/{id}/orders/{order}`)
//! that matches the path; otherwise a heuristic that collapses the segments that are identifiers
//! (numbers, UUIDs, hex hashes, long tokens with digits) into `{id}`. A hard cap on the distinct routes
//! of each service, past which requests get the route [`OVERFLOW_ROUTE`].

use std::collections::{BTreeSet, HashMap};

/// The route of a request past its service's cap.
pub const OVERFLOW_ROUTE: &str = "_overflow";

/// The route of `target` (a request target, query included): the first of `patterns` its path matches,
/// else the path with identifier segments replaced by `{id}`. A pattern matches a path with as many
/// segments, each `{name}` segment matching any one segment and the others matching exactly.
pub fn route(patterns: &[String], target: &str) -> String {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let matches = |pattern: &String| {
        let mut wanted = pattern.split('/');
        let mut got = path.split('/');
        loop {
            match (wanted.next(), got.next()) {
                (None, None) => return true,
                (Some(want), Some(segment)) => {
                    let placeholder = want.starts_with('{') && want.ends_with('}');
                    if !(placeholder && !segment.is_empty() || want == segment) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
    };
    match patterns.iter().find(|pattern| matches(pattern)) {
        Some(pattern) => pattern.clone(),
        None => heuristic_route(path),
    }
}

/// `path` with identifier segments replaced by `{id}`.
fn heuristic_route(path: &str) -> String {
    let segments: Vec<&str> = path
        .split('/')
        .map(|segment| match is_identifier(segment) {
            true => "{id}",
            false => segment,
        })
        .collect();
    match segments.join("/") {
        route if route.starts_with('/') => route,
        _ => "/".to_owned(),
    }
}

fn is_identifier(segment: &str) -> bool {
    let has_digit = segment.bytes().any(|byte| byte.is_ascii_digit());
    let is_hex = !segment.is_empty() && segment.bytes().all(|byte| byte.is_ascii_hexdigit());
    let is_uuid = segment.len() == 36
        && segment
            .bytes()
            .enumerate()
            .all(|(index, byte)| match index {
                8 | 13 | 18 | 23 => byte == b'-',
                _ => byte.is_ascii_hexdigit(),
            });
    let is_token = segment.len() >= 16
        && segment
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    !segment.is_empty()
        && (segment.bytes().all(|byte| byte.is_ascii_digit())
            || is_uuid
            || (is_hex && has_digit && segment.len() >= 8)
            || (is_token && has_digit))
}

/// The distinct routes each service has produced, up to a cap.
#[derive(Debug)]
pub struct RouteLimiter {
    max_per_service: usize,
    routes: HashMap<String, BTreeSet<String>>,
}

impl RouteLimiter {
    pub fn new(max_per_service: usize) -> Self {
        RouteLimiter {
            max_per_service,
            routes: HashMap::new(),
        }
    }

    /// `route` when the service already has it or has room for it; otherwise [`OVERFLOW_ROUTE`] (and
    /// `false`, so that the caller counts the overflow).
    pub fn admit(&mut self, service: &str, route: String) -> (String, bool) {
        let routes = self.routes.entry(service.to_owned()).or_default();
        if routes.contains(&route) || routes.len() < self.max_per_service {
            routes.insert(route.clone());
            (route, true)
        } else {
            (OVERFLOW_ROUTE.to_owned(), false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_collapse_and_words_stay() {
        for (target, route) in [
            ("/users/42", "/users/{id}"),
            ("/users/42/orders/7?page=2", "/users/{id}/orders/{id}"),
            ("/items/3f2504e0-4f89-11d3-9a0c-0305e82c3301", "/items/{id}"),
            ("/blobs/9f86d081884c7d65", "/blobs/{id}"),
            ("/t/AbCdEf0123456789xyz", "/t/{id}"),
            ("/api/v1/health", "/api/v1/health"),
            ("/static/app.js", "/static/app.js"),
            ("/cafe", "/cafe"),
            ("/", "/"),
            ("*", "/"),
        ] {
            assert_eq!(super::route(&[], target), route, "{target}");
        }
    }

    #[test]
    fn configured_patterns_come_first() {
        let patterns = vec![
            "/shop/{shop}/items/{item}".to_owned(),
            "/users/me".to_owned(),
        ];
        assert_eq!(
            route(&patterns, "/shop/berlin/items/spoon?x=1"),
            "/shop/{shop}/items/{item}"
        );
        assert_eq!(route(&patterns, "/users/me"), "/users/me");
        // No pattern matches: the heuristic.
        assert_eq!(route(&patterns, "/shop/berlin/items"), "/shop/berlin/items");
        assert_eq!(route(&patterns, "/shop//items/spoon"), "/shop//items/spoon");
        assert_eq!(route(&patterns, "/users/42"), "/users/{id}");
    }

    #[test]
    fn ten_thousand_distinct_paths_stay_within_the_cap() {
        let mut limiter = RouteLimiter::new(100);
        let mut routes = BTreeSet::new();
        let mut overflowed = 0;
        for n in 0..10_000 {
            // Half collapse to one route; the other half are distinct words.
            let target = match n % 2 {
                0 => format!("/users/{n}"),
                _ => format!(
                    "/page-{}",
                    char::from(b'a' + (n % 26) as u8)
                        .to_string()
                        .repeat(n / 26 + 1)
                ),
            };
            let (route, admitted) = limiter.admit("shop", super::route(&[], &target));
            overflowed += usize::from(!admitted);
            routes.insert(route);
        }
        assert_eq!(routes.len(), 101, "100 routes and the overflow route");
        assert!(routes.contains("/users/{id}") && routes.contains(OVERFLOW_ROUTE));
        assert!(overflowed > 4_000);
        // Another service has its own budget.
        assert!(limiter.admit("cart", "/x".into()).1);
    }
}
