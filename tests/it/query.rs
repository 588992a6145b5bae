//! The C-FIND SCU (`query::study_counts`) against a real Study Root C-FIND
//! SCP: Orthanc, holding a study that the test wrote and uploaded itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use studywatch::query::{StudyCounts, study_counts};
use studywatch::scu::{Error, Peer};

use crate::harness::{free_port, python, show};
use crate::orthanc::{Modality, ORTHANC_AE, Orthanc};

/// The calling AE Orthanc knows (its `DicomModalities` entry).
const QUERY_AE: &str = "SW_QUERY";

fn orthanc_peer(orthanc: &Orthanc) -> Peer {
    Peer {
        ae_title: ORTHANC_AE.to_owned(),
        address: format!("127.0.0.1:{}", orthanc.dicom_port),
    }
}

/// `n` CT instances of one study dealt into `series` series
/// (tests/peers/make_series.py).
fn make_study(n: usize, series: usize, dir: &Path) -> Vec<PathBuf> {
    let out = python(
        "tests/peers/make_series.py",
        &[
            &n.to_string(),
            dir.to_str().unwrap(),
            "--series",
            &series.to_string(),
        ],
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

/// A text attribute of a Part 10 file, NUL padding removed.
fn attribute(file: &Path, name: &str) -> String {
    dicom_object::open_file(file)
        .expect("a Part 10 file")
        .element_by_name(name)
        .unwrap_or_else(|e| panic!("{name} in {}: {e}", file.display()))
        .to_str()
        .expect("a text value")
        .trim_end_matches('\0')
        .to_owned()
}

#[tokio::test]
async fn counts_from_orthanc_match_the_files_uploaded() {
    let orthanc = Orthanc::start(Modality {
        ae: QUERY_AE,
        host: "127.0.0.1",
        port: free_port(),
    });
    let dir = tempfile::tempdir().unwrap();
    let files = make_study(3, 2, dir.path());

    // What the peer should report, read from the files themselves.
    let mut studies = BTreeMap::<String, u32>::new();
    let mut series = BTreeMap::<String, u32>::new();
    for file in &files {
        *studies
            .entry(attribute(file, "StudyInstanceUID"))
            .or_default() += 1;
        *series
            .entry(attribute(file, "SeriesInstanceUID"))
            .or_default() += 1;
        assert_eq!(orthanc.upload(file).await, "Success");
    }
    assert_eq!(studies.len(), 1, "one study");
    assert_eq!(series.len(), 2, "in two series");
    let study = studies.into_keys().next().unwrap();

    let peer = orthanc_peer(&orthanc);
    let counts = study_counts(QUERY_AE, &peer, &study)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", orthanc.log()));
    assert_eq!(
        counts,
        Some(StudyCounts {
            study_instances: Some(3),
            series: series.into_iter().map(|(uid, n)| (uid, Some(n))).collect(),
        })
    );

    // A study Orthanc does not hold: no STUDY-level match.
    let unknown = study_counts(QUERY_AE, &peer, "1.2.826.0.1.3680043.10.1234.9.77")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", orthanc.log()));
    assert_eq!(unknown, None);

    // A caller Orthanc does not list may associate but not query.
    match study_counts("NOT_LISTED", &peer, &study).await {
        Err(Error::Protocol(_)) => {}
        other => panic!("an unlisted caller got {other:?}"),
    }
}

#[tokio::test]
async fn nothing_listening_is_an_association_error() {
    let peer = Peer {
        ae_title: ORTHANC_AE.to_owned(),
        address: format!("127.0.0.1:{}", free_port()),
    };
    match study_counts(QUERY_AE, &peer, "1.2.826.0.1.3680043.10.1234.9.1").await {
        Err(Error::Association(address, _)) => assert_eq!(address, peer.address),
        other => panic!("expected an association error, got {other:?}"),
    }
}
