//! Signing in and out, sessions, CSRF, bearer tokens, rate limits and
//! `read_requires_sign_in`, driven through the router (no socket); and the
//! `studywatch user` commands run as the real binary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, SaltString};
use axum::http::StatusCode;
use jiff::SignedDuration;
use studywatch::http::auth::files;

use crate::harness::{bin, repo, show};
use crate::web::{Answer, WebApp};

const PASSWORD: &str = "correct horse battery";

/// An Argon2id hash with the smallest parameters, so that a test does not
/// spend seconds per sign-in in a debug build. The users file takes any
/// Argon2id parameters; `studywatch user add` always writes the defaults
/// (the CLI test below signs in with one of those).
fn cheap_hash(password: &str) -> String {
    let params = argon2::Params::new(8, 1, 1, None).unwrap();
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"a test salt 16 b").unwrap();
    argon
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// The users file (alice, bob) and tokens file (ris) an app reads, in a
/// directory of their own (they must exist before the app starts).
struct Secrets {
    dir: tempfile::TempDir,
    token: String,
}

impl Secrets {
    fn new() -> Secrets {
        let dir = tempfile::tempdir().unwrap();
        let hash = cheap_hash(PASSWORD);
        std::fs::write(
            dir.path().join("users"),
            format!("# test users\nalice:{hash}\nbob:{hash}\n"),
        )
        .unwrap();
        let token = files::new_token().unwrap();
        let digest = hex::encode(files::token_digest(&token));
        std::fs::write(dir.path().join("tokens"), format!("ris:{digest}\n")).unwrap();
        Secrets { dir, token }
    }

    fn users(&self) -> PathBuf {
        self.dir.path().join("users")
    }

    fn tokens(&self) -> PathBuf {
        self.dir.path().join("tokens")
    }

    /// `[http]` lines naming both files, plus `extra`.
    fn http(&self, extra: &str) -> String {
        format!(
            "users_file = \"{}\"\ntokens_file = \"{}\"\n{extra}",
            self.users().display(),
            self.tokens().display()
        )
    }

    fn app(&self, extra: &str) -> WebApp {
        WebApp::new(&self.http(extra), "")
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

async fn sign_in(app: &WebApp, user: &str, password: &str, next: &str) -> Answer {
    app.post_form(
        "/login",
        &[("user", user), ("password", password), ("next", next)],
        &[],
    )
    .await
}

/// `studywatch_session=...` from a sign-in's Set-Cookie, ready to send back.
fn cookie(answer: &Answer) -> String {
    let set = answer
        .header("set-cookie")
        .unwrap_or_else(|| panic!("no cookie set ({}): {}", answer.status, answer.body));
    set.split(';').next().unwrap().to_owned()
}

async fn signed_in_as_alice(app: &WebApp) -> String {
    let answer = sign_in(app, "alice", PASSWORD, "/").await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    cookie(&answer)
}

/// The CSRF token the sign-in page's sign-out form carries for a session,
/// or None when the cookie is no session.
async fn csrf(app: &WebApp, cookie: &str) -> Option<String> {
    let page = app.get("/login", &[("cookie", cookie)]).await;
    assert_eq!(page.status, StatusCode::OK);
    let start = page.body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let len = page.body[start..].find('"')?;
    Some(page.body[start..start + len].to_owned())
}

fn audit(app: &WebApp) -> Vec<(String, String, String)> {
    app.store()
        .audit(None, None)
        .unwrap()
        .into_iter()
        .map(|r| (r.actor, r.action, r.detail))
        .collect()
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie_and_is_audited() {
    let secrets = Secrets::new();
    let app = secrets.app("");
    let answer = sign_in(&app, "alice", PASSWORD, "/alarms?state=open").await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.header("location"), Some("/alarms?state=open"));
    let set = answer.header("set-cookie").unwrap();
    let attributes: Vec<&str> = set.split(';').map(str::trim).collect();
    assert!(attributes[0].starts_with("studywatch_session="), "{set}");
    assert_eq!(
        attributes[0].len(),
        "studywatch_session=".len() + 64,
        "{set}"
    );
    for a in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(&a), "{a} missing: {set}");
    }
    assert!(!attributes.contains(&"Secure"), "not behind TLS: {set}");

