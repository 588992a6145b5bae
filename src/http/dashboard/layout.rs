//! The frame every dashboard page shares: head, header with the navigation
//! and who is signed in, flash message, footer with the time of rendering;
//! and the HTML error page.
//!
//! Pages refresh themselves every `[http] refresh`. `/static/app.js` does it
//! and pauses while a form on the page is being filled in; without
//! JavaScript a `<noscript>` meta refresh does it, but only on pages with no
//! form to type into, so that nobody loses what they were writing.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use maud::{DOCTYPE, Markup, html};

use super::format;
use crate::http::AppState;
use crate::http::auth::Viewer;

/// What a page needs to know besides its own data.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub now: Timestamp,
    pub tz: TimeZone,
    /// Seconds between refreshes.
    pub refresh: u64,
    pub viewer: Viewer,
}

impl Ctx {
    pub fn new(state: &AppState, viewer: Viewer) -> Ctx {
        Ctx {
            now: state.now(),
            tz: state.config.site.timezone.clone(),
            refresh: state.config.http.refresh.as_secs().max(5),
            viewer,
        }
    }

    /// A time as a `<time>` element in the site's zone.
    pub fn time(&self, ts: Timestamp) -> Markup {
        format::time(ts, &self.tz)
    }

    /// A time with how long ago (or ahead) it is.
    pub fn time_ago(&self, ts: Timestamp) -> Markup {
        html! { (self.time(ts)) " " span.ago { "(" (format::ago(ts, self.now)) ")" } }
    }

    /// A note for someone not signed in, where a page has forms that write.
    pub fn sign_in_note(&self, here: &str, what: &str) -> Markup {
        html! {
            @if self.viewer.user.is_none() {
                p.signin-note {
                    a href=(login_href(here)) { "Sign in" } " to " (what) ": your name is recorded with each."
                }
            }
        }
    }

    /// The hidden CSRF field every form that writes carries (empty when
    /// nobody is signed in: the write then asks them to sign in).
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.viewer.csrf.as_deref().unwrap_or("")); }
    }
}

/// The entries of the navigation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    Worklist,
    Alarms,
    Reports,
    Health,
    /// A page that is none of them (a study).
    None,
}

const NAV: [(Nav, &str, &str); 4] = [
    (Nav::Worklist, "/", "Worklist"),
    (Nav::Alarms, "/alarms", "Alarms"),
    (Nav::Reports, "/reports", "Reports"),
    (Nav::Health, "/health", "Health"),
];

/// One page.
pub struct Page<'a> {
    pub title: String,
    pub nav: Nav,
    /// Where this page is (path and query), for "Sign in" to come back to.
    pub here: String,
    /// The page has forms people type into: no refresh without JavaScript.
    pub has_input: bool,
    pub flash: Option<Markup>,
    pub ctx: &'a Ctx,
}

impl Page<'_> {
    /// The whole document, as a response with the HTML content type.
    pub fn render(self, main: Markup) -> Response {
        let ctx = self.ctx;
        let markup = html! {
            (DOCTYPE)
            html lang="en-GB" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.title) " · studywatch" }
                    link rel="stylesheet" href="/static/style.css";
                    script src="/static/app.js" defer {}
                    @if !self.has_input {
                        noscript { meta http-equiv="refresh" content=(ctx.refresh); }
                    }
                }
                body data-refresh=(ctx.refresh) {
                    a.skip href="#main" { "Skip to the content" }
                    (header(self.nav, &self.here, Some(&ctx.viewer)))
                    main #main {
                        @if let Some(flash) = self.flash {
                            div.flash role="status" { (flash) }
                        }
                        (main)
                    }
                    footer.site {
                        p {
                            "Shown at " span #rendered-at { (format::full(ctx.now, &ctx.tz)) } ". "
                            span #refresh-status {
                                @if self.has_input {
                                    "Updates every " (ctx.refresh) " s, except while you fill in a form."
                                } @else {
                                    "Updates every " (ctx.refresh) " s."
                                }
                            }
                        }
                    }
                }
            }
        };
        html_response(StatusCode::OK, markup)
    }
}

/// The header: the name, the navigation, and who is signed in (`None` on
/// error pages, which do not know).
fn header(current: Nav, here: &str, viewer: Option<&Viewer>) -> Markup {
    html! {
        header.site {
            a.brand href="/" { "studywatch" }
            nav aria-label="Main" {
                ul {
                    @for (nav, href, label) in NAV {
                        li {
                            @if nav == current {
                                a href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                }
            }
            @if let Some(viewer) = viewer {
                div.user {
                    @if let Some(user) = &viewer.user {
                        span.who { "Signed in as " strong { (user) } }
                        form.signout method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(viewer.csrf.as_deref().unwrap_or(""));
                            button type="submit" { "Sign out" }
                        }
                    } @else {
                        a.signin href=(login_href(here)) { "Sign in" }
                    }
                }
            }
        }
    }
}

/// `/login?next=PATH`, with PATH percent-encoded except for `/`.
pub fn login_href(next: &str) -> String {
    format!("/login?next={}", encode_component(next))
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An HTML response with the given status.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

/// An error on a dashboard page, answered as an HTML page with its status.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
    /// Where "go back" leads.
    pub back: &'static str,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> PageError {
        PageError {
            status,
            message: message.into(),
            back: "/",
        }
    }

    pub fn not_found(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::NOT_FOUND, message)
    }

    /// 422: a form value is not acceptable.
    pub fn unprocessable(message: impl Into<String>) -> PageError {
        PageError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    /// Where the error page's link back leads.
    pub fn back(mut self, to: &'static str) -> PageError {
        self.back = to;
        self
    }
}

impl From<crate::catalog::Error> for PageError {
    fn from(e: crate::catalog::Error) -> PageError {
        tracing::error!(error = %e, "dashboard: the catalog could not be read or written");
        PageError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The catalog could not be read or written; the server log has the detail.",
        )
    }
}

impl From<crate::http::ApiError> for PageError {
    fn from(e: crate::http::ApiError) -> PageError {
        PageError::new(e.status, e.message)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let reason = self.status.canonical_reason().unwrap_or("Error");
        let markup = html! {
            (DOCTYPE)
            html lang="en-GB" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (reason) " · studywatch" }
                    link rel="stylesheet" href="/static/style.css";
                }
                body {
                    a.skip href="#main" { "Skip to the content" }
                    (header(Nav::None, "/", None))
                    main #main {
                        section.error-page {
                            h1 { (self.status.as_u16()) " " (reason) }
                            p #error-message { (self.message) }
                            p { a href=(self.back) { "Go back" } }
                        }
                    }
                }
            }
        };
        html_response(self.status, markup)
    }
}
