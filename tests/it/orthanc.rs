//! Orthanc (Debian's `orthanc`, 1.10.1) as a real PACS peer: a process on
//! loopback ports with its own storage in a temp dir, which knows the
//! gateway as a modality, and async helpers over its REST API.
//!
//! What Orthanc 1.10.1 does in the roles the tests use, as observed with
//! DCMTK and pynetdicom peers:
//!
//! - **C-STORE SCP**: it checks the called AE title (`DicomCheckCalledAet`:
//!   any other title is rejected, "called AE title not recognized") and takes
//!   instances from any calling AE (`DicomAlwaysAllowStore`). An instance it
//!   already holds is answered with success and not replaced
//!   (`OverwriteInstances` is false; REST says `"AlreadyStored"`).
//! - **C-FIND SCP** (Study Root): it answers only callers listed in
//!   `DicomModalities` (`DicomAlwaysAllowFind` is false); anyone else gets
//!   the association aborted on the C-FIND-RQ. It fills in Number of Study
//!   Related Instances (0020,1208) and Series (0020,1206) at STUDY level, and
//!   Number of Series Related Instances (0020,1209) at SERIES level. Each
//!   match also carries Specific Character Set (ISO_IR 100) and Retrieve AE
//!   Title, unasked; series come in no particular order. Offered explicit
//!   and implicit VR little endian, it accepts explicit. It leaves Nagle's
//!   algorithm on, so a caller that lets its delayed ACKs run waits about
//!   40 ms per query.
//! - **Storage commitment SCP** (Push Model, N-ACTION on
//!   1.2.840.10008.1.20.1.1): only from a caller listed in `DicomModalities`
//!   (else the association is aborted, no N-ACTION-RSP). The N-ACTION-RSP is
//!   success with no data set and no Action Type ID. The answer always comes
//!   on a *new* association to that modality's host and port, never on the
//!   requesting one (even while it is still open), opened by a job within a
//!   few milliseconds of the N-ACTION-RSP, so it can arrive before the
//!   requester has read that response. Calling AE: `DicomAet` (or the
//!   modality's `LocalAet`); called AE: the modality's AET. One presentation
//!   context, 1.2.840.10008.1.20.1 with implicit and explicit VR little
//!   endian, and an SCP/SCU Role Selection item for it with SCU role 0 and
//!   SCP role 1 (Orthanc still sends the report when the acceptor does not
//!   answer the role item). One N-EVENT-REPORT-RQ per transaction: Event
//!   Type 1 when every instance is held (Referenced SOP Sequence only),
//!   Event Type 2 otherwise (Failed SOP Sequence, and the Referenced SOP
//!   Sequence even when empty). Failure Reason 0112H (274) for an instance
//!   it does not hold, 0119H (281) for one held under another SOP class.
//!   When the report cannot be delivered (refused connection, or any status
//!   but success in the N-EVENT-REPORT-RSP) the job fails and is not retried;
//!   `POST /jobs/{id}/resubmit` sends it again.
//! - **Process**: the REST API answers about 0.15 to 0.3 s after spawn.
//!   SIGTERM takes about 4 s to exit, so `stop` kills; instances stored
//!   before a kill are there after a restart on the same storage, and the
//!   ports can be bound again at once.
//!
//! 1.10.1 has no option to bind its DICOM port to one address: it listens
//! on every interface. Its HTTP server also listens on every interface, but
//! with `RemoteAccessAllowed` false it refuses (401) every client but
//! loopback.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{free_port, http_get, study_of, wait_for};

pub const ORTHANC: &str = "/usr/sbin/Orthanc";

/// Orthanc's own AE title: the called AE for whatever the gateway sends it,
/// and the calling AE of its storage commitment reports.
pub const ORTHANC_AE: &str = "ORTHANC";

/// The gateway as Orthanc's `DicomModalities` knows it: where storage
/// commitment reports go, and the calling AE it accepts N-ACTION and
/// C-FIND from.
pub struct Modality<'a> {
    pub ae: &'a str,
    pub host: &'a str,
    pub port: u16,
}