    let cookie = cookie(&answer);
    let page = app.get("/login", &[("cookie", &cookie)]).await;
    assert!(
        page.body.contains("signed in as <strong>alice</strong>"),
        "{}",
        page.body
    );
    assert_eq!(
        audit(&app),
        vec![(
            "alice".to_owned(),
            "signed_in".to_owned(),
            "from unknown".to_owned()
        )]
    );
}

#[tokio::test]
async fn behind_tls_the_cookie_is_secure() {
    let secrets = Secrets::new();
    let app = secrets.app("behind_tls = true");
    let answer = sign_in(&app, "alice", PASSWORD, "/").await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let set = answer.header("set-cookie").unwrap();
    assert!(set.split(';').any(|a| a.trim() == "Secure"), "{set}");
    assert!(set.contains("SameSite=Strict") && set.contains("HttpOnly"));
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_401_and_are_audited() {
    let secrets = Secrets::new();
    let app = secrets.app("");
    let wrong = sign_in(&app, "alice", "not the password", "/alarms").await;
    let unknown = sign_in(&app, "mallory", PASSWORD, "/alarms").await;
    for answer in [&wrong, &unknown] {
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.body);
        assert!(answer.header("set-cookie").is_none());
        assert!(
            answer.body.contains("Wrong user name or password."),
            "{}",
            answer.body
        );
        // The form comes back ready for another try, still going to /alarms.
        assert!(answer.body.contains("name=\"next\" value=\"/alarms\""));
    }
    let rows = audit(&app);
    assert_eq!(
        rows,
        vec![
            (
                "alice".to_owned(),
                "sign_in_failed".to_owned(),
                "from unknown: wrong password".to_owned()
            ),
            (
                "mallory".to_owned(),
                "sign_in_failed".to_owned(),
                "from unknown: no such user".to_owned()
            ),
        ]
    );
}

#[tokio::test]
async fn failed_sign_ins_are_limited_per_user_name_and_client() {
    let secrets = Secrets::new();
    let app = secrets.app("login_attempts = 2\nlogin_window = \"15m\"");
    for _ in 0..2 {
        let a = sign_in(&app, "alice", "guess guess guess", "/").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    // Now even the right password is not looked at.
    let refused = sign_in(&app, "alice", PASSWORD, "/").await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        refused.body
    );
    assert!(refused.header("set-cookie").is_none());
    assert!(
        refused.body.contains("Try again after 2026-11-23 10:15"),
        "{}",
        refused.body
    );
    assert_eq!(refused.header("retry-after"), Some("900"));
    // Another user name has its own allowance.
    let bob = sign_in(&app, "bob", PASSWORD, "/").await;
    assert_eq!(bob.status, StatusCode::SEE_OTHER);

    let actions: Vec<(String, String)> = audit(&app)
        .into_iter()
        .map(|(actor, action, _)| (actor, action))
        .collect();
    let expected = [
        ("alice", "sign_in_failed"),
        ("alice", "sign_in_failed"),
        ("alice", "sign_in_refused"),
        ("bob", "signed_in"),
    ];
    assert_eq!(
        actions,
        expected.map(|(a, b)| (a.to_owned(), b.to_owned())).to_vec()
    );

    // Once the window has passed, the right password works again.
    app.set_now(app.now() + SignedDuration::from_mins(15) + SignedDuration::from_secs(1));
    let later = sign_in(&app, "alice", PASSWORD, "/").await;
    assert_eq!(later.status, StatusCode::SEE_OTHER, "{}", later.body);
}

