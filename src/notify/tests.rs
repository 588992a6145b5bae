//! Channels against real peers on 127.0.0.1: aiosmtpd (Debian's
//! python3-aiosmtpd, driven by `tests/peers/smtp_server.py`) for email; for
//! webhooks an HTTP/1.1 listener in the test (answers scripted per test) and
//! `tests/peers/webhook_server.py`, an HTTPS receiver that checks signatures
//! with Python's own hmac.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use crate::config::{
    self, ChannelConfig, ChannelKind, Security, Smtp, SmtpAuth, WebhookFormat, WebhookUrl,
};

/// How long a peer may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(8);

fn sample() -> Notification {
    Notification {
        id: 42,
        channel: "test".into(),
        event: Event::Trigger,
        severity: Severity::Critical,
        alarm_id: Some(7),
        alarm_kind: Some("overdue_report".into()),
        title: "Study overdue for a report".into(),
        fields: vec![
            ("Accession".into(), "RXX123".into()),
            ("Hospital number".into(), "H0042".into()),
            ("Rule".into(), "ED plain film".into()),
            ("Age".into(), "26 h".into()),
            ("Deadline".into(), "2026-11-22T10:00:00Z".into()),
        ],
        dashboard_link: Some("http://127.0.0.1:8080/alarms/7".into()),
        dedup_key: alarm_dedup_key(7),
        created_at: "2026-11-22T11:00:00Z".parse().expect("timestamp"),
    }
}

fn peer_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/peers")
        .join(name)
}

