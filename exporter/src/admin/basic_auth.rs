//! `basic_auth_users`: HTTP basic authentication against bcrypt hashes.
//!
//! bcrypt costs tens of milliseconds by design (about 70 ms at cost 10), so, as in the exporter-toolkit,
//! a successful verification is remembered: keyed by the SHA-256 of user, password and hash (the
//! presented password itself is never kept), a scrape with the same credentials is admitted without
//! bcrypt. The cache holds at most [`CACHE_ENTRIES`] and starts over when full. A failed verification is
//! not cached. An unknown user costs a bcrypt verification as well, against a fixed hash, so timing does
//! not tell which users exist. Verification runs on a blocking thread: the admin server's runtime keeps
//! serving meanwhile. Credentials are never logged.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex, OnceLock},
};

use base64::Engine as _;
use hyper::header::{AUTHORIZATION, HeaderMap};

/// Verified credentials remembered at most.
const CACHE_ENTRIES: usize = 1024;

/// The users of `basic_auth_users` and the credentials verified so far.
pub struct BasicAuth {
    /// User → bcrypt hash.
    users: Arc<BTreeMap<String, String>>,
    /// SHA-256 of (user, password, hash) of credentials that verified.
    verified: Arc<Mutex<HashSet<[u8; 32]>>>,
}

impl BasicAuth {
    /// `users`: user → bcrypt hash (checked by the caller).
    pub fn new(users: BTreeMap<String, String>) -> BasicAuth {
        BasicAuth {
            users: Arc::new(users),
            verified: Arc::default(),
        }
    }

    /// Whether `headers` carry the credentials of a configured user.
    pub async fn admits(&self, headers: &HeaderMap) -> bool {
        let Some((user, password)) = credentials(headers) else {
            return false;
        };
        let hash = self.users.get(&user).cloned();
        let key = cache_key(&user, &password, hash.as_deref().unwrap_or_default());
        if hash.is_some()
            && self
                .verified
                .lock()
                .expect("credential cache lock")
                .contains(&key)
        {
            return true;
        }
        let verified = tokio::task::spawn_blocking(move || match hash {
            Some(hash) => bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false),
            None => {
                // The same work as for a known user, then refused.
                let _ = bcrypt::verify(password.as_bytes(), unknown_user_hash());
                false
            }
        })
        .await
        .unwrap_or(false);
        if verified {
            let mut cache = self.verified.lock().expect("credential cache lock");
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(key);
        }
        verified
    }
}

/// A bcrypt hash (cost 10, the usual) no password is checked against for a known user.
fn unknown_user_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        bcrypt::hash_with_salt(b"vigil: no such user", 10, [7; 16])
            .expect("cost 10 is valid")
            .to_string()
    })
}

/// SHA-256 over the three parts, each length-prefixed so that no two triples share an input.
fn cache_key(user: &str, password: &str, hash: &str) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, password, hash] {
        context.update(&(part.len() as u64).to_le_bytes());
        context.update(part.as_bytes());
    }
    context
        .finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// `Authorization: Basic base64(user:password)`, decoded.
fn credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
        headers
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        headers(&format!("Basic {encoded}"))
    }

    fn auth() -> BasicAuth {
        // Cost 4, the lowest, keeps the test fast.
        let hash = bcrypt::hash_with_salt("right", 4, [1; 16])
            .unwrap()
            .to_string();
        BasicAuth::new(BTreeMap::from([("alice".to_owned(), hash)]))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn only_the_right_password_of_a_known_user_is_admitted() {
        let auth = auth();
        assert!(auth.admits(&basic("alice", "right")).await);
        assert!(!auth.admits(&basic("alice", "wrong")).await);
        assert!(!auth.admits(&basic("bob", "right")).await);
        assert!(!auth.admits(&basic("alice", "")).await);
        assert!(!auth.admits(&HeaderMap::new()).await);
        assert!(!auth.admits(&headers("Bearer abc")).await);
        assert!(!auth.admits(&headers("Basic !!!")).await);
        // A password with a colon: only the first one separates the user.
        let hash = bcrypt::hash_with_salt("a:b", 4, [2; 16])
            .unwrap()
            .to_string();
        let colon = BasicAuth::new(BTreeMap::from([("carol".to_owned(), hash)]));
        assert!(colon.admits(&basic("carol", "a:b")).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_verified_password_is_cached_and_a_wrong_one_is_not() {
        let auth = auth();
        assert!(auth.admits(&basic("alice", "right")).await);
        assert!(!auth.admits(&basic("alice", "wrong")).await);
        assert_eq!(auth.verified.lock().unwrap().len(), 1);
        // Served from the cache: the same answer.
        assert!(auth.admits(&basic("alice", "right")).await);
        assert_eq!(auth.verified.lock().unwrap().len(), 1);
    }

    #[test]
    fn cache_keys_do_not_collide_across_part_boundaries() {
        assert_ne!(cache_key("ab", "c", "h"), cache_key("a", "bc", "h"));
        assert_eq!(cache_key("a", "b", "h"), cache_key("a", "b", "h"));
    }
}
