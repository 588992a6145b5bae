//! `GET /login` (the sign-in page), `POST /login` (sign in) and
//! `POST /logout` (sign out). Every sign-in, failed sign-in, refused
//! attempt and sign-out goes to the audit log under the user name tried,
//! with the client's address; the password never goes anywhere.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use jiff::Timestamp;
use maud::{DOCTYPE, Markup, html};

use super::limit::Window;
use super::{
    Actor, COOKIE, PASSWORD_MAX_BYTES, Verdict, Via, Viewer, check_password, cross_site,
    session_cookie, valid_name,
};
use crate::http::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", get(page).post(sign_in))
        .route("/logout", post(sign_out))
}

/// The longest `next` kept; anything longer goes to `/`.
const NEXT_MAX: usize = 2048;

/// Where to go after signing in: `next` if it is a path on this server
/// (one leading `/`, printable ASCII), otherwise `/`. `//host` and `/\host`
/// are refused because browsers take them for other servers.
pub(super) fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && n.len() <= NEXT_MAX
                && n.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            n
        }
        _ => "/",
    }
}

/// The name an attempt is audited and rate-limited under: the name typed
/// if it is a valid user name, otherwise it with every other character
/// turned into `?` (which no user name contains), at most 64 characters.
fn attempted_name(user: &str) -> String {
    if valid_name(user) {
        return user.to_owned();
    }
    if user.is_empty() {
        return "(none)".to_owned();
    }
    user.chars()
        .take(super::files::NAME_MAX)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-@".contains(c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn client_address(connect: Option<Extension<ConnectInfo<SocketAddr>>>) -> String {
    connect.map_or_else(
        || "unknown".to_owned(),
        |Extension(ConnectInfo(addr))| addr.ip().to_string(),
    )
}

/// The fields of a urlencoded form; unknown fields are ignored, and a body
/// that is not a form is a form with no fields.
#[derive(Default)]
struct Fields {
    user: String,
    password: String,
    next: Option<String>,
    csrf: Option<String>,
}

impl Fields {
    fn parse(body: &[u8]) -> Fields {
        let mut f = Fields::default();
        for (k, v) in url::form_urlencoded::parse(body) {
            match &*k {
                "user" => f.user = v.trim().to_owned(),
                "password" => f.password = v.into_owned(),
                "next" => f.next = Some(v.into_owned()),
                "csrf" => f.csrf = Some(v.into_owned()),
                _ => {}
            }
        }
        f
    }
}

/// What the sign-in page shows.
struct Page<'a> {
    status: StatusCode,
    user: &'a str,
    next: &'a str,
    message: Option<String>,
    signed_in: Option<(&'a str, &'a str)>,
}

impl Page<'_> {
    fn render(&self) -> Markup {
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { "Sign in · studywatch" }
                    link rel="stylesheet" href="/static/style.css";
                    // Enough layout for a phone even before the stylesheet loads.
                    style {
                        "main.sign-in{max-width:24rem;margin:2rem auto;padding:0 1rem}"
                        "main.sign-in label{display:block;margin-top:1rem}"
                        "main.sign-in input,main.sign-in button{box-sizing:border-box;width:100%;\
                         font-size:1rem;padding:.6rem;margin-top:.3rem}"
                        "main.sign-in button{margin-top:1.2rem}"
                    }
                }
                body {
                    main class="sign-in" {
                        h1 { "studywatch" }
                        @if let Some(message) = &self.message {
                            p class="error" role="alert" { (message) }
                        }
                        @if let Some((user, csrf)) = self.signed_in {
                            p { "You are signed in as " strong { (user) } "." }
                            form method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Sign out" }
                            }
                            p { a href=(self.next) { "Continue" } }
                        } @else {
                            form method="post" action="/login" {
                                input type="hidden" name="next" value=(self.next);
                                label for="user" { "User name" }
                                input id="user" name="user" type="text" value=(self.user)
                                    autocomplete="username" autocapitalize="none"
                                    autocorrect="off" spellcheck="false" required
                                    autofocus[self.user.is_empty()];
                                label for="password" { "Password" }
                                input id="password" name="password" type="password"
                                    autocomplete="current-password" required
                                    autofocus[!self.user.is_empty()];
                                button type="submit" { "Sign in" }
                            }
                        }
                    }
                }
            }
        }
    }
}