/// A running Orthanc; killed on drop.
pub struct Orthanc {
    dir: tempfile::TempDir,
    pub dicom_port: u16,
    pub http_port: u16,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Orthanc {
    /// Writes the config and starts Orthanc on free loopback ports; returns
    /// once both its DICOM port and its REST API answer.
    pub fn start(gateway: Modality) -> Orthanc {
        let dir = tempfile::tempdir().expect("temp dir");
        let dicom_port = free_port();
        let http_port = free_port();
        for sub in ["storage", "tmp"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let config = config(dir.path(), dicom_port, http_port, &gateway);
        std::fs::write(
            dir.path().join("orthanc.json"),
            serde_json::to_string_pretty(&config).unwrap(),
        )
        .unwrap();
        let http = reqwest::Client::builder()
            // A test may call the helpers from more than one runtime; a
            // pooled connection would die with the runtime that opened it.
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        let mut orthanc = Orthanc {
            dir,
            dicom_port,
            http_port,
            child: None,
            http,
        };
        orthanc.start_again();
        orthanc
    }

    /// Starts the process again on the same config, storage and ports.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "Orthanc is already running");
        // Appending keeps the log of every run of this peer in one file.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(ORTHANC)
            .args(["--verbose", "--trace-dicom"])
            .arg(self.dir.path().join("orthanc.json"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start Orthanc (Debian package orthanc)");
        let (dicom_port, http_port, log_path) = (self.dicom_port, self.http_port, self.log_path());
        let child = self.child.insert(child);
        wait_for("Orthanc to answer", Duration::from_secs(30), || {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("Orthanc exited ({status}) while starting:\n{log}");
            }
            std::net::TcpStream::connect(("127.0.0.1", dicom_port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", http_port)).is_ok()
                && http_get(http_port, "/system").0 == 200
        });
    }

    /// Kills the process (SIGTERM would take seconds); the storage stays.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Orthanc's log (every run), for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("orthanc.log")
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    /// Stores a Part 10 file through REST (`POST /instances`); returns
    /// Orthanc's status, `"Success"` or `"AlreadyStored"`.
    pub async fn upload(&self, file: &Path) -> String {
        let body = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let answer: Value = self
            .http
            .post(self.url("/instances"))
            .body(body)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("POST /instances")
            .json()
            .await
            .expect("JSON answer to POST /instances");
        answer["Status"]
            .as_str()
            .unwrap_or_else(|| panic!("no Status in {answer}"))
            .to_owned()
    }

    /// The SOP Instance UIDs Orthanc holds in a study (empty when it holds
    /// no such study), through `POST /tools/find` at instance level.
    pub async fn sop_instances(&self, study_uid: &str) -> BTreeSet<String> {
        let query = json!({
            "Level": "Instance",
            "Expand": true,
            "Query": { "StudyInstanceUID": study_uid },
        });
        let found: Vec<Value> = self
            .http
            .post(self.url("/tools/find"))
            .json(&query)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("POST /tools/find")
            .json()
            .await
            .expect("JSON answer to POST /tools/find");
        found
            .iter()
            .map(|i| {
                i["MainDicomTags"]["SOPInstanceUID"]
                    .as_str()
                    .unwrap_or_else(|| panic!("no SOPInstanceUID in {i}"))
                    .to_owned()
            })
            .collect()
    }

    /// How many instances Orthanc holds in all (`GET /statistics`).
    pub async fn instance_count(&self) -> u64 {
        let stats: Value = self
            .http
            .get(self.url("/statistics"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("GET /statistics")
            .json()
            .await
            .expect("JSON answer to GET /statistics");
        stats["CountInstances"]
            .as_u64()
            .unwrap_or_else(|| panic!("no CountInstances in {stats}"))
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The whole config. Orthanc silently ignores keys it does not know, so
/// every key here is one that 1.10.1 documents (`Orthanc --config=-`).
fn config(dir: &Path, dicom_port: u16, http_port: u16, gateway: &Modality) -> Value {
    json!({
        "Name": "studywatch-test-peer",
        "StorageDirectory": dir.join("storage"),
        "IndexDirectory": dir.join("storage"),
        "TemporaryDirectory": dir.join("tmp"),
        // The files are written but not fsynced: a killed process loses
        // nothing the kernel already holds, and tests run faster.
        "SyncStorageArea": false,
        "Plugins": [],
        "LuaScripts": [],
        "HttpPort": http_port,
        "RemoteAccessAllowed": false,
        "AuthenticationEnabled": false,
        "OrthancExplorerEnabled": false,
        "WebDavEnabled": false,
        "DicomServerEnabled": true,
        "DicomAet": ORTHANC_AE,
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": true,
        "DicomAlwaysAllowEcho": true,
        "DicomAlwaysAllowStore": true,
        "DicomAlwaysAllowFind": false,
        // Modalities are known by AE title alone.
        "DicomCheckModalityHost": false,
        "DicomModalities": {
            "gateway": {
                "AET": gateway.ae,
                "Host": gateway.host,
                "Port": gateway.port,
                // N-ACTION in, N-EVENT-REPORT out (the default, spelled out).
                "AllowStorageCommitment": true,
            }
        },
        // How long Orthanc waits for the gateway when it sends a report.
        "DicomScuTimeout": 5,
        // A restarted Orthanc must not replay old report jobs.
        "SaveJobs": false,
    })
}

/// Proves the harness, not the gateway: DCMTK storescu stores into Orthanc,
/// REST lists and counts it, and it survives a restart.
#[tokio::test]
async fn orthanc_harness_lists_what_storescu_sent_and_keeps_it_across_a_restart() {
    use crate::harness::{AE, corpus, dcmtk, manifest, show};

    let mut orthanc = Orthanc::start(Modality {
        ae: AE,
        host: "127.0.0.1",
        port: free_port(),
    });
    let ct = corpus("valid/ct_implicit_le.dcm");
    let sr = corpus("valid/sr_basic_text.dcm");
    let sop = |path: &str| {
        manifest()
            .into_iter()
            .find(|c| c.path == path)
            .expect("in MANIFEST")
            .sop_instance
    };
    let study = study_of(&ct);
    assert_eq!(study, study_of(&sr), "the corpus puts both in one study");

    let port = orthanc.dicom_port.to_string();
    let out = dcmtk(
        "storescu",
        &[
            "-aet",
            AE,
            "-aec",
            ORTHANC_AE,
            "127.0.0.1",
            &port,
            ct.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}\n{}", show(&out), orthanc.log());
    assert_eq!(
        orthanc.sop_instances(&study).await,
        BTreeSet::from([sop("valid/ct_implicit_le.dcm")])
    );

    assert_eq!(orthanc.upload(&sr).await, "Success");
    assert_eq!(orthanc.upload(&sr).await, "AlreadyStored");
    assert_eq!(orthanc.instance_count().await, 2);

    orthanc.stop();
    orthanc.start_again();
    assert_eq!(
        orthanc.sop_instances(&study).await,
        BTreeSet::from([
            sop("valid/ct_implicit_le.dcm"),
            sop("valid/sr_basic_text.dcm")
        ])
    );
    assert_eq!(orthanc.instance_count().await, 2);
    assert!(orthanc.sop_instances("1.2.3.4.5").await.is_empty());
}
