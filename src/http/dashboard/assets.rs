//! The stylesheet and the small script, compiled into the binary and served
//! under `/static/` with a long cache lifetime (overriding the router's
//! default `no-store`: they hold no patient data). Their URLs carry no
//! version, so a day is the longest a browser may keep an old copy.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

const STYLE: &str = include_str!("static/style.css");
const SCRIPT: &str = include_str!("static/app.js");

/// How long browsers may keep them.
const CACHE: &str = "public, max-age=86400";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE));
    response
}

/// `GET /static/style.css`
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /static/app.js`
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}
