//! TestGateway: the real gateway, in-process on an ephemeral loopback port,
//! with its own temp storage and catalog; plus helpers to drive real peers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use studywatch::catalog::Store;
use studywatch::config::Config;
use tokio_util::sync::CancellationToken;

pub const AE: &str = "STUDYWATCH";

/// The repository root (for test-dicom/ and tests/peers/).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_studywatch"))
}

/// Extra TOML for the test config, merged by section.
#[derive(Default, Clone)]
pub struct Options {
    /// None keeps the test default (true).
    pub accept_unknown_callers: Option<bool>,
    /// None keeps the test default ("10s").
    pub read_timeout: Option<String>,
    pub dicom_extra: String,
    pub storage_extra: String,
    pub peers: String,
    /// Extra keys for `[reports.hl7]` (e.g. `allowed_senders = [...]`).
    pub hl7_extra: String,
    /// Further sections after `[reports.hl7]` (`[reports.hl7.fields]`, ...).
    pub reports_extra: String,
    /// The HL7 port of a gateway process; None picks a free one.
    pub hl7_port: Option<u16>,
    /// The HTTP port of a gateway process; None picks a free one.
    pub http_port: Option<u16>,
    /// Extra keys for `[http]` (e.g. `users_file = "..."`).
    pub http_extra: String,
    /// Whole sections appended at the end (`[watchdog]`, `[notify]`, ...).
    pub tail: String,
}

impl Options {
    pub fn default_denying() -> Options {
        Options {
            accept_unknown_callers: Some(false),
            ..Options::default()
        }
    }
}

pub struct TestGateway {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub hl7_port: u16,
    pub http_port: u16,
    pub config_path: PathBuf,
    shutdown: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub fn config_text(
    dir: &Path,
    listen: &str,
    hl7_listen: &str,
    http_listen: &str,
    opts: &Options,
) -> String {
    format!(
        r#"version = 1
[log]
level = "debug"
[dicom]
ae_title = "{AE}"
listen = "{listen}"
accept_unknown_callers = {accept}
read_timeout = "{read_timeout}"
{dicom_extra}
{peers}
[storage]
path = "{storage}"
min_free_bytes = 0
{storage_extra}
[catalog]
path = "{catalog}"
[reports.hl7]
listen = "{hl7_listen}"
frame_timeout = "5s"
{hl7_extra}
{reports_extra}
[http]
listen = "{http_listen}"
{http_extra}
{tail}
"#,
        hl7_extra = opts.hl7_extra,
        reports_extra = opts.reports_extra,
        tail = opts.tail,
        http_extra = opts.http_extra,
        accept = opts.accept_unknown_callers.unwrap_or(true),
        read_timeout = opts.read_timeout.as_deref().unwrap_or("10s"),
        dicom_extra = opts.dicom_extra,
        peers = opts.peers,
        storage = dir.join("storage").display(),
        storage_extra = opts.storage_extra,
        catalog = dir.join("catalog.sqlite3").display(),
    )
}

impl TestGateway {
    pub fn start() -> TestGateway {
        TestGateway::with(Options::default())
    }

    pub fn with(opts: Options) -> TestGateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let hl7_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let hl7_port = hl7_listener.local_addr().unwrap().port();
        let http_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let http_port = http_listener.local_addr().unwrap().port();
        let text = config_text(
            dir.path(),
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{hl7_port}"),
            &format!("127.0.0.1:{http_port}"),
            &opts,
        );
        let config_path = dir.path().join("studywatch.toml");
        std::fs::write(&config_path, &text).unwrap();
        let config = Config::from_toml_str(&text).expect("test config is valid");
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                listener.set_nonblocking(true).unwrap();
                let dicom = tokio::net::TcpListener::from_std(listener).unwrap();
                hl7_listener.set_nonblocking(true).unwrap();
                let hl7 = tokio::net::TcpListener::from_std(hl7_listener).unwrap();
                http_listener.set_nonblocking(true).unwrap();
                let http = tokio::net::TcpListener::from_std(http_listener).unwrap();
                let _ = ready_tx.send(());
                let listeners = studywatch::app::Listeners { dicom, hl7, http };
                studywatch::app::serve(config, listeners, token)
                    .await
                    .expect("gateway ran");
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("gateway started");
        let gw = TestGateway {
            dir,
            port,
            hl7_port,
            http_port,
            config_path,
            shutdown,
            thread: Some(thread),
        };
        gw.wait_ready();
        gw
    }

