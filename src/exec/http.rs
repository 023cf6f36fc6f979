//! The one HTTP layer every service executor goes through (the LLM writers,
//! Jellyfin, and the media services to come).
//!
//! [`Service`] is an executor's client: its `timeout` and
//! `connect_timeout`, no proxy, no redirects, and the host rule checked
//! again on every URL it is asked to contact
//! ([`crate::project::executor::check_url`]). Failures are [`HttpError`]s
//! that say whether another try may help ([`HttpError::transient`]: refused
//! or reset connections, timeouts, HTTP 5xx and 429); [`ServiceError`] adds
//! the executor's id and its `studio.yaml` line. Retries use [`backoff`]
//! (backon's exponential backoff with jitter), and host availability is the
//! scheduler's business (`sched::hosts`): a job whose host failed
//! transiently is put back in the queue for another host of its group.

use std::time::{Duration, Instant};

use backon::ExponentialBuilder;

use super::ExecError;
use crate::project::executor::check_url;
use crate::project::model::Executor;

/// A request that got no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url} did not answer within {seconds} s (the executor's `timeout`)")]
    Timeout { url: String, seconds: f64 },
    #[error("{url} answered HTTP {status}: {body}")]
    Status { url: String, status: u16, body: String },
    /// The answer is not what the protocol says it should be.
    #[error("{url}: {reason}")]
    Protocol { url: String, reason: String },
    #[error("{url} {reason}")]
    Redirect { url: String, reason: String },
    /// The executor's entry cannot be used as it is.
    #[error("{0}")]
    Config(String),
}

impl HttpError {
    /// Worth another try (on this host later, or on another host now):
    /// refused connections, timeouts, 5xx and 429.
    pub fn transient(&self) -> bool {
        match self {
            HttpError::Connect { .. } | HttpError::Timeout { .. } => true,
            HttpError::Status { status, .. } => *status >= 500 || *status == 429,
            HttpError::Protocol { .. } | HttpError::Redirect { .. } | HttpError::Config(_) => false,
        }
    }
}

/// An [`HttpError`] of one executor, named with its line in studio.yaml.
#[derive(Debug, Clone, thiserror::Error)]
#[error("executor `{executor}` (studio.yaml:{line}): {error}")]
pub struct ServiceError {
    pub executor: String,
    pub line: usize,
    pub error: HttpError,
}

impl ServiceError {
    pub fn new(e: &Executor, error: HttpError) -> ServiceError {
        ServiceError {
            executor: e.id.clone(),
            line: e.line,
            error,
        }
    }
}

impl From<ServiceError> for ExecError {
    fn from(e: ServiceError) -> ExecError {
        if e.error.transient() {
            ExecError::Transient(e.to_string())
        } else {
            ExecError::Permanent(e.to_string())
        }
    }
}

/// A redirect studio refused to follow.
#[derive(Debug, thiserror::Error)]
#[error("answered with a redirect to {to}, and studio does not follow an executor's redirects")]
struct RedirectRefused {
    to: String,
}

/// An HTTP client for an executor: its timeouts, no proxy (the traffic
/// goes to the host the rule allowed, or nowhere), and no redirects: a 3xx
/// fails the request naming where it pointed, so a server cannot move a
/// request, prompts or tokens to another host. Check the URL with
/// [`check_url`] before sending anything with it ([`Service`] does).
pub fn executor_http(connect_timeout: Duration, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let to = attempt.url().to_string();
            attempt.error(RedirectRefused { to })
        }))
        .build()
}

/// Seconds as a `Duration`, clamped to what a `Duration` holds (the loader
/// bounds every timeout; this only keeps a bad value from panicking).
pub fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)
}

/// Exponential backoff with jitter for `retries` more tries, the first
/// after `first` to twice that, doubling, at most a minute.
pub fn backoff(first: Duration, retries: usize) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(first)
        .with_factor(2.0)
        .with_max_delay(Duration::from_secs(60).max(first))
        .with_max_times(retries)
        .with_jitter()
}

/// What a server answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: bytes::Bytes,
    /// Seconds from sending to the last byte.
    pub seconds: f64,
}

/// An executor's HTTP client.
#[derive(Debug, Clone)]
pub struct Service {
    http: reqwest::Client,
    /// The executor's id.
    pub executor: String,
    /// Its line in studio.yaml.
    pub line: usize,
    /// Its `url:`, without a trailing `/`.
    pub base: String,
    remote_host: bool,
    timeout: f64,
    connect_timeout: f64,
}

impl Service {
    /// The client for executor `e`, with its own timeouts.
    pub fn new(e: &Executor) -> Result<Service, HttpError> {
        Self::with_timeout(e, e.timeout)
    }

