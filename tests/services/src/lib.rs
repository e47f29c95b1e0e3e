//! Whether a test's outside service is there, decided in one place.
//!
//! Tests that need a server (PostgreSQL, Redis) or a local tool (a browser,
//! `initdb`, `mount`) ask here before they start:
//!
//! - [`reachable`] tells whether anything answers at a URL's host and port.
//!   Only "nothing answers" lets a test skip; once the server answers, any
//!   other error (a bad URL, refused credentials, TLS, a bug) is the test's
//!   failure, never a skip.
//! - [`skip`] records a skip: it writes a line `stent-skip: TEST: WHAT: WHY`
//!   straight to standard error (past the test harness's output capture, so
//!   it shows in every run and `.ci/run` counts the lines in its closing
//!   line) — or panics when `STENT_REQUIRE_SERVICES=1`, where a missing
//!   service is a failure.
//!
//! ```no_run
//! // At the start of a test that needs PostgreSQL:
//! let url = stent_test_services::pg_url();
//! if !stent_test_services::available("PostgreSQL", &url) {
//!     return; // skipped, and said so
//! }
//! // From here on, any error connecting is the test's failure.
//! ```

use std::io::Write;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The environment variable that makes every missing service a failure.
pub const REQUIRE_VAR: &str = "STENT_REQUIRE_SERVICES";

/// The prefix of the line [`skip`] writes.
pub const SKIP_MARK: &str = "stent-skip:";

/// How long [`reachable`] waits for each address to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// True when `STENT_REQUIRE_SERVICES=1`: no test may skip.
pub fn required() -> bool {
    std::env::var(REQUIRE_VAR).as_deref() == Ok("1")
}

/// The PostgreSQL server the tests use: `STENT_TEST_PG_URL`, by default
/// `postgres://postgres@127.0.0.1:5432/test`.
pub fn pg_url() -> String {
    std::env::var("STENT_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The Redis server the tests use: `STENT_TEST_REDIS_URL`, by default
/// `redis://127.0.0.1:6379`.
pub fn redis_url() -> String {
    std::env::var("STENT_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The host and port a `scheme://[user[:password]@]host[:port][/…][?…]` URL
/// points at (the scheme's default port when it names none), or `None`
/// when the URL names no TCP host (a Unix socket, an unknown scheme
/// without a port).
///
/// ```
/// use stent_test_services::host_port;
/// assert_eq!(host_port("postgres://u:p@db.local:6543/x?sslmode=disable"), Some(("db.local".into(), 6543)));
/// assert_eq!(host_port("postgres://postgres@127.0.0.1/test"), Some(("127.0.0.1".into(), 5432)));
/// assert_eq!(host_port("redis://127.0.0.1"), Some(("127.0.0.1".into(), 6379)));
/// assert_eq!(host_port("postgres://[::1]:5433/test"), Some(("::1".into(), 5433)));
/// assert_eq!(host_port("postgres:///test?host=/run/postgresql"), None);
/// ```
pub fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.is_empty() {
        return None;
    }
    let default_port = match scheme {
        "postgres" | "postgresql" => Some(5432),
        "redis" | "rediss" => Some(6379),
        "http" => Some(80),
        _ => None,
    };
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        let port = after.strip_prefix(':').map(str::parse).transpose().ok()?;
        (host.to_string(), port)
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port.parse().ok()?)),
            None => (host_port.to_string(), None),
        }
    };
    Some((host, port.or(default_port)?))
}

/// Whether anything accepts a TCP connection at `url`'s host and port.
/// A URL that names no TCP host counts as reachable: the client connecting
/// to it then decides, and its errors fail the test.
pub fn reachable(url: &str) -> bool {
    let Some((host, port)) = host_port(url) else {
        return true;
    };
    let Ok(addrs) = (host.as_str(), port).to_socket_addrs() else {
        return false;
    };
    let addrs: Vec<SocketAddr> = addrs.collect();
    addrs
        .iter()
        .any(|addr| TcpStream::connect_timeout(addr, CONNECT_TIMEOUT).is_ok())
}

/// The running test's name (libtest names each test's thread after it).
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string()
}

/// Records that the running test skips because `what` (a service, a tool)
/// is missing, for `why`: writes `stent-skip: TEST: WHAT: WHY` to standard
/// error, uncaptured. Panics instead when `STENT_REQUIRE_SERVICES=1`.
pub fn skip(what: &str, why: &str) {
    let test = test_name();
    if required() {
        panic!("{test}: {what} is required ({REQUIRE_VAR}=1): {why}");
    }
    let line = format!("{SKIP_MARK} {test}: {what}: {why}\n");
    // Straight to the stream: the harness captures `eprintln!` of passing
    // tests, and a skip must be seen.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// For a test that needs the server at `url` (`what` names it): true when
/// it answers; otherwise records the skip (or panics when required) and
/// returns false.
pub fn available(what: &str, url: &str) -> bool {
    if reachable(url) {
        return true;
    }
    skip(what, &format!("nothing answers at {url}"));
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_port_is_unreachable_and_an_open_one_reachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(reachable(&format!("postgres://x@127.0.0.1:{port}/db")));
        drop(listener);
        assert!(!reachable(&format!("redis://127.0.0.1:{port}")));
        assert!(!reachable("postgres://u@no-such-host.invalid:5432/db"));
    }

    #[test]
    fn a_skip_fails_the_test_exactly_when_services_are_required() {
        let skipped = std::panic::catch_unwind(|| skip("a service", "a test of the skip"));
        assert_eq!(skipped.is_err(), required());
    }

    #[test]
    fn urls_without_a_tcp_host_are_left_to_the_client() {
        assert!(reachable("postgres:///test?host=/var/run/postgresql"));
        assert_eq!(host_port("postgres://h:notaport/db"), None);
        assert_eq!(host_port("mystery://host/x"), None);
    }
}
