//! Executor entries beyond serde: which protocols there are, which hosts
//! studio may contact, and how long an LLM's replies may be.
//!
//! The host rule: a loopback host (an IP in 127.0.0.0/8, `::1`, or the name
//! `localhost`) is always allowed; any other host only when its executor says
//! `remote_host: true` (a GPU machine on the LAN). The loader enforces it
//! ([`check_url`], with a located diagnostic), and so does every HTTP client
//! built for an executor ([`crate::exec::http::executor_http`]), which
//! also never follows a redirect.

use std::ops::RangeInclusive;

use url::{Host, Url};

use super::diag::{Collector, ProjectError, SourceFile};
use super::raw::RawExecutor;
use crate::engines::ServiceKind;

/// An executor `kind:` that is not a protocol studio speaks: the old names
/// (`openai`, `tts`) get the protocol to write instead.
pub fn unknown_kind(file: &SourceFile, e: &RawExecutor) -> ProjectError {
    let kind = e.kind.value.as_str();
    let (message, help) = match kind {
        "openai" => (
            "executor kind `openai` is now `openai_chat`".to_string(),
            "write `kind: openai_chat` (OpenAI-compatible /v1/chat/completions: llama.cpp's llama-server, vLLM, LM \
             Studio); executor kinds are wire protocols"
                .to_string(),
        ),
        "tts" => (
            "executor kind `tts` was split by wire protocol".to_string(),
            "write the protocol of the server at this executor's url: `openai_speech` (OpenAI-compatible \
             /v1/audio/speech: Kokoro-FastAPI, openedai-speech, edge-tts servers), `gpt_sovits` (GPT-SoVITS's API), \
             `xtts` (an XTTS v2 server) or `rvc` (RVC voice conversion); one executor per server"
                .to_string(),
        ),
        _ => {
            let kinds: Vec<_> = ServiceKind::ALL.iter().map(|k| k.as_str()).collect();
            (
                format!("unknown executor kind `{kind}`"),
                format!("executor kinds (wire protocols): {}", kinds.join(", ")),
            )
        }
    };
    ProjectError::at(file, "executor::kind", message)
        .label_loc(file, &e.kind.referenced, "here")
        .help(help)
}

/// Why studio will not contact an executor's URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("`{url}` is not a URL ({reason})")]
    Invalid { url: String, reason: String },
    #[error("`{url}` is not an http:// or https:// URL")]
    Scheme { url: String },
    #[error(
        "{url} is on another host, {host}: studio contacts only loopback hosts (127.0.0.0/8, ::1, localhost) \
         unless the executor says `remote_host: true`"
    )]
    Remote { url: String, host: String },
}