    /// The client for executor `e`, whole requests bounded by `timeout` seconds.
    pub fn with_timeout(e: &Executor, timeout: f64) -> Result<Service, HttpError> {
        // Defence in depth: the loader already refused such a URL.
        check_url(&e.url, e.remote_host).map_err(|err| HttpError::Config(format!("executor `{}`: {err}", e.id)))?;
        let http = executor_http(seconds(e.connect_timeout), seconds(timeout))
            .map_err(|err| HttpError::Config(format!("HTTP client: {err}")))?;
        Ok(Service {
            http,
            executor: e.id.clone(),
            line: e.line,
            base: e.url.trim_end_matches('/').to_string(),
            remote_host: e.remote_host,
            timeout,
            connect_timeout: e.connect_timeout,
        })
    }

    /// An error of this executor, with its id and studio.yaml line.
    pub fn error(&self, error: HttpError) -> ServiceError {
        ServiceError {
            executor: self.executor.clone(),
            line: self.line,
            error,
        }
    }

    /// `base` + `path`, checked against the host rule.
    pub fn url(&self, path: &str) -> Result<String, HttpError> {
        let url = format!("{}{path}", self.base);
        check_url(&url, self.remote_host)
            .map_err(|err| HttpError::Config(format!("executor `{}`: {err}", self.executor)))?;
        Ok(url)
    }

