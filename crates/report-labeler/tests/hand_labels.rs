//! Agreement with hand labels: the sample reports in `tests/data/sample_reports.txt` were
//! labelled by hand (`tests/data/sample_labels.csv`, written from reading the reports, not
//! from the labeler's output); the labeler must reproduce every cell.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use report_labeler::reports::read_reports;
use report_labeler::{Labeler, Observation};

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

#[test]
fn sample_reports_match_hand_labels() {
    let reports = read_reports(&data("sample_reports.txt")).unwrap();
    let mut rdr = csv::Reader::from_path(data("sample_labels.csv")).unwrap();
    let header: Vec<String> = rdr.headers().unwrap().iter().map(str::to_string).collect();
    assert_eq!(header[0], "report");
    let names: Vec<&str> = Observation::ALL.iter().map(|o| o.name()).collect();
    assert_eq!(header[1..], names);
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), reports.len());
    assert!(reports.len() >= 15);

    let labeler = Labeler::new();
    let mut disagreements = Vec::new();
    let mut cells = 0;
    for (i, (report, row)) in reports.iter().zip(&rows).enumerate() {
        assert_eq!(row[0].parse::<usize>().unwrap(), i);
        let got = labeler.label_detailed(report);
        for o in Observation::ALL {
            cells += 1;
            let want = &row[o.index() + 1];
            if got.labels.cell(o) != want {
                disagreements.push(format!(
                    "report {i}, {o}: hand {want:?}, labeler {:?}; mentions {:?}",
                    got.labels.cell(o),
                    got.mentions
                        .iter()
                        .filter(|m| m.observation == o)
                        .map(|m| (m.text.as_str(), m.label))
                        .collect::<Vec<_>>()
                ));
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {cells} cells disagree:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}