/// Whether `host` is this machine: 127.0.0.0/8, `::1` (or `::ffff:127.x.y.z`),
/// or exactly `localhost`.
pub fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// `url`, parsed, when studio may contact it: http(s), and a loopback host
/// unless `remote_host`. The parse is the one the HTTP client uses (reqwest
/// takes a `url::Url`), so `127.1`, `2130706433` or `user@host` forms are
/// judged by the host that would really be contacted.
pub fn check_url(url: &str, remote_host: bool) -> Result<Url, UrlError> {
    let parsed = Url::parse(url).map_err(|e| UrlError::Invalid {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(UrlError::Scheme { url: url.to_string() });
    }
    let Some(host) = parsed.host() else {
        return Err(UrlError::Invalid {
            url: url.to_string(),
            reason: "no host".into(),
        });
    };
    if remote_host || is_loopback(&host) {
        Ok(parsed)
    } else {
        Err(UrlError::Remote {
            url: url.to_string(),
            host: host.to_string(),
        })
    }
}

/// The executor's `url:` against the host rule; a problem is pushed to
/// `errors`, located at the `url:` value. An absent or empty URL names no
/// service and is left to whatever needs one.
pub fn url_rule(file: &SourceFile, e: &RawExecutor, errors: &mut Collector) {
    let url = e.url.value.trim();
    if url.is_empty() {
        return;
    }
    let id = &e.id.value;
    let error = match check_url(url, e.remote_host) {
        Ok(_) => return,
        Err(UrlError::Remote { host, .. }) => ProjectError::at(
            file,
            "executor::remote_host",
            format!("executor `{id}` is on another host: {host} is not loopback"),
        )
        .label_loc(file, &e.url.referenced, "not a loopback host")
        .help(format!(
            "studio contacts only loopback hosts (127.0.0.0/8, ::1, localhost) unless told otherwise, because it \
             sends executors the project's text; if {host} is a machine you trust (a GPU box on your LAN), add \
             `remote_host: true` to executor `{id}`; else use a loopback URL such as http://127.0.0.1:PORT"
        )),
        Err(other) => ProjectError::at(file, "executor::url", format!("executor `{id}`: {other}"))
            .label_loc(file, &e.url.referenced, "here")
            .help("write the service's address as http://HOST:PORT, e.g. `url: http://127.0.0.1:8188`"),
    };
    errors.push(error);
}

/// The values `max_tokens:` may take. Below 64 no reply of any call fits
/// (one shot's dialogue is ~40 tokens of JSON); above 131072 (the largest
/// output window of current models) it bounds nothing.
pub const MAX_TOKENS: RangeInclusive<i64> = 64..=131_072;

/// The executor's `max_tokens:`, in range and on an LLM executor; `None`
/// when absent (each call's default) or wrong (pushed to `errors`).
pub fn max_tokens(file: &SourceFile, e: &RawExecutor, is_llm: bool, errors: &mut Collector) -> Option<u32> {
    let v = e.max_tokens.as_ref()?;
    let problem = if !is_llm {
        format!(
            "`max_tokens` bounds LLM replies, and executor `{}` is `{}`",
            e.id.value, e.kind.value
        )
    } else if !MAX_TOKENS.contains(&v.value) {
        format!(
            "`max_tokens` {} is outside {}–{}",
            v.value,
            MAX_TOKENS.start(),
            MAX_TOKENS.end()
        )
    } else {
        return u32::try_from(v.value).ok();
    };
    let defaults: Vec<String> = super::model::WriteStage::ALL
        .iter()
        .map(|s| format!("{} {}", s.template(), s.default_max_tokens()))
        .collect();
    errors.push(
        ProjectError::at(file, "executor::max_tokens", problem)
            .label_loc(file, &v.referenced, "here")
            .help(format!(
                "`max_tokens` is the most tokens one reply of an `ollama` or `openai_chat` executor may have, e.g. \
                 `max_tokens: 8192`; without it each call has its own ({})",
                defaults.join(", ")
            )),
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_allowed_and_others_only_when_told() {
        for url in [
            "http://127.0.0.1:11434",
            "http://127.0.0.2:8188/",
            "http://127.255.255.254",
            "http://localhost:8080/v1",
            "http://LOCALHOST:8080",
            "http://[::1]:11434",
            "http://[::ffff:127.0.0.1]:11434",
            "https://127.1:8443",
            "http://2130706433:80",
        ] {
            assert!(check_url(url, false).is_ok(), "{url}");
        }
        for (url, host) in [
            ("http://10.1.2.3:11434", "10.1.2.3"),
            ("http://192.168.1.20:8188", "192.168.1.20"),
            ("http://0.0.0.0:8188", "0.0.0.0"),
            ("http://[::]:8188", "[::]"),
            ("http://gpu.lan:8188", "gpu.lan"),
            ("http://localhost.:8188", "localhost."),
            ("http://sub.localhost:8188", "sub.localhost"),
            ("http://127.0.0.1.nip.io:8188", "127.0.0.1.nip.io"),
            // The host is what follows `@`.
            ("http://127.0.0.1@10.0.0.1:8188", "10.0.0.1"),
            ("http://[::ffff:10.0.0.1]:8188", "[::ffff:a00:1]"),
        ] {
            match check_url(url, false) {
                Err(UrlError::Remote { host: h, .. }) => assert_eq!(h, host, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
            assert!(check_url(url, true).is_ok(), "{url} with remote_host");
        }
    }

    #[test]
    fn only_http_urls() {
        assert!(matches!(
            check_url("file:///etc/passwd", true),
            Err(UrlError::Scheme { .. })
        ));
        assert!(matches!(
            check_url("ftp://127.0.0.1/", false),
            Err(UrlError::Scheme { .. })
        ));
        assert!(matches!(
            check_url("127.0.0.1:8188", false),
            Err(UrlError::Invalid { .. } | UrlError::Scheme { .. })
        ));
        assert!(matches!(check_url("http://", false), Err(UrlError::Invalid { .. })));
    }
}
