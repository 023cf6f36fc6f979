//! Who may use the dashboard: every request passes [`check`].
//!
//! - Without a token (loopback only): the `Host` must name the bound
//!   loopback address (`127.0.0.1:PORT` or `localhost:PORT`), else 421; a
//!   page whose DNS name was rebound to 127.0.0.1 is refused.
//! - With a token: every request carries it, as `Authorization: Bearer T`,
//!   the `studio_token` cookie (set when the page is opened with `?token=T`,
//!   which then redirects to the page without it), or `?token=T`; else 401.
//! - A request that changes something is a POST (other methods but GET and
//!   HEAD get 405), and must come from the dashboard itself: `Sec-Fetch-Site:
//!   same-origin`, or an `Origin` equal to the page's own, else 403. A
//!   script that sends the token in `Authorization` needs neither.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The cookie that carries the token after the page was opened with it.
const COOKIE: &str = "studio_token";

pub struct Guard {
    /// The `Host` values that name the bound address (ignoring case);
    /// checked only without a token.
    hosts: Vec<String>,
    token: Option<String>,
}

impl Guard {
    pub fn new(addr: SocketAddr, token: Option<String>) -> Guard {
        let port = addr.port();
        Guard {
            hosts: vec![format!("127.0.0.1:{port}"), format!("localhost:{port}")],
            token,
        }
    }
}

/// Equal, in time that depends only on the lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn header(headers: &HeaderMap, name: impl axum::http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The token in the `Authorization: Bearer` header, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    header(headers, header::AUTHORIZATION)?.strip_prefix("Bearer ")
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

fn query_token(request: &Request) -> Option<String> {
    let query = request.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

/// `/` with the request's query but `token`.
fn page_without_token(request: &Request) -> String {
    let rest: Vec<(String, String)> = url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
        .filter(|(k, _)| k != "token")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if rest.is_empty() {
        return "/".to_string();
    }
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(rest)
        .finish();
    format!("/?{query}")
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], format!("{why}\n")).into_response()
}

/// Whether a POST comes from the dashboard's own page.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = header(headers, "sec-fetch-site") {
        return site == "same-origin";
    }
    match (header(headers, header::ORIGIN), header(headers, header::HOST)) {
        (Some(origin), Some(host)) => origin.eq_ignore_ascii_case(&format!("http://{host}")),
        _ => false,
    }
}

/// The middleware: refuse, or pass the request on.
pub async fn check(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let mut set_cookie = None;
    match &guard.token {
        None => {
            let host = header(headers, header::HOST).or_else(|| request.uri().authority().map(|a| a.as_str()));
            if !host.is_some_and(|h| guard.hosts.iter().any(|a| a.eq_ignore_ascii_case(h))) {
                return refuse(
                    StatusCode::MISDIRECTED_REQUEST,
                    &format!("studio answers only requests for http://{}/", guard.hosts[0]),
                );
            }
        }
        Some(token) => {
            let given = bearer(headers)
                .map(str::to_string)
                .or_else(|| cookie(headers).map(str::to_string));
            let from_query = query_token(&request);
            let ok = |t: &Option<String>| t.as_deref().is_some_and(|t| same(t.as_bytes(), token.as_bytes()));
            if ok(&from_query) {
                let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
                if request.method() == Method::GET && request.uri().path() == "/" {
                    // The page, once more without the token in its address
                    // (history, Referer): the cookie carries it from now on.
                    let back = page_without_token(&request);
                    return (
                        StatusCode::SEE_OTHER,
                        [(header::LOCATION, back), (header::SET_COOKIE, cookie)],
                    )
                        .into_response();
                }
                set_cookie = Some(cookie);
            } else if !ok(&given) {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "this studio needs its token: open the URL it printed (…/?token=…)",
                );
            }
        }
    }
    match *request.method() {
        Method::GET | Method::HEAD => {}
        Method::POST => {
            let scripted = guard.token.is_some() && bearer(headers).is_some();
            if !scripted && !same_origin(headers) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "changes are accepted only from the dashboard's own page (or with the token in Authorization)",
                );
            }
        }
        _ => return refuse(StatusCode::METHOD_NOT_ALLOWED, "only GET, HEAD and POST"),
    }
    let mut response = next.run(request).await;
    if let Some(c) = set_cookie
        && let Ok(v) = c.parse()
    {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_compares_whole_values() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(!same(b"", b"a"));
    }

    #[test]
    fn same_origin_wants_the_fetch_site_or_a_matching_origin() {
        let h = |pairs: &[(&'static str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, v.parse().unwrap());
            }
            m
        };
        assert!(same_origin(&h(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&h(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "http://a:1"),
            ("host", "a:1")
        ])));
        assert!(same_origin(&h(&[
            ("origin", "http://127.0.0.1:5"),
            ("host", "127.0.0.1:5")
        ])));
        assert!(!same_origin(&h(&[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:5")
        ])));
        assert!(!same_origin(&h(&[("host", "127.0.0.1:5")])));
    }
}
