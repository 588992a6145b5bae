//! `[http]`: the dashboard, the JSON API and `/metrics`.
//!
//! Users (argon2 password hashes) and API tokens live in files that this
//! section names; like the rest of `config`, nothing here reads them. A listen
//! address other than loopback is refused unless at least one of them is set,
//! because every write (acknowledging an alarm, linking a report) must be made
//! by someone the gateway can name in its audit log.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Problems, duration, format_duration};

mod defaults {
    pub const LISTEN: &str = "127.0.0.1:8080";
    pub const SESSION_TTL: &str = "12h";
    pub const LOGIN_ATTEMPTS: i64 = 5;
    pub const LOGIN_WINDOW: &str = "15m";
    pub const REFRESH: &str = "60s";
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http {
    /// Where the dashboard, API and metrics are served.
    pub listen: SocketAddr,
    /// `users_file`: one `name:argon2-PHC-hash` per line, written by
    /// `studywatch user add NAME`. `None`: nobody can sign in.
    pub users_file: Option<PathBuf>,
    /// `tokens_file`: one `name:sha256-hex-of-token` per line, written by
    /// `studywatch user token NAME`. `None`: no bearer tokens.
    pub tokens_file: Option<PathBuf>,
    /// How long a sign-in lasts without activity.
    pub session_ttl: Duration,
    /// Mark cookies `Secure`: set when a TLS proxy serves the dashboard.
    pub behind_tls: bool,
    /// Whether pages and read-only API calls need a signed-in user. Off by
    /// default on loopback; on by default on any other address.
    pub read_requires_sign_in: bool,
    /// Failed sign-ins allowed per user name and client address within
    /// `login_window` before further attempts are refused.
    pub login_attempts: u32,
    pub login_window: Duration,
    /// How often dashboard pages reload themselves.
    pub refresh: Duration,
}

impl Http {
    /// Whether anyone could ever make a write: a users or tokens file is set.
    pub fn auth_configured(&self) -> bool {
        self.users_file.is_some() || self.tokens_file.is_some()
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileHttp {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    users_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    behind_tls: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    read_requires_sign_in: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    login_attempts: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    login_window: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh: Option<String>,
}

fn optional_path(key: &str, value: Option<&str>, problems: &mut Problems) -> Option<PathBuf> {
    let text = value?;
    if text.trim().is_empty() {
        problems.push(key, "must not be empty (leave the key out instead)");
    } else if text.contains('\0') {
        problems.push(key, "must not contain a NUL character");
    }
    Some(PathBuf::from(text))
}

pub(super) fn validate(file: &FileHttp, problems: &mut Problems) -> Http {
    let listen_text = file.listen.as_deref().unwrap_or(defaults::LISTEN);
    let listen = listen_text.parse().unwrap_or_else(|_| {
        problems.push(
            "http.listen",
            format!("`{listen_text}` is not an address and port such as \"127.0.0.1:8080\""),
        );
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });
    let users_file = optional_path("http.users_file", file.users_file.as_deref(), problems);
    let tokens_file = optional_path("http.tokens_file", file.tokens_file.as_deref(), problems);
    let loopback = listen.ip().is_loopback();
    if !loopback && users_file.is_none() && tokens_file.is_none() {
        problems.push(
            "http.listen",
            format!(
                "{listen} is reachable from other machines, but no users_file or tokens_file \
                 is set, so nobody could be named for a write; create users with \
                 `studywatch user add NAME` and set http.users_file, or listen on 127.0.0.1"
            ),
        );
    }
    let login_attempts = file.login_attempts.unwrap_or(defaults::LOGIN_ATTEMPTS);
    if !(1..=1000).contains(&login_attempts) {
        problems.push("http.login_attempts", "must be between 1 and 1000");
    }
    let refresh = duration(
        "http.refresh",
        file.refresh.as_deref(),
        defaults::REFRESH,
        true,
        problems,
    );
    if refresh < Duration::from_secs(5) {
        problems.push("http.refresh", "must be at least 5s");
    }
    Http {
        listen,
        users_file,
        tokens_file,
        session_ttl: duration(
            "http.session_ttl",
            file.session_ttl.as_deref(),
            defaults::SESSION_TTL,
            true,
            problems,
        ),
        behind_tls: file.behind_tls.unwrap_or(false),
        read_requires_sign_in: file.read_requires_sign_in.unwrap_or(!loopback),
        login_attempts: u32::try_from(login_attempts).unwrap_or(5),
        login_window: duration(
            "http.login_window",
            file.login_window.as_deref(),
            defaults::LOGIN_WINDOW,
            true,
            problems,
        ),
        refresh,
    }
}

pub(super) fn to_file(h: &Http) -> FileHttp {
    FileHttp {
        listen: Some(h.listen.to_string()),
        users_file: h.users_file.as_ref().map(|p| p.display().to_string()),
        tokens_file: h.tokens_file.as_ref().map(|p| p.display().to_string()),
        session_ttl: Some(format_duration(h.session_ttl)),
        behind_tls: Some(h.behind_tls),
        read_requires_sign_in: Some(h.read_requires_sign_in),
        login_attempts: Some(i64::from(h.login_attempts)),
        login_window: Some(format_duration(h.login_window)),
        refresh: Some(format_duration(h.refresh)),
    }
}

pub(super) fn warnings(h: &Http, out: &mut Problems) {
    if !h.listen.ip().is_loopback() && !h.behind_tls {
        out.push(
            "http.behind_tls",
            "the dashboard is reachable from other machines without TLS: passwords and \
             session cookies cross the network in clear; serve it behind a TLS proxy \
             and set behind_tls = true",
        );
    }
    if !h.read_requires_sign_in && !h.listen.ip().is_loopback() {
        out.push(
            "http.read_requires_sign_in",
            "anyone who can reach the dashboard can read study identifiers without signing in",
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn problems(text: &str) -> Vec<(String, String)> {
        match Config::from_toml_str(text) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.into_iter().map(|p| (p.key, p.message)).collect(),
        }
    }

    #[test]
    fn defaults_listen_on_loopback_open_for_reading() {
        let c = Config::from_toml_str("version = 1").unwrap();
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:8080");
        assert!(!c.http.read_requires_sign_in);
        assert!(!c.http.auth_configured());
        assert_eq!(c.http.login_attempts, 5);
    }

    #[test]
    fn non_loopback_without_auth_is_refused() {
        let p = problems("version = 1\n[http]\nlisten = \"0.0.0.0:8080\"");
        assert!(
            p.iter()
                .any(|(k, m)| k == "http.listen" && m.contains("users_file")),
            "{p:?}"
        );
        let c = Config::from_toml_str(
            "version = 1\n[http]\nlisten = \"0.0.0.0:8080\"\nusers_file = \"/etc/studywatch/users\"",
        )
        .unwrap();
        assert!(c.http.read_requires_sign_in);
        assert!(c.warnings().iter().any(|w| w.key == "http.behind_tls"));
    }

    #[test]
    fn bad_values_name_their_keys() {
        let p = problems(
            "version = 1\n[http]\nlisten = \"nowhere\"\nlogin_attempts = 0\nrefresh = \"1s\"\nusers_file = \"\"",
        );
        for key in [
            "http.listen",
            "http.login_attempts",
            "http.refresh",
            "http.users_file",
        ] {
            assert!(p.iter().any(|(k, _)| k == key), "{key} missing in {p:?}");
        }
    }
}