#[tokio::test]
async fn signing_out_needs_the_session_csrf_token() {
    let secrets = Secrets::new();
    let app = secrets.app("");
    let session = signed_in_as_alice(&app).await;
    let token = csrf(&app, &session)
        .await
        .expect("a signed-in page has a token");
    assert_eq!(token.len(), 64);

    let missing = app.post_form("/logout", &[], &[("cookie", &session)]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN, "{}", missing.body);
    assert_eq!(missing.json()["status"], 403);
    let wrong = app
        .post_form(
            "/logout",
            &[("csrf", &"0".repeat(64))],
            &[("cookie", &session)],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let other_session = signed_in_as_alice(&app).await;
    let other_token = csrf(&app, &other_session).await.unwrap();
    let borrowed = app
        .post_form(
            "/logout",
            &[("csrf", &other_token)],
            &[("cookie", &session)],
        )
        .await;
    assert_eq!(
        borrowed.status,
        StatusCode::FORBIDDEN,
        "one session's token is no good for another"
    );
    assert!(csrf(&app, &session).await.is_some(), "still signed in");

    let out = app
        .post_form("/logout", &[("csrf", &token)], &[("cookie", &session)])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.body);
    assert_eq!(out.header("location"), Some("/"));
    let cleared = out.header("set-cookie").unwrap();
    assert!(
        cleared.starts_with("studywatch_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    assert!(
        csrf(&app, &session).await.is_none(),
        "the session has ended"
    );
    // The API's way: the token in a header.
    let header_token = csrf(&app, &other_session).await.unwrap();
    let out = app
        .post(
            "/logout",
            "application/json",
            String::new(),
            &[("cookie", &other_session), ("x-csrf-token", &header_token)],
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.body);
    assert!(csrf(&app, &other_session).await.is_none());

    let signed_out = audit(&app)
        .into_iter()
        .filter(|(_, action, _)| action == "signed_out")
        .count();
    assert_eq!(signed_out, 2);
}

#[tokio::test]
async fn posts_from_other_sites_are_refused() {
    let secrets = Secrets::new();
    let app = secrets.app("");
    let fields = [("user", "alice"), ("password", PASSWORD), ("next", "/")];
    for headers in [
        [("origin", "https://evil.example"), ("host", "gw.example")],
        [("sec-fetch-site", "cross-site"), ("host", "gw.example")],
        [
            ("origin", "https://gw.example"),
            ("sec-fetch-site", "same-site"),
        ],
    ] {
        let a = app.post_form("/login", &fields, &headers).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{headers:?}: {}", a.body);
        assert!(a.header("set-cookie").is_none());
    }
    // The same form from our own page is fine.
    let own = app
        .post_form(
            "/login",
            &fields,
            &[("origin", "http://gw.example"), ("host", "gw.example")],
        )
        .await;
    assert_eq!(own.status, StatusCode::SEE_OTHER, "{}", own.body);

    let session = cookie(&own);
    let token = csrf(&app, &session).await.unwrap();
    let cross = app
        .post_form(
            "/logout",
            &[("csrf", &token)],
            &[("cookie", &session), ("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN, "{}", cross.body);
    let same = app
        .post_form(
            "/logout",
            &[("csrf", &token)],
            &[("cookie", &session), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(same.status, StatusCode::SEE_OTHER, "{}", same.body);
}

#[tokio::test]
async fn a_bearer_token_is_an_actor_and_a_bad_one_is_refused() {
    let secrets = Secrets::new();
    let app = secrets.app("");
    let bearer = secrets.bearer();
    let good = app
        .post_form("/logout", &[], &[("authorization", &bearer)])
        .await;
    assert_eq!(
        good.status,
        StatusCode::SEE_OTHER,
        "no CSRF token needed: {}",
        good.body
    );

    let session = signed_in_as_alice(&app).await;
    let bad_token = format!("Bearer {}", "f".repeat(64));
    for headers in [
        vec![("authorization", bad_token.as_str())],
        vec![("authorization", "Basic YWxpY2U6cGFzc3dvcmQ=")],
        vec![("authorization", "Bearer")],
        // A wrong token is not saved by a good session.
        vec![
            ("authorization", bad_token.as_str()),
            ("cookie", session.as_str()),
        ],
    ] {
        let a = app.post_form("/logout", &[], &headers).await;
        assert_eq!(
            a.status,
            StatusCode::UNAUTHORIZED,
            "{headers:?}: {}",
            a.body
        );
        assert_eq!(a.json()["status"], 401);
    }
}

#[tokio::test]
async fn with_read_requires_sign_in_pages_go_to_login_and_api_calls_get_401() {
    let secrets = Secrets::new();
    let app = secrets.app("read_requires_sign_in = true");
    let page = app
        .get(
            "/alarms?state=open",
            &[("accept", "text/html,application/xhtml+xml")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.header("location"),
        Some("/login?next=%2Falarms%3Fstate%3Dopen")
    );
    let api = app
        .get("/api/studies", &[("accept", "application/json")])
        .await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.json()["status"], 401);
    let bad = app
        .get(
            "/api/studies",
            &[
                ("authorization", "Bearer nonsense"),
                ("accept", "text/html"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);

    for open in [
        "/login",
        "/healthz",
        "/readyz",
        "/metrics",
        "/static/style.css",
    ] {
        let a = app.get(open, &[("accept", "text/html")]).await;
        assert!(
            a.status != StatusCode::SEE_OTHER && a.status != StatusCode::UNAUTHORIZED,
            "{open}: {}",
            a.status
        );
    }

    let session = signed_in_as_alice(&app).await;
    let bearer = secrets.bearer();
    for credentials in [("cookie", session.as_str()), ("authorization", &bearer)] {
        for path in ["/api/studies", "/"] {
            let a = app.get(path, &[credentials, ("accept", "text/html")]).await;
            assert!(
                a.status != StatusCode::SEE_OTHER && a.status != StatusCode::UNAUTHORIZED,
                "{path} with {}: {}",
                credentials.0,
                a.status
            );
        }
    }

    // Off (the loopback default), reading needs nobody.
    let open = secrets.app("");
    let a = open
        .get("/api/studies", &[("accept", "application/json")])
        .await;
    assert_ne!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn next_never_leads_off_the_server() {
    let secrets = Secrets::new();
    let app = secrets.app("");
    for evil in [
        "//evil.example",
        "//evil.example/login",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
    ] {
        let a = sign_in(&app, "alice", PASSWORD, evil).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{evil}");
        assert_eq!(a.header("location"), Some("/"), "{evil}");
        let query: String = url::form_urlencoded::byte_serialize(evil.as_bytes()).collect();
        let page = app.get(&format!("/login?next={query}"), &[]).await;
        assert!(
            page.body.contains("name=\"next\" value=\"/\""),
            "{evil}: {}",
            page.body
        );
    }
}

#[tokio::test]
async fn a_session_lasts_session_ttl_after_its_last_use() {
    let secrets = Secrets::new();
    let app = secrets.app("session_ttl = \"1h\"");
    let session = signed_in_as_alice(&app).await;
    for _ in 0..3 {
        app.set_now(app.now() + SignedDuration::from_mins(59));
        assert!(csrf(&app, &session).await.is_some(), "used within the hour");
    }
    app.set_now(app.now() + SignedDuration::from_mins(61));
    assert!(
        csrf(&app, &session).await.is_none(),
        "idle for over an hour"
    );
}

/// A config for the CLI that shares `app`'s catalog and names `users` and
/// `tokens` (either may be left out).
fn cli_config(dir: &Path, app: &WebApp, users: Option<&Path>, tokens: Option<&Path>) -> PathBuf {
    let mut http = String::new();
    if let Some(u) = users {
        http += &format!("users_file = \"{}\"\n", u.display());
    }
    if let Some(t) = tokens {
        http += &format!("tokens_file = \"{}\"\n", t.display());
    }
    let text = format!(
        "version = 1\n[storage]\npath = \"{}\"\nmin_free_bytes = 0\n[catalog]\npath = \"{}\"\n\
         [http]\n{http}",
        app.dir.path().join("storage").display(),
        app.config.catalog.path.display(),
    );
    let path = dir.join(format!("cli-{}.toml", text.len()));
    std::fs::write(&path, text).unwrap();
    path
}

fn studywatch(config: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .env("USER", "it-admin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run studywatch");
    // A command that reads no password may have exited already.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// Polls `check` until it holds, up to `limit`.
async fn eventually(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn users_added_with_the_cli_can_sign_in_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users");
    let tokens = dir.path().join("tokens");
    std::fs::write(&users, "# nobody yet\n").unwrap();
    std::fs::write(&tokens, "").unwrap();
    let app = WebApp::new(
        &format!(
            "users_file = \"{}\"\ntokens_file = \"{}\"",
            users.display(),
            tokens.display()
        ),
        "",
    );
    let config = cli_config(dir.path(), &app, Some(&users), Some(&tokens));

    let short = studywatch(&config, &["user", "add", "alice"], "too short\n");
    assert_eq!(short.status.code(), Some(1), "{}", show(&short));
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 12 characters"));
    let bad_name = studywatch(
        &config,
        &["user", "add", "al:ice"],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(bad_name.status.code(), Some(2), "{}", show(&bad_name));
    assert_eq!(std::fs::read_to_string(&users).unwrap(), "# nobody yet\n");

    let added = studywatch(&config, &["user", "add", "alice"], &format!("{PASSWORD}\n"));
    assert!(added.status.success(), "{}", show(&added));
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(
        text.starts_with("# nobody yet\nalice:$argon2id$v=19$m=19456,t=2,p=1$"),
        "{text}"
    );
    assert!(!text.contains(PASSWORD) && !show(&added).contains(PASSWORD));
    let mode = std::fs::metadata(&users).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let issued = studywatch(&config, &["user", "token", "ris"], "");
    assert!(issued.status.success(), "{}", show(&issued));
    let token = String::from_utf8(issued.stdout.clone()).unwrap();
    let token = token.trim();
    assert_eq!(token.len(), 64, "one token alone on stdout: {token:?}");
    let stored = std::fs::read_to_string(&tokens).unwrap();
    assert!(!stored.contains(token), "only the digest is stored");

    // The running app notices the files within a few seconds.
    let bearer = format!("Bearer {token}");
    eventually(
        "the new token to work",
        Duration::from_secs(10),
        async || {
            app.post_form("/logout", &[], &[("authorization", &bearer)])
                .await
                .status
                == StatusCode::SEE_OTHER
        },
    )
    .await;
    let answer = sign_in(&app, "alice", PASSWORD, "/").await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let session = cookie(&answer);

    // A new password replaces the old one.
    let changed = studywatch(
        &config,
        &["user", "add", "alice"],
        "a different passphrase\n",
    );
    assert!(changed.status.success(), "{}", show(&changed));
    let text = std::fs::read_to_string(&users).unwrap();
    assert_eq!(text.matches("alice:").count(), 1, "{text}");

    // Removing alice ends her session on the running app.
    let removed = studywatch(&config, &["user", "remove", "alice"], "");
    assert!(removed.status.success(), "{}", show(&removed));
    eventually(
        "alice's session to end",
        Duration::from_secs(10),
        async || csrf(&app, &session).await.is_none(),
    )
    .await;
    let again = studywatch(&config, &["user", "remove", "alice"], "");
    assert_eq!(again.status.code(), Some(1), "{}", show(&again));

    let actions: Vec<(String, String, String)> = audit(&app)
        .into_iter()
        .filter(|(actor, _, _)| actor == "it-admin")
        .collect();
    let expected = [
        ("user_added", "alice"),
        ("token_issued", "ris"),
        ("user_password_changed", "alice"),
        ("user_removed", "alice"),
    ];
    assert_eq!(
        actions,
        expected
            .map(|(action, name)| ("it-admin".to_owned(), action.to_owned(), name.to_owned()))
            .to_vec()
    );
}

#[tokio::test]
async fn user_commands_need_the_file_configured() {
    let dir = tempfile::tempdir().unwrap();
    let app = WebApp::new("", "");
    let config = cli_config(dir.path(), &app, None, None);
    for args in [
        &["user", "add", "alice"][..],
        &["user", "token", "ris"],
        &["user", "remove", "alice"],
    ] {
        let out = studywatch(&config, args, &format!("{PASSWORD}\n"));
        assert_eq!(out.status.code(), Some(78), "{args:?}: {}", show(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("_file is not set"));
    }
}

#[tokio::test]
async fn check_config_refuses_a_missing_or_malformed_users_file() {
    let dir = tempfile::tempdir().unwrap();
    let app = WebApp::new("", "");
    let users = dir.path().join("users");
    let config = cli_config(dir.path(), &app, Some(&users), None);
    let check = || {
        Command::new(bin())
            .current_dir(repo())
            .args(["--config", config.to_str().unwrap(), "check-config"])
            .output()
            .unwrap()
    };
    let out = check();
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("http.users_file") && err.contains(&users.display().to_string()),
        "{err}"
    );

    std::fs::write(
        &users,
        format!("# staff\nalice:{}\nbob:secret\n", cheap_hash(PASSWORD)),
    )
    .unwrap();
    let out = check();
    assert_eq!(out.status.code(), Some(78), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 3"), "{err}");
    assert!(!err.contains("secret"), "{err}");

    std::fs::write(&users, format!("alice:{}\n", cheap_hash(PASSWORD))).unwrap();
    let out = check();
    assert!(out.status.success(), "{}", show(&out));
}