    fn wait_ready(&self) {
        wait_for(
            "the gateway to answer C-ECHO",
            Duration::from_secs(20),
            || {
                // A rejection (when the config denies unknown callers) also
                // shows the gateway is answering.
                let out = echoscu(self.port, &["-aet", "PROBE"]);
                out.status.success() || show(&out).contains("Rejected")
            },
        );
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    pub fn catalog(&self) -> Store {
        Store::open(&self.dir.path().join("catalog.sqlite3"), true).expect("catalog opens")
    }

    /// The newest alarm of `kind` about `subject`, as the catalog holds it
    /// (the JSON shapes do not carry the subject).
    pub fn alarm(&self, kind: &str, subject: &str) -> Option<studywatch::catalog::AlarmRow> {
        self.catalog()
            .alarms(&studywatch::catalog::AlarmFilter::default())
            .expect("alarms")
            .into_iter()
            .filter(|a| a.kind == kind && a.subject == subject)
            .max_by_key(|a| a.id)
    }

    /// Runs the CLI against this gateway's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(bin())
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .output()
            .expect("run studywatch")
    }

    /// [`cli_json_at`] on this gateway's config.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        cli_json_at(&self.config_path, args)
    }
}

/// Runs the CLI with `config`, which must succeed, and parses its JSON.
pub fn cli_json_at(config: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(bin())
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("run studywatch");
    assert!(out.status.success(), "{}", show(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", show(&out)))
}

/// Whether `studywatch alarms` lists an alarm of `kind` about `study` in
/// `state`.
pub fn has_alarm(config: &Path, kind: &str, study: &str, state: &str) -> bool {
    cli_json_at(config, &["alarms", "--json"])
        .as_array()
        .expect("a list")
        .iter()
        .any(|a| a["kind"] == kind && a["study_uid"] == study && a["state"] == state)
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits for a condition, polling, up to a deadline; panics naming it.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

pub fn echoscu(port: u16, extra: &[&str]) -> Output {
    Command::new("/usr/bin/echoscu")
        .args(["-aec", AE])
        .args(extra)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .output()
        .expect("run echoscu (DCMTK)")
}

/// Runs a DCMTK tool (by absolute path: pynetdicom installs apps of the
/// same names).
pub fn dcmtk(tool: &str, args: &[&str]) -> Output {
    Command::new(format!("/usr/bin/{tool}"))
        .env("TCP_NODELAY", "1")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {tool}: {e}"))
}

pub fn python(script: &str, args: &[&str]) -> Output {
    Command::new("python3")
        .arg(repo().join(script))
        .args(args)
        .output()
        .expect("run python3")
}

/// Sends `file` with DCMTK storescu under the calling AE `aet` and asserts
/// that it succeeded.
pub fn storescu_as(gw: &TestGateway, aet: &str, file: &Path) {
    let out = dcmtk(
        "storescu",
        &[
            "-aet",
            aet,
            "-aec",
            AE,
            "127.0.0.1",
            &gw.port.to_string(),
            file.to_str().expect("test paths are UTF-8"),
        ],
    );
    assert!(out.status.success(), "{}", show(&out));
}

pub fn show(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One line of test-dicom/MANIFEST.
#[derive(Clone, Debug)]
pub struct Case {
    pub path: String,
    pub sop_instance: String,
    pub ts: String,
    pub status: u16,
    pub comment: Option<String>,
}

pub fn manifest() -> Vec<Case> {
    let text = std::fs::read_to_string(repo().join("test-dicom/MANIFEST")).expect("MANIFEST");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Case {
                path: cols[0].to_owned(),
                sop_instance: cols[2].to_owned(),
                ts: cols[3].to_owned(),
                status: u16::from_str_radix(cols[4], 16).expect("hex status"),
                comment: Some(cols[5].to_owned()).filter(|c| c != "-"),
            }
        })
        .collect()
}

pub fn corpus(path: &str) -> PathBuf {
    repo().join("test-dicom").join(path)
}

/// The data set bytes of a Part 10 file (everything after the file meta).
pub fn data_set_bytes(path: &Path) -> Vec<u8> {
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(path).unwrap();
    let mut pre = [0u8; 128];
    f.read_exact(&mut pre).unwrap();
    dicom_object::meta::FileMetaTable::from_reader(&mut f).unwrap();
    let pos = f.stream_position().unwrap();
    let mut all = Vec::new();
    f.seek(std::io::SeekFrom::Start(pos)).unwrap();
    f.read_to_end(&mut all).unwrap();
    all
}

/// The gateway as a separate process (for kill -9, signals and strace).
pub struct GatewayProcess {
    pub child: std::process::Child,
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes a config for a gateway process under `dir` listening on `port`.
pub fn write_process_config(dir: &Path, port: u16, opts: &Options) -> PathBuf {
    let path = dir.join("studywatch.toml");
    let hl7 = format!("127.0.0.1:{}", opts.hl7_port.unwrap_or_else(free_port));
    let http = format!("127.0.0.1:{}", opts.http_port.unwrap_or_else(free_port));
    std::fs::write(
        &path,
        config_text(dir, &format!("127.0.0.1:{port}"), &hl7, &http, opts),
    )
    .unwrap();
    path
}

impl GatewayProcess {
    /// Starts `studywatch serve`, optionally under a wrapper (e.g. strace),
    /// and waits until it answers C-ECHO.
    pub fn start(config: &Path, port: u16, wrapper: &[&str]) -> GatewayProcess {
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        let log =
            std::fs::File::create(config.with_extension(format!("log.{}", std::process::id())))
                .unwrap();
        let child = cmd
            .arg("--config")
            .arg(config)
            .arg("serve")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start studywatch");
        let gw = GatewayProcess { child };
        wait_for(
            "the gateway process to answer C-ECHO",
            Duration::from_secs(30),
            || echoscu(port, &["-aet", "PROBE"]).status.success(),
        );
        gw
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Signals the gateway: the child itself, or when it runs under a
    /// wrapper (strace), the wrapper's child.
    pub fn signal(&self, sig: &str) {
        let pid = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let target = children
            .split_whitespace()
            .next()
            .map(str::to_owned)
            .unwrap_or_else(|| pid.to_string());
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(target)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Generates `n` small CT instances named by SOP Instance UID.
pub fn make_series(n: usize, dir: &Path) -> Vec<PathBuf> {
    let out = python(
        "tests/peers/make_series.py",
        &[&n.to_string(), dir.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", show(&out));
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), n);
    files
}

/// A real SMTP server (python3-aiosmtpd through tests/peers/smtp_server.py)
/// on a loopback port, keeping every mail as a file; stopped on drop.
pub struct SmtpPeer {
    child: std::process::Child,
    pub maildir: PathBuf,
}

impl SmtpPeer {
    pub fn start(port: u16, maildir: &Path) -> SmtpPeer {
        let child = Command::new("/usr/bin/python3")
            .arg(repo().join("tests/peers/smtp_server.py"))
            .args(["--port", &port.to_string(), "--maildir"])
            .arg(maildir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the SMTP server (python3-aiosmtpd)");
        wait_for("the SMTP server to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        SmtpPeer {
            child,
            maildir: maildir.to_path_buf(),
        }
    }

    /// Every mail received so far, as text, oldest first.
    pub fn mails(&self) -> Vec<String> {
        mails(&self.maildir)
    }
}

/// The mails in a maildir, as text, in the order they arrived.
pub fn mails(maildir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(maildir.join("new")) else {
        return Vec::new();
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .map(|e| {
            (
                e.metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH),
                e.path(),
            )
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|(_, p)| std::fs::read_to_string(p).ok())
        .collect()
}

impl Drop for SmtpPeer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Every `.dcm` file under the storage root outside the bookkeeping folders.
pub fn stored_files(storage: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(storage).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() && ![".tmp", "quarantine", "rejected"].contains(&name.as_str()) {
            walk(&p, &mut out);
        }
    }
    out
}

/// pynetdicom's raw C-STORE SCU (tests/peers/rawstore.py) aimed at `port`,
/// ready for its file arguments.
pub fn rawstore(port: u16, calling_ae: &str) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(repo().join("tests/peers/rawstore.py")).args([
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--aet",
        calling_ae,
        "--aec",
        AE,
    ]);
    cmd
}

/// Opens an association from pynetdicom and holds it for `seconds`;
/// returns once it is established.
pub fn hold_association(port: u16, seconds: u32) -> std::process::Child {
    use std::io::BufRead;
    let mut holder = Command::new("python3")
        .arg(repo().join("tests/peers/dimse_probe.py"))
        .args([
            "hold",
            "--seconds",
            &seconds.to_string(),
            "--port",
            &port.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("established"), "{first}");
    holder
}

/// A plain HTTP/1.1 GET on loopback: `(status, body)`. Enough for the
/// gateway's own endpoints, without pulling an HTTP client into the tests.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect HTTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read HTTP answer");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("HTTP status");
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

/// The file meta group of a Part 10 file.
fn meta_of(path: &Path) -> dicom_object::meta::FileMetaTable {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut pre = [0u8; 128];
    f.read_exact(&mut pre).unwrap();
    dicom_object::meta::FileMetaTable::from_reader(&mut f).unwrap()
}

/// The SOP Instance UID in a Part 10 file's meta group.
pub fn sop_of(path: &Path) -> String {
    meta_of(path)
        .media_storage_sop_instance_uid()
        .trim_end_matches(['\0', ' '])
        .to_owned()
}

/// The Transfer Syntax UID in a Part 10 file's meta group.
pub fn ts_of(path: &Path) -> String {
    meta_of(path)
        .transfer_syntax()
        .trim_end_matches(['\0', ' '])
        .to_owned()
}

/// The Study Instance UID of a file's data set.
pub fn study_of(path: &Path) -> String {
    let obj = dicom_object::open_file(path).unwrap();
    obj.element(dicom_dictionary_std::tags::STUDY_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(['\0', ' '])
        .to_owned()
}

/// Writes one small valid instance with tests/peers/make_study.py into `dir`
/// (`args` are its options: `--study-uid` and any others); returns its path.
pub fn make_study(dir: &Path, args: &[&str]) -> PathBuf {
    let mut all = vec![dir.to_str().expect("UTF-8 path")];
    all.extend_from_slice(args);
    let out = python("tests/peers/make_study.py", &all);
    assert!(out.status.success(), "{}", show(&out));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