impl IntoResponse for Page<'_> {
    fn into_response(self) -> Response {
        (self.status, self.render()).into_response()
    }
}

async fn page(RawQuery(query): RawQuery, viewer: Viewer) -> Response {
    let next = query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "next")
            .map(|(_, v)| v.into_owned())
    });
    let next = safe_next(next.as_deref());
    let signed_in = match (&viewer.user, &viewer.csrf) {
        (Some(user), Some(csrf)) => Some((user.as_str(), csrf.as_str())),
        _ => None,
    };
    Page {
        status: StatusCode::OK,
        user: "",
        next,
        message: None,
        signed_in,
    }
    .into_response()
}

async fn sign_in(
    State(state): State<AppState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let client = client_address(connect);
    let form = Fields::parse(&body);
    let next = safe_next(form.next.as_deref());
    let retry = |status, message: String| Page {
        status,
        user: &form.user,
        next,
        message: Some(message),
        signed_in: None,
    };
    if let Some(why) = cross_site(&headers, &uri) {
        tracing::warn!(%client, "sign-in refused: {why}");
        return retry(StatusCode::FORBIDDEN, format!("Sign-in refused: {why}.")).into_response();
    }

    let http = &state.config.http;
    let name = attempted_name(&form.user);
    let window = Window {
        attempts: http.login_attempts,
        length: http.login_window,
    };
    let now = state.now();
    if let Some(until) = state
        .auth
        .limiter
        .refused_until(&name, &client, now, window)
    {
        let when = until
            .to_zoned(state.config.site.timezone.clone())
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string();
        tracing::warn!(user = %name, %client, "sign-in refused: too many failed attempts");
        audit(
            &state,
            &name,
            "sign_in_refused",
            format!("from {client}: too many failed sign-ins, refused until {until}"),
        )
        .await;
        let mut response = retry(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many failed sign-ins for this user name from your address. \
                 Try again after {when}."
            ),
        )
        .into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(seconds_until(now, until)),
        );
        return response;
    }

    // A name that cannot exist, or a password nobody could have, is not
    // worth hashing; that says nothing about which names exist.
    let plausible = valid_name(&form.user)
        && !form.password.is_empty()
        && form.password.len() <= PASSWORD_MAX_BYTES;
    let verdict = if plausible {
        check_password(&state, &form.user, form.password.clone()).await
    } else if state.auth.user_exists(&form.user) {
        Verdict::WrongPassword
    } else {
        Verdict::UnknownUser
    };
    if verdict != Verdict::Match {
        state.auth.limiter.failed(&name, &client, now, window);
        let why = match verdict {
            Verdict::UnknownUser => "no such user",
            _ => "wrong password",
        };
        tracing::warn!(user = %name, %client, "sign-in failed: {why}");
        audit(
            &state,
            &name,
            "sign_in_failed",
            format!("from {client}: {why}"),
        )
        .await;
        return retry(
            StatusCode::UNAUTHORIZED,
            "Wrong user name or password.".to_owned(),
        )
        .into_response();
    }

    // The audit row first: a sign-in the log cannot name does not happen.
    let audited = state
        .catalog
        .call_grouped({
            let (user, detail) = (form.user.clone(), format!("from {client}"));
            move |s| s.append_audit_at(now, &user, "signed_in", None, &detail)
        })
        .await;
    if let Err(e) = audited {
        return ApiError::internal("the sign-in could not be recorded in the audit log", e)
            .into_response();
    }
    state.auth.limiter.succeeded(&name, &client);
    // A new session every time: a cookie planted before signing in is
    // worth nothing after.
    if let Some(old) = session_cookie(&headers) {
        state.auth.sessions.end(old);
    }
    let started = state.auth.sessions.start(&form.user, now, http.session_ttl);
    let (id, _) = match started {
        Ok(s) => s,
        Err(e) => return ApiError::internal("no session could be started", e).into_response(),
    };
    tracing::info!(user = %form.user, %client, "signed in");
    let cookie = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict{}",
        if http.behind_tls { "; Secure" } else { "" }
    );
    redirect_with_cookie(next, &cookie)
}