    /// A POST to `url` (from [`Service::url`]).
    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.http.post(url)
    }

    /// POST `body` as JSON to `url` (from [`Service::url`]), with the
    /// executor's API key, if it has one, as `Authorization: Bearer`, and
    /// read the whole answer.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
        api_key: Option<&str>,
    ) -> Result<Answer, HttpError> {
        let body = serde_json::to_vec(body).expect("JSON serializes");
        let mut request = self.post(url).header("Content-Type", "application/json").body(body);
        if let Some(key) = api_key {
            request = request.bearer_auth(key);
        }
        self.send(url, request).await
    }

    /// A GET of `url` (from [`Service::url`]).
    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.http.get(url)
    }

    /// The executor's `connect_timeout`, in seconds.
    pub fn connect_timeout(&self) -> f64 {
        self.connect_timeout
    }

    /// The executor's whole-request `timeout`, in seconds.
    pub fn timeout(&self) -> f64 {
        self.timeout
    }

    /// Send `request` (to `url`) and read the whole answer.
    pub async fn send(&self, url: &str, request: reqwest::RequestBuilder) -> Result<Answer, HttpError> {
        let started = Instant::now();
        let response = request.send().await.map_err(|e| self.transport(url, e))?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| self.transport(url, e))?;
        Ok(Answer {
            status,
            body,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// [`Service::send`], reading at most `max` bytes of the body: a
    /// longer answer (by its `Content-Length` or as it streams) is a
    /// protocol error, and nothing past `max` is held.
    pub async fn send_limited(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
        max: usize,
    ) -> Result<Answer, HttpError> {
        let started = Instant::now();
        let too_big = || HttpError::Protocol {
            url: url.to_string(),
            reason: format!("answered more than {max} bytes"),
        };
        let mut response = request.send().await.map_err(|e| self.transport(url, e))?;
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(too_big());
        }
        let status = response.status().as_u16();
        let mut body = bytes::BytesMut::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(url, e))? {
            if body.len() + chunk.len() > max {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            body: body.freeze(),
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// An answer that is not 2xx, as an error quoting the start of its body.
    pub fn check_status(&self, url: &str, answer: &Answer) -> Result<(), HttpError> {
        if (200..300).contains(&answer.status) {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&answer.body);
        Err(HttpError::Status {
            url: url.to_string(),
            status: answer.status,
            body: excerpt(text.trim(), 300),
        })
    }

    /// Classify a reqwest error.
    pub fn transport(&self, url: &str, e: reqwest::Error) -> HttpError {
        let url = url.to_string();
        if e.is_timeout() {
            HttpError::Timeout {
                url,
                seconds: self.timeout,
            }
        } else if e.is_redirect() {
            HttpError::Redirect {
                url,
                reason: root_cause(&e),
            }
        } else if e.is_connect() || e.is_request() {
            // `is_request`: the connection broke while sending (a server
            // that went away mid-request: "connection closed before message
            // completed"), as transient as a refused one.
            HttpError::Connect {
                url,
                reason: root_cause(&e),
            }
        } else {
            HttpError::Protocol {
                url,
                reason: root_cause(&e),
            }
        }
    }
}

/// Whether `service`'s host accepts a TCP connection, within its
/// executor's `connect_timeout`: what the sim executor checks
/// (`check_hosts`) before a job on it. Only loopback hosts are contacted;
/// any other counts as up, unchecked. Refused or timed out: a transient
/// error of the host.
pub async fn probe(service: &Service) -> Result<(), ServiceError> {
    let url = check_url(&service.base, service.remote_host)
        .map_err(|err| service.error(HttpError::Config(format!("executor `{}`: {err}", service.executor))))?;
    let Some(host) = url.host() else {
        return Ok(());
    };
    if !crate::project::executor::is_loopback(&host) {
        return Ok(());
    }
    let port = url.port_or_known_default().unwrap_or(80);
    let addr = match &host {
        url::Host::Domain(d) => format!("{d}:{port}"),
        url::Host::Ipv4(ip) => format!("{ip}:{port}"),
        url::Host::Ipv6(ip) => format!("[{ip}]:{port}"),
    };
    let connect = tokio::net::TcpStream::connect(&addr);
    let reason = match tokio::time::timeout(seconds(service.connect_timeout), connect).await {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(err)) => err.to_string(),
        Err(_) => format!(
            "no connection within {} s (the executor's `connect_timeout`)",
            service.connect_timeout
        ),
    };
    Err(service.error(HttpError::Connect {
        url: service.base.clone(),
        reason,
    }))
}

/// The innermost cause ("Connection refused (os error 111)").
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// At most `max` bytes of `text`, cut at a character boundary.
pub fn excerpt(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engines::ServiceKind;

    /// An executor of the comfyui protocol at `url`, for tests.
    pub(crate) fn executor(url: &str, remote_host: bool) -> Executor {
        Executor {
            id: "svc".into(),
            kind: ServiceKind::Comfyui,
            group: "comfyui".into(),
            line: 42,
            url: url.into(),
            remote_host,
            max_tokens: None,
            slots: 1,
            model: None,
            token_env: None,
            api_key_env: None,
            timeout: 5.0,
            connect_timeout: 1.0,
        }
    }

    #[test]
    fn transient_errors() {
        let status = |status| HttpError::Status {
            url: String::new(),
            status,
            body: String::new(),
        };
        assert!(status(500).transient());
        assert!(status(503).transient());
        assert!(status(429).transient());
        assert!(!status(400).transient());
        assert!(!status(404).transient());
        let connect = HttpError::Connect {
            url: "u".into(),
            reason: "refused".into(),
        };
        assert!(connect.transient());
        assert!(!HttpError::Config("x".into()).transient());
    }

    #[test]
    fn service_errors_name_the_executor_line_and_keep_their_class() {
        let e = executor("http://127.0.0.1:1", false);
        let refused = ServiceError::new(
            &e,
            HttpError::Connect {
                url: e.url.clone(),
                reason: "Connection refused".into(),
            },
        );
        assert_eq!(
            refused.to_string(),
            "executor `svc` (studio.yaml:42): cannot connect to http://127.0.0.1:1: Connection refused"
        );
        assert!(matches!(ExecError::from(refused), ExecError::Transient(m) if m.contains("studio.yaml:42")));
        let not_found = ServiceError::new(
            &e,
            HttpError::Status {
                url: e.url.clone(),
                status: 404,
                body: String::new(),
            },
        );
        assert!(matches!(ExecError::from(not_found), ExecError::Permanent(_)));
    }

    #[test]
    fn the_client_refuses_a_host_its_executor_did_not_allow() {
        let err = Service::new(&executor("http://10.1.2.3:8188", false)).unwrap_err();
        let HttpError::Config(msg) = &err else {
            panic!("{err:?}")
        };
        assert!(msg.contains("10.1.2.3") && msg.contains("remote_host: true"), "{msg}");
        assert!(!err.transient());
        let s = Service::new(&executor("http://127.0.0.1:8188/", false)).unwrap();
        assert_eq!(s.url("/prompt").unwrap(), "http://127.0.0.1:8188/prompt");
        // A path cannot move the request to another host.
        assert!(s.url("@10.0.0.1/x").is_err());
        assert!(Service::new(&executor("file:///etc/passwd", true)).is_err());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_stops() {
        let delays: Vec<Duration> = backon::BackoffBuilder::build(backoff(Duration::from_millis(100), 3)).collect();
        assert_eq!(delays.len(), 3);
        for (i, d) in delays.iter().enumerate() {
            let base = Duration::from_millis(100 << i);
            assert!(*d >= base && *d <= base * 2, "{i}: {d:?}");
        }
    }

    #[tokio::test]
    async fn probe_tells_a_listening_host_from_a_closed_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let up = Service::new(&executor(&format!("http://{}", listener.local_addr().unwrap()), false)).unwrap();
        probe(&up).await.unwrap();
        drop(listener);
        let err = probe(&up).await.unwrap_err();
        assert!(err.error.transient(), "{err}");
        assert!(err.to_string().contains("cannot connect to"), "{err}");
        // Another host is never contacted: it counts as up, unchecked.
        let far = Service::new(&executor("http://10.255.255.1:9", true)).unwrap();
        probe(&far).await.unwrap();
    }

    #[test]
    fn excerpts_cut_at_characters() {
        assert_eq!(excerpt("abc", 5), "abc");
        assert_eq!(excerpt("ありがとう", 4), "あ…");
    }
}