/// A Python 3 that has aiosmtpd. Debian's python3-aiosmtpd goes into the
/// system interpreter, which is not always the first `python3` on PATH.
fn python() -> &'static str {
    static FOUND: OnceLock<&'static str> = OnceLock::new();
    FOUND.get_or_init(|| {
        ["python3", "/usr/bin/python3"]
            .into_iter()
            .find(|p| {
                Command::new(p)
                    .args(["-c", "import aiosmtpd"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
            .expect("a python3 with aiosmtpd (Debian package python3-aiosmtpd)")
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn write_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write test file");
    path
}

/// A child process killed when the test ends, however it ends.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a peer script and waits until its port accepts connections.
async fn start_peer(script: &str, port: u16, args: &[&str]) -> Peer {
    let child = Command::new(python())
        .arg(peer_script(script))
        .arg("--port")
        .arg(port.to_string())
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {script}: {e}"));
    let mut peer = Peer(child);
    let deadline = Instant::now() + START_LIMIT;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return peer;
        }
        if let Ok(Some(status)) = peer.0.try_wait() {
            panic!("{script} exited before listening: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{script} not listening on {port}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `dir` until it holds `n` files whose names pass `keep`; returns
/// their contents, oldest name first.
async fn wait_for_files(dir: &Path, n: usize, keep: fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.file_name().and_then(|f| f.to_str()).is_some_and(keep))
                    .collect()
            })
            .unwrap_or_default();
        if names.len() >= n {
            names.sort();
            return names
                .iter()
                .map(|p| std::fs::read_to_string(p).expect("read a received file"))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{n} files never arrived in {dir:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// Email
// ---------------------------------------------------------------------------

struct SmtpServer {
    _peer: Peer,
    port: u16,
    dir: tempfile::TempDir,
}

impl SmtpServer {
    async fn start(args: &[&str]) -> SmtpServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let maildir = dir.path().join("maildir");
        let certs = dir.path().join("certs");
        let mut all = vec![
            "--maildir",
            maildir.to_str().expect("utf-8 path"),
            "--cert-dir",
            certs.to_str().expect("utf-8 path"),
        ];
        all.extend_from_slice(args);
        let peer = start_peer("smtp_server.py", port, &all).await;
        SmtpServer {
            _peer: peer,
            port,
            dir,
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("certs/ca.pem")
    }

    async fn mails(&self, n: usize) -> Vec<String> {
        wait_for_files(&self.dir.path().join("maildir/new"), n, |_| true).await
    }

    fn smtp(&self, security: Security) -> Smtp {
        Smtp {
            host: "127.0.0.1".into(),
            port: self.port,
            security,
            from: "Studywatch <studywatch@example.org>".into(),
            auth: None,
            timeout: Duration::from_secs(5),
            ca_file: None,
        }
    }
}

fn email_channel(to: &[&str]) -> ChannelConfig {
    ChannelConfig {
        name: "reporting-team".into(),
        digest: true,
        kind: ChannelKind::Email(config::Email {
            to: to.iter().map(|s| s.to_string()).collect(),
        }),
    }
}

fn header<'a>(mail: &'a str, name: &str) -> Option<&'a str> {
    let head = mail.split("\n\n").next().unwrap_or_default();
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn email_arrives_at_a_real_smtp_server_with_its_headers_and_body() {
    let server = SmtpServer::start(&[]).await;
    let channel = Channel::from_config(
        &email_channel(&[
            "reporting-team@example.org",
            "Duty Radiologist <duty@example.org>",
        ]),
        Some(&server.smtp(Security::None)),
    )
    .expect("channel");
    let n = sample();
    let delivered = channel.deliver(&n).await.expect("delivered");
    assert!(delivered.detail.starts_with("250"), "{delivered:?}");

    let mails = server.mails(1).await;
    let mail = &mails[0];
    assert_eq!(
        header(mail, "Subject"),
        Some("[studywatch] Study overdue for a report")
    );
    assert_eq!(
        header(mail, "Message-ID"),
        Some("<studywatch.42.1795345200000@example.org>")
    );
    assert_eq!(
        header(mail, "From"),
        Some("Studywatch <studywatch@example.org>")
    );
    assert_eq!(
        header(mail, "X-RcptTo"),
        Some("reporting-team@example.org, duty@example.org")
    );
    assert_eq!(header(mail, "X-MailFrom"), Some("studywatch@example.org"));
    assert_eq!(header(mail, "Auto-Submitted"), Some("auto-generated"));
    assert_eq!(header(mail, "X-Studywatch-Delivery"), Some("42"));
    assert_eq!(
        header(mail, "In-Reply-To"),
        Some("<studywatch-alarm-7@example.org>")
    );
    let date = header(mail, "Date").expect("a Date header");
    assert!(date.contains(':'), "{date}");
    assert_eq!(header(mail, "X-Test-Auth"), Some("none"));
    assert_eq!(header(mail, "X-Test-TLS"), Some("no"));
    assert!(
        header(mail, "Content-Type").is_some_and(|c| c.starts_with("multipart/alternative")),
        "{mail}"
    );
    // The plain part arrives as rendered, line for line.
    for line in [
        "Study overdue for a report",
        "New alarm: overdue_report (alarm 7)",
        "Accession:       RXX123",
        "Hospital number: H0042",
        "Rule:            ED plain film",
        "Dashboard: http://127.0.0.1:8080/alarms/7",
    ] {
        assert!(mail.lines().any(|l| l == line), "{line:?} not in\n{mail}");
    }

    // A second attempt of the same notification is recognisably the same mail.
    channel.deliver(&n).await.expect("delivered again");
    let mails = server.mails(2).await;
    let ids: Vec<_> = mails.iter().map(|m| header(m, "Message-ID")).collect();
    assert_eq!(ids[0], ids[1]);
}

#[tokio::test]
async fn nhsmail_style_starttls_with_auth_login() {
    let user = "studywatch@nhs.example";
    let server = SmtpServer::start(&[
        "--tls",
        "starttls",
        "--user",
        user,
        "--password",
        "correct horse",
        "--mechanisms",
        "LOGIN",
    ])
    .await;
    let password = write_file(server.dir.path(), "password", "correct horse\n");
    let mut smtp = server.smtp(Security::StartTls);
    smtp.from = user.into();
    smtp.auth = Some(SmtpAuth {
        username: user.into(),
        password_file: password,
    });
    smtp.ca_file = Some(server.ca());
    let channel =
        Channel::from_config(&email_channel(&["team@example.org"]), Some(&smtp)).expect("channel");
    channel.deliver(&sample()).await.expect("delivered");
    let mails = server.mails(1).await;
    assert_eq!(header(&mails[0], "X-Test-TLS"), Some("starttls"));
    assert_eq!(
        header(&mails[0], "X-Test-Auth"),
        Some("LOGIN studywatch@nhs.example")
    );

    // The same relay without trusting its certificate: no mail, and a retryable
    // error that says why.
    smtp.ca_file = None;
    let untrusting =
        Channel::from_config(&email_channel(&["team@example.org"]), Some(&smtp)).expect("channel");
    let err = untrusting.deliver(&sample()).await.expect_err("untrusted");
    assert!(err.retryable, "{err:?}");
    assert!(err.message.contains("certificate"), "{err:?}");
}

#[tokio::test]
async fn auth_plain_on_loopback_and_a_wrong_password_is_final() {
    let server = SmtpServer::start(&["--user", "sw", "--password", "pw"]).await;
    let mut smtp = server.smtp(Security::None);
    smtp.auth = Some(SmtpAuth {
        username: "sw".into(),
        password_file: write_file(server.dir.path(), "good", "pw\r\n"),
    });
    let channel =
        Channel::from_config(&email_channel(&["team@example.org"]), Some(&smtp)).expect("channel");
    channel.deliver(&sample()).await.expect("delivered");
    let mails = server.mails(1).await;
    assert_eq!(header(&mails[0], "X-Test-Auth"), Some("PLAIN sw"));

    smtp.auth = Some(SmtpAuth {
        username: "sw".into(),
        password_file: write_file(server.dir.path(), "bad", "wrong\n"),
    });
    let channel =
        Channel::from_config(&email_channel(&["team@example.org"]), Some(&smtp)).expect("channel");
    let err = channel.deliver(&sample()).await.expect_err("refused");
    assert!(!err.retryable, "{err:?}");
    assert!(err.message.contains("535"), "{err:?}");
    assert!(
        !err.message.contains("wrong"),
        "the password leaked: {err:?}"
    );
}

#[tokio::test]
async fn implicit_tls() {
    let server = SmtpServer::start(&["--tls", "tls"]).await;
    let mut smtp = server.smtp(Security::Tls);
    smtp.ca_file = Some(server.ca());
    let channel =
        Channel::from_config(&email_channel(&["team@example.org"]), Some(&smtp)).expect("channel");
    channel.deliver(&sample()).await.expect("delivered");
    let mails = server.mails(1).await;
    assert_eq!(header(&mails[0], "X-Test-TLS"), Some("tls"));
}

#[tokio::test]
async fn smtp_refusals_are_classified() {
    let server = SmtpServer::start(&[]).await;
    let smtp = server.smtp(Security::None);
    let temp = Channel::from_config(&email_channel(&["tempfail@example.org"]), Some(&smtp))
        .expect("channel");
    let err = temp.deliver(&sample()).await.expect_err("451");
    assert!(err.retryable, "{err:?}");
    assert!(err.message.contains("451"), "{err:?}");

    let perm = Channel::from_config(&email_channel(&["permfail@example.org"]), Some(&smtp))
        .expect("channel");
    let err = perm.deliver(&sample()).await.expect_err("550");
    assert!(!err.retryable, "{err:?}");
    assert!(err.message.contains("550"), "{err:?}");
}

#[tokio::test]
async fn smtp_down_is_retryable() {
    let smtp = Smtp {
        host: "127.0.0.1".into(),
        port: free_port(),
        security: Security::None,
        from: "studywatch@example.org".into(),
        auth: None,
        timeout: Duration::from_secs(5),
        ca_file: None,
    };
    let channel =
        Channel::from_config(&email_channel(&["team@example.org"]), Some(&smtp)).expect("channel");
    let started = Instant::now();
    let err = channel
        .deliver(&sample())
        .await
        .expect_err("nobody listens");
    assert!(err.retryable, "{err:?}");
    assert!(
        err.message.contains(&format!("127.0.0.1:{}", smtp.port)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

// ---------------------------------------------------------------------------
// Building channels
// ---------------------------------------------------------------------------

fn webhook_config(url: WebhookUrl, format: WebhookFormat) -> config::Webhook {
    config::Webhook {
        url,
        format,
        secret_file: None,
        routing_key_file: None,
        timeout: Duration::from_secs(5),
        ca_file: None,
    }
}

fn webhook_channel(w: config::Webhook) -> ChannelConfig {
    ChannelConfig {
        name: "pager".into(),
        digest: w.format != WebhookFormat::PagerDuty,
        kind: ChannelKind::Webhook(w),
    }
}

#[test]
fn build_errors_name_the_channel_key_and_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nope.secret");
    let mut w = webhook_config(
        WebhookUrl::Inline("http://127.0.0.1:9/hook".into()),
        WebhookFormat::Generic,
    );
    w.secret_file = Some(missing.clone());
    let err = Channel::from_config(&webhook_channel(w.clone()), None).expect_err("missing");
    assert!(
        matches!(
            &err,
            BuildError::ReadFile {
                key: "secret_file",
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("`pager`") && text.contains("secret_file"),
        "{text}"
    );
    assert!(text.contains(&missing.display().to_string()), "{text}");

    w.secret_file = Some(write_file(dir.path(), "empty", "\n"));
    let err = Channel::from_config(&webhook_channel(w), None).expect_err("empty");
    assert!(err.to_string().contains("is empty"), "{err}");

    let mut w = webhook_config(
        WebhookUrl::File(write_file(dir.path(), "url", "not a url sig=SECRET\n")),
        WebhookFormat::Teams,
    );
    let err = Channel::from_config(&webhook_channel(w.clone()), None).expect_err("bad url");
    assert!(!err.to_string().contains("SECRET"), "{err}");
    w.url = WebhookUrl::Inline("http://127.0.0.1:9/".into());
    w.ca_file = Some(write_file(dir.path(), "ca.pem", "no certificate here"));
    let err = Channel::from_config(&webhook_channel(w), None).expect_err("bad ca");
    assert!(err.to_string().contains("ca_file"), "{err}");

    let err = Channel::from_config(&email_channel(&["a@example.org"]), None).expect_err("smtp");
    assert!(err.to_string().contains("[notify.smtp]"), "{err}");
    let smtp = Smtp {
        host: "127.0.0.1".into(),
        port: 25,
        security: Security::None,
        from: "a@example.org".into(),
        auth: Some(SmtpAuth {
            username: "u".into(),
            password_file: dir.path().join("no-password"),
        }),
        timeout: Duration::from_secs(5),
        ca_file: None,
    };
    let err = Channel::from_config(&email_channel(&["a@example.org"]), Some(&smtp))
        .expect_err("no password file");
    assert!(err.to_string().contains("password_file"), "{err}");
}

#[test]
fn debug_never_shows_secrets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut w = webhook_config(
        WebhookUrl::File(write_file(
            dir.path(),
            "url",
            "https://x.example/h?sig=URLSECRET\n",
        )),
        WebhookFormat::Generic,
    );
    w.secret_file = Some(write_file(dir.path(), "secret", "HMACSECRET"));
    let channel = Channel::from_config(&webhook_channel(w), None).expect("channel");
    let shown = format!("{channel:?}");
    assert!(
        !shown.contains("URLSECRET") && !shown.contains("HMACSECRET"),
        "{shown}"
    );
}

#[test]
fn identifier_fields_let_through_only_what_include_allows() {
    use crate::config::Identifier;
    let ids = Identifiers {
        accession: Some("RXX123"),
        hospital_number: Some(" H0042 "),
        study_uid: Some("1.2.3"),
        patient_name: Some("DOE^JANE"),
    };
    let default = [Identifier::Accession, Identifier::HospitalNumber];
    assert_eq!(
        identifier_fields(&default, &ids),
        [
            ("Accession".to_owned(), "RXX123".to_owned()),
            ("Hospital number".to_owned(), "H0042".to_owned()),
        ]
    );
    assert_eq!(
        identifier_fields(
            &[Identifier::PatientName, Identifier::StudyUid],
            &Identifiers {
                study_uid: Some("  "),
                ..ids
            }
        ),
        [("Patient name".to_owned(), "DOE^JANE".to_owned())]
    );
    assert!(identifier_fields(&[], &ids).is_empty());
}

// ---------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------

/// One request as the test listener read it.
#[derive(Debug)]
struct Request {
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the listener answers: a status line's code and extra header lines;
/// `None` never answers.
type Answer = Option<(u16, &'static str)>;

/// An HTTP/1.1 listener on 127.0.0.1 that answers the i-th request with the
/// i-th answer (the last one repeating) and hands every request to the test.
async fn listener(answers: Vec<Answer>) -> (u16, mpsc::UnboundedReceiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut i = 0;
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let answer = answers.get(i).or(answers.last()).copied().flatten();
            i += 1;
            let tx = tx.clone();
            tokio::spawn(async move {
                let Some(request) = read_request(&mut stream).await else {
                    return;
                };
                let _ = tx.send(request);
                match answer {
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                    Some((code, extra)) => {
                        let body = "{\"status\":\"answer from test\"}";
                        let reply = format!(
                            "HTTP/1.1 {code} Test\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(reply.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    }
                }
            });
        }
    });
    (port, rx)
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?;
    let mut parts = request_line.split(' ');
    assert_eq!(parts.next(), Some("POST"), "{request_line}");
    let target = parts.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Request {
        target,
        headers,
        body,
    })
}

async fn next_request(rx: &mut mpsc::UnboundedReceiver<Request>) -> Request {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a request within 5 s")
        .expect("the listener runs")
}

#[tokio::test]
async fn generic_webhook_is_signed_and_carries_its_headers() {
    let (port, mut rx) = listener(vec![Some((200, ""))]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut w = webhook_config(
        WebhookUrl::Inline(format!("http://127.0.0.1:{port}/hook")),
        WebhookFormat::Generic,
    );
    w.secret_file = Some(write_file(dir.path(), "secret", "s3cr3t-key\n"));
    let channel = Channel::from_config(&webhook_channel(w), None).expect("channel");
    let n = sample();
    let delivered = channel.deliver(&n).await.expect("delivered");
    assert!(delivered.detail.starts_with("HTTP 200"), "{delivered:?}");

    let r = next_request(&mut rx).await;
    assert_eq!(r.target, "/hook");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("user-agent"),
        Some(concat!("studywatch/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(r.header("x-studywatch-delivery"), Some("42"));
    assert_eq!(r.header("x-studywatch-event"), Some("trigger"));
    let signature = r.header("x-studywatch-signature").expect("signed");
    assert!(verify_signature(b"s3cr3t-key", &r.body, signature));
    assert!(!verify_signature(b"s3cr3t-key\n", &r.body, signature));
    let body: Value = serde_json::from_slice(&r.body).expect("JSON body");
    assert_eq!(body["id"], 42);
    assert_eq!(body["event"], "trigger");
    assert_eq!(body["alarm_id"], 7);
    assert_eq!(body["fields"]["Accession"], "RXX123");
    assert_eq!(body["created_at"], "2026-11-22T11:00:00Z");
}

#[tokio::test]
async fn webhook_answers_are_classified() {
    let cases: [(u16, &'static str, bool); 9] = [
        (202, "", true),
        (500, "", false),
        (503, "Retry-After: 7\r\n", false),
        (429, "Retry-After: 99999\r\n", false),
        (408, "", false),
        (400, "", false),
        (401, "", false),
        (404, "", false),
        (301, "Location: http://127.0.0.1:1/elsewhere\r\n", false),
    ];
    let (port, mut rx) = listener(cases.iter().map(|(c, e, _)| Some((*c, *e))).collect()).await;
    let channel = Channel::from_config(
        &webhook_channel(webhook_config(
            WebhookUrl::Inline(format!("http://127.0.0.1:{port}/hook")),
            WebhookFormat::Generic,
        )),
        None,
    )
    .expect("channel");
    for (code, _, ok) in cases {
        let result = channel.deliver(&sample()).await;
        let r = next_request(&mut rx).await;
        assert!(
            r.header("x-studywatch-signature").is_none(),
            "no secret, no signature"
        );
        match result {
            Ok(d) => {
                assert!(ok, "{code} delivered: {d:?}");
                assert!(d.detail.contains(&code.to_string()), "{d:?}");
            }
            Err(e) => {
                assert!(!ok, "{code}: {e:?}");
                let retryable = matches!(code, 408 | 429 | 500..=599);
                assert_eq!(e.retryable, retryable, "{code}: {e:?}");
                assert!(e.message.contains(&code.to_string()), "{e:?}");
                assert!(e.message.contains("answer from test"), "{e:?}");
                let expected_wait = match code {
                    503 => Some(Duration::from_secs(7)),
                    429 => Some(Duration::from_secs(3600)),
                    _ => None,
                };
                assert_eq!(e.retry_after, expected_wait, "{code}");
                if code == 301 {
                    assert!(e.message.contains("redirects are not followed"), "{e:?}");
                }
            }
        }
    }
}

#[tokio::test]
async fn webhook_down_or_silent_is_retryable() {
    let down = Channel::from_config(
        &webhook_channel(webhook_config(
            WebhookUrl::Inline(format!("http://127.0.0.1:{}/hook", free_port())),
            WebhookFormat::Generic,
        )),
        None,
    )
    .expect("channel");
    let err = down.deliver(&sample()).await.expect_err("nobody listens");
    assert!(err.retryable, "{err:?}");
    assert!(err.message.contains("cannot connect"), "{err:?}");

    let (port, mut rx) = listener(vec![None]).await;
    let mut w = webhook_config(
        WebhookUrl::Inline(format!("http://127.0.0.1:{port}/hook")),
        WebhookFormat::Generic,
    );
    w.timeout = Duration::from_millis(300);
    let silent = Channel::from_config(&webhook_channel(w), None).expect("channel");
    let started = Instant::now();
    let err = silent.deliver(&sample()).await.expect_err("no answer");
    assert!(err.retryable, "{err:?}");
    assert!(err.message.contains("timed out"), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    next_request(&mut rx).await;
}

#[tokio::test]
async fn pagerduty_triggers_and_resolves_with_the_routing_key_from_its_file() {
    let (port, mut rx) = listener(vec![Some((202, ""))]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut w = webhook_config(
        WebhookUrl::Inline(format!("http://127.0.0.1:{port}/v2/enqueue")),
        WebhookFormat::PagerDuty,
    );
    w.routing_key_file = Some(write_file(
        dir.path(),
        "key",
        "R0UT1NGKEY32CHARSLONG0000000000\n",
    ));
    let channel = Channel::from_config(&webhook_channel(w), None).expect("channel");
    assert!(!channel.takes_digest());
    assert!(!channel.accepts(Event::Digest));

    channel.deliver(&sample()).await.expect("trigger");
    let trigger: Value = serde_json::from_slice(&next_request(&mut rx).await.body).expect("json");
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], "R0UT1NGKEY32CHARSLONG0000000000");
    assert_eq!(trigger["dedup_key"], "studywatch-alarm-7");
    assert_eq!(trigger["payload"]["severity"], "critical");

    let resolve = Notification {
        id: 43,
        event: Event::Resolve,
        ..sample()
    };
    channel.deliver(&resolve).await.expect("resolve");
    let r = next_request(&mut rx).await;
    assert_eq!(r.header("x-studywatch-event"), Some("resolve"));
    let body: Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(body["event_action"], "resolve");
    assert_eq!(body["dedup_key"], "studywatch-alarm-7");

    // A digest is not sent, and says so.
    let digest = Notification {
        event: Event::Digest,
        ..sample()
    };
    let d = channel.deliver(&digest).await.expect("skipped");
    assert!(d.detail.starts_with("not sent"), "{d:?}");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), rx.recv())
            .await
            .is_err(),
        "a digest reached PagerDuty"
    );
}

#[tokio::test]
async fn a_url_from_url_file_is_used_but_never_shown() {
    let (port, mut rx) = listener(vec![Some((400, ""))]).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("http://127.0.0.1:{port}/workflows/1/invoke?api-version=1&sig=TOPSECRETSIG");
    let w = webhook_config(
        WebhookUrl::File(write_file(dir.path(), "teams.url", &format!("{url}\n"))),
        WebhookFormat::Teams,
    );
    let channel = Channel::from_config(&webhook_channel(w), None).expect("channel");
    let err = channel.deliver(&sample()).await.expect_err("400");
    assert!(!err.retryable);
    assert!(!err.message.contains("TOPSECRETSIG"), "{err:?}");
    assert!(err.message.contains("/workflows/1/invoke"), "{err:?}");
    let r = next_request(&mut rx).await;
    assert_eq!(
        r.target,
        "/workflows/1/invoke?api-version=1&sig=TOPSECRETSIG"
    );
    let body: Value = serde_json::from_slice(&r.body).expect("json");
    assert_eq!(body["type"], "message");
}

#[tokio::test]
async fn https_webhook_to_a_receiver_that_checks_the_signature_itself() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = write_file(dir.path(), "secret", "shared-key\n");
    let certs = dir.path().join("certs");
    let out = dir.path().join("received");
    let port = free_port();
    let _peer = start_peer(
        "webhook_server.py",
        port,
        &[
            "--cert-dir",
            certs.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
            "--secret-file",
            secret.to_str().expect("utf-8"),
        ],
    )
    .await;
    let mut w = webhook_config(
        WebhookUrl::Inline(format!("https://127.0.0.1:{port}/hook")),
        WebhookFormat::Generic,
    );
    w.secret_file = Some(secret);

    // Its certificate is not trusted until its CA is named.
    let untrusting = Channel::from_config(&webhook_channel(w.clone()), None).expect("channel");
    let err = untrusting.deliver(&sample()).await.expect_err("unknown CA");
    assert!(err.retryable, "{err:?}");

    w.ca_file = Some(certs.join("ca.pem"));
    let channel = Channel::from_config(&webhook_channel(w), None).expect("channel");
    channel
        .deliver(&sample())
        .await
        .expect("delivered over https");
    let received = wait_for_files(&out, 1, |n| n.ends_with(".json")).await;
    let record: Value = serde_json::from_str(&received[0]).expect("record");
    assert_eq!(record["path"], "/hook");
    assert_eq!(record["signature_ok"], true, "{record}");
    assert_eq!(record["headers"]["x-studywatch-delivery"], "42");
}