async fn sign_out(
    State(state): State<AppState>,
    actor: Option<Actor>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let secure = if state.config.http.behind_tls {
        "; Secure"
    } else {
        ""
    };
    let clear = format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}");
    if let Some(actor) = actor.filter(|a| a.via == Via::Session) {
        let header = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let submitted = header.or_else(|| Fields::parse(&body).csrf);
        actor.check_csrf(submitted.as_deref())?;
        if let Some(id) = session_cookie(&headers) {
            state.auth.sessions.end(id);
        }
        let client = client_address(connect);
        tracing::info!(user = %actor.name, %client, "signed out");
        audit(&state, &actor.name, "signed_out", format!("from {client}")).await;
    }
    Ok(redirect_with_cookie("/", &clear))
}

fn redirect_with_cookie(to: &str, cookie: &str) -> Response {
    let mut response = Redirect::to(to).into_response();
    match HeaderValue::from_str(cookie) {
        Ok(v) => {
            response.headers_mut().insert(header::SET_COOKIE, v);
            response
        }
        Err(e) => ApiError::internal("the session cookie could not be set", e).into_response(),
    }
}

/// Whole seconds from `now` to `until`, at least 1 (for Retry-After).
fn seconds_until(now: Timestamp, until: Timestamp) -> u64 {
    let d = until.duration_since(now);
    let secs = Duration::try_from(d).map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0));
    secs.max(1)
}

/// Appends an audit row; a failure is logged, not shown to the client
/// (whose attempt has been answered either way). Grouped with other
/// commits, so that a flood of refused sign-ins costs the catalog no fsync
/// of its own per attempt.
async fn audit(state: &AppState, actor: &str, action: &'static str, detail: String) {
    let (at, actor) = (state.now(), actor.to_owned());
    let written = state
        .catalog
        .call_grouped(move |s| s.append_audit_at(at, &actor, action, None, &detail))
        .await;
    if let Err(e) = written {
        tracing::error!(error = %e, action, "an audit row could not be written");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_must_stay_on_this_server() {
        for ok in ["/", "/alarms?state=open", "/studies/1.2.3#x", "/login"] {
            assert_eq!(safe_next(Some(ok)), ok);
        }
        let long = format!("/{}", "a".repeat(NEXT_MAX));
        for bad in [
            "//evil.example",
            "//evil.example/path",
            "/\\evil.example",
            "https://evil.example/",
            "evil.example",
            "",
            " /x",
            "/a b",
            "/\u{e9}",
            "/x\r\nSet-Cookie: a=b",
            long.as_str(),
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn attempted_names_are_safe_to_record() {
        assert_eq!(attempted_name("alice"), "alice");
        assert_eq!(attempted_name(""), "(none)");
        assert_eq!(attempted_name("al ice\n"), "al?ice?");
        assert_eq!(attempted_name(&"é".repeat(100)).chars().count(), 64);
    }

    #[test]
    fn forms_are_read_leniently() {
        let f = Fields::parse(b"user=+alice+&password=a%26b+c&next=%2Fx&csrf=t&extra=1");
        assert_eq!(
            (
                f.user.as_str(),
                f.password.as_str(),
                f.next.as_deref(),
                f.csrf.as_deref()
            ),
            ("alice", "a&b c", Some("/x"), Some("t"))
        );
        let f = Fields::parse(b"\xff\xfe{not a form");
        assert!(f.user.is_empty() && f.password.is_empty());
    }

    #[test]
    fn retry_after_rounds_up() {
        let now: Timestamp = "2026-11-23T10:00:00Z".parse().unwrap();
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        assert_eq!(seconds_until(now, t("2026-11-23T10:00:10.2Z")), 11);
        assert_eq!(seconds_until(now, t("2026-11-23T10:00:00Z")), 1);
        assert_eq!(seconds_until(now, t("2026-11-23T09:00:00Z")), 1);
    }

    #[test]
    fn the_page_works_on_a_phone_and_keeps_next() {
        let p = Page {
            status: StatusCode::OK,
            user: "al\"ice",
            next: "/alarms",
            message: Some("Wrong user name or password.".into()),
            signed_in: None,
        }
        .render()
        .into_string();
        for part in [
            "name=\"viewport\"",
            "href=\"/static/style.css\"",
            "name=\"next\" value=\"/alarms\"",
            "value=\"al&quot;ice\"",
            "type=\"password\"",
            "Wrong user name or password.",
        ] {
            assert!(p.contains(part), "{part} missing: {p}");
        }
    }
}
