//! `http_route`: the first configured pattern (`metrics.routes`, such as `/users/{id}/orders/{order}`)
//! that matches the path; otherwise a heuristic that collapses the segments that are identifiers
//! (numbers, UUIDs, hex hashes, long tokens with digits) into `{id}`; and, learned per service as
//! requests come, a path position keeps the first `metrics.max_segment_values` distinct values it shows
//! under one parent path and collapses every later one (usernames, slugs, file names) into
//! [`COLLAPSED_SEGMENT`], so that a long-running service's routes converge while its first,
//! meaningful paths (`/users`, `/static`) keep their names (for at most `metrics.max_route_parents`
//! parent paths per service). A hard cap on the distinct routes of each service
//! that have live series, past which requests get the route [`OVERFLOW_ROUTE`]: a route leaves the
//! cap with its last series.

use std::collections::{HashMap, HashSet};

/// The route of a request past its service's cap.
pub const OVERFLOW_ROUTE: &str = "_overflow";
/// What a path segment of a position with too many distinct values becomes.
pub const COLLAPSED_SEGMENT: &str = "{param}";

/// The route of `target` (a request target, query included) and whether a configured pattern gave it:
/// the first of `patterns` its path matches, else the path with identifier segments replaced by `{id}`.
/// A pattern matches a path with as many segments, each `{name}` segment matching any one segment and
/// the others matching exactly.
pub fn route(patterns: &[String], target: &str) -> (String, bool) {
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
        Some(pattern) => (pattern.clone(), true),
        None => (heuristic_route(path), false),
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

/// Each service's routes: the segment positions learned, and the routes with live series, up to a cap.
#[derive(Debug)]
pub struct RouteLimiter {
    max_per_service: usize,
    max_segment_values: usize,
    max_parents: usize,
    services: HashMap<String, ServiceRoutes>,
}

#[derive(Debug, Default)]
struct ServiceRoutes {
    /// Route → its live series.
    live: HashMap<String, usize>,
    /// Parent path → the first distinct values of its child segment (at most `max_segment_values`),
    /// which keep their names; any other value collapses.
    children: HashMap<String, HashSet<String>>,
}

impl ServiceRoutes {
    /// `route` with the segments past their position's first values collapsed, learning its segments.
    fn collapse(&mut self, route: &str, max_segment_values: usize, max_parents: usize) -> String {
        let mut collapsed = String::new();
        for segment in route.split('/').skip(1) {
            let parent = if collapsed.is_empty() {
                "/"
            } else {
                &collapsed
            };
            let learnable = self.children.len() < max_parents || self.children.contains_key(parent);
            let keep = !learnable || {
                let known = self.children.entry(parent.to_owned()).or_default();
                known.contains(segment)
                    || (known.len() < max_segment_values && known.insert(segment.to_owned()))
            };
            collapsed.push('/');
            collapsed.push_str(if keep { segment } else { COLLAPSED_SEGMENT });
        }
        if collapsed.is_empty() {
            collapsed.push('/');
        }
        collapsed
    }
}

impl RouteLimiter {
    pub fn new(max_per_service: usize, max_segment_values: usize, max_parents: usize) -> Self {
        RouteLimiter {
            max_per_service,
            max_segment_values,
            max_parents,
            services: HashMap::new(),
        }
    }

    /// The route a request of `service` gets: `route` (a configured pattern's, or collapsed where its
    /// positions have too many values) when the service already has it or has room for it; otherwise
    /// [`OVERFLOW_ROUTE`] (and `false`, so that the caller counts the overflow). `from_pattern`: a
    /// configured pattern, which is never collapsed.
    pub fn admit(&mut self, service: &str, route: &str, from_pattern: bool) -> (String, bool) {
        let routes = self.services.entry(service.to_owned()).or_default();
        let route = match from_pattern {
            true => route.to_owned(),
            false => routes.collapse(route, self.max_segment_values, self.max_parents),
        };
        if routes.live.contains_key(&route) || routes.live.len() < self.max_per_service {
            (route, true)
        } else {
            (OVERFLOW_ROUTE.to_owned(), false)
        }
    }

    /// A series of `route` of `service` was created.
    pub fn hold(&mut self, service: &str, route: &str) {
        *self
            .services
            .entry(service.to_owned())
            .or_default()
            .live
            .entry(route.to_owned())
            .or_default() += 1;
    }

    /// A series of `route` of `service` was removed; the route leaves the cap with its last one.
    pub fn release(&mut self, service: &str, route: &str) {
        let Some(routes) = self.services.get_mut(service) else {
            return;
        };
        if let Some(count) = routes.live.get_mut(route) {
            *count -= 1;
            if *count == 0 {
                routes.live.remove(route);
            }
        }
    }

    /// Routes with live series, over every service.
    pub fn live_routes(&self) -> usize {
        self.services.values().map(|routes| routes.live.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

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
            assert_eq!(
                super::route(&[], target),
                (route.to_owned(), false),
                "{target}"
            );
        }
    }

    #[test]
    fn configured_patterns_come_first() {
        let patterns = vec![
            "/shop/{shop}/items/{item}".to_owned(),
            "/users/me".to_owned(),
        ];
        let route = |target: &str| route(&patterns, target).0;
        assert_eq!(
            route("/shop/berlin/items/spoon?x=1"),
            "/shop/{shop}/items/{item}"
        );
        assert_eq!(route("/users/me"), "/users/me");
        // No pattern matches: the heuristic.
        assert_eq!(route("/shop/berlin/items"), "/shop/berlin/items");
        assert_eq!(route("/shop//items/spoon"), "/shop//items/spoon");
        assert_eq!(route("/users/42"), "/users/{id}");
    }

    #[test]
    fn ten_thousand_distinct_paths_stay_within_the_cap() {
        // No position is learned here (values are never too many): the cap alone bounds the routes.
        let mut limiter = RouteLimiter::new(100, usize::MAX, 10_000);
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
            let (route, admitted) = limiter.admit("shop", &super::route(&[], &target).0, false);
            overflowed += usize::from(!admitted);
            // A new route's first series is created (the series store holds it).
            if admitted && !routes.contains(&route) {
                limiter.hold("shop", &route);
            }
            routes.insert(route);
        }
        assert_eq!(routes.len(), 101, "100 routes and the overflow route");
        assert!(routes.contains("/users/{id}") && routes.contains(OVERFLOW_ROUTE));
        assert!(overflowed > 4_000);
        // Another service has its own budget.
        assert!(limiter.admit("cart", "/x", false).1);
    }

    #[test]
    fn parents_past_the_learned_ones_keep_their_segments() {
        let mut limiter = RouteLimiter::new(100, 1, 2);
        let mut admit = |route: &str| limiter.admit("shop", route, false).0;
        // Two parents learned: "/" (first value "a") and "/a" (first value "x").
        assert_eq!(admit("/a/x"), "/a/x");
        assert_eq!(admit("/a/y"), "/a/{param}");
        assert_eq!(admit("/b"), "/{param}");
        // "/a/x" is a third parent: not learned, so what is under it is kept as it is.
        assert_eq!(admit("/a/x/1st"), "/a/x/1st");
        assert_eq!(admit("/a/x/2nd"), "/a/x/2nd");
    }

    #[test]
    fn values_past_a_positions_first_ones_collapse_per_parent_and_patterns_never_do() {
        let mut limiter = RouteLimiter::new(100, 3, 10_000);
        let admit = |limiter: &mut RouteLimiter, route: &str| limiter.admit("shop", route, false).0;
        for user in ["ann", "bob", "cy"] {
            assert_eq!(
                admit(&mut limiter, &format!("/users/{user}/profile")),
                format!("/users/{user}/profile")
            );
        }
        // The fourth value under /users, and every later one, collapses; the first three keep their
        // names.
        assert_eq!(
            admit(&mut limiter, "/users/dee/profile"),
            "/users/{param}/profile"
        );
        assert_eq!(
            admit(&mut limiter, "/users/eve/profile"),
            "/users/{param}/profile"
        );
        assert_eq!(
            admit(&mut limiter, "/users/ann/profile"),
            "/users/ann/profile"
        );
        // Other parents keep their own counts.
        assert_eq!(admit(&mut limiter, "/static/app.js"), "/static/app.js");
        // A configured pattern is kept as written.
        assert_eq!(
            limiter.admit("shop", "/users/{name}/cart", true).0,
            "/users/{name}/cart"
        );
    }

    #[test]
    fn a_route_leaves_the_cap_with_its_last_series() {
        let mut limiter = RouteLimiter::new(2, usize::MAX, 10_000);
        for route in ["/a", "/b"] {
            assert!(limiter.admit("shop", route, false).1);
            limiter.hold("shop", route);
        }
        limiter.hold("shop", "/a");
        assert!(!limiter.admit("shop", "/c", false).1, "the cap is reached");
        limiter.release("shop", "/a");
        assert!(
            !limiter.admit("shop", "/c", false).1,
            "/a has a series left"
        );
        limiter.release("shop", "/a");
        assert_eq!(limiter.admit("shop", "/c", false), ("/c".to_owned(), true));
    }
}
