//! The run summary of `varad score --out`: `results.csv`, one row per image, each row
//! written and synced to disk as soon as its image is scored, so that a crash or a power
//! cut part-way through a run loses no result already reported.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use varad::score::Decision;
use varad::{Error, Result};

use crate::score_layout::Existing;

/// The summary's columns, in order.
pub const HEADER: &str = "path,score,normalised_score,decision,regions,p_value";

/// One image's line of the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow<'a> {
    /// The image as given on the command line (or found in a folder given there).
    pub path: &'a str,
    /// The image score.
    pub score: f32,
    /// The calibrated results; `None` for a model without a calibration, whose cells are
    /// left empty.
    pub assessed: Option<Assessed>,
}

/// The calibrated part of a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assessed {
    /// The image score over the calibration's image threshold (1.0 is the threshold).
    pub normalised_score: f32,
    /// Pass, review or fail.
    pub decision: Decision,
    /// Defect regions found (the JSON lists at most the configured number of them).
    pub regions: usize,
    /// The conformal p-value of the score against the calibration's normal scores.
    pub p_value: f64,
}

/// An open summary file.
pub struct Summary {
    file: File,
    path: PathBuf,
}

impl Summary {
    /// Creates the summary at `path` with its header line; an existing file is refused
    /// unless `existing` is [`Existing::Overwrite`], then it is emptied first.
    pub fn create(path: &Path, existing: Existing) -> Result<Self> {
        let mut options = OpenOptions::new();
        match existing {
            Existing::Refuse => options.write(true).create_new(true),
            Existing::Overwrite => options.write(true).create(true).truncate(true),
        };
        let file = options
            .open(path)
            .map_err(|e| Error::io(path, "create", &e))?;
        let mut summary = Summary {
            file,
            path: path.to_path_buf(),
        };
        summary.write_line(HEADER)?;
        Ok(summary)
    }

    /// Appends `row` and syncs it to disk.
    pub fn append(&mut self, row: &SummaryRow) -> Result<()> {
        self.write_line(&format_row(row))
    }

    fn write_line(&mut self, line: &str) -> Result<()> {
        // An unbuffered file: each line reaches the operating system in one write, and
        // the sync puts it on the disk before the next image is scored.
        self.file
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, "write", &e))
    }
}

/// The lower-case decision names the JSON verdicts use.
fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Pass => "pass",
        Decision::Review => "review",
        Decision::Fail => "fail",
    }
}

fn format_row(row: &SummaryRow) -> String {
    let mut cells = vec![quoted(row.path), row.score.to_string()];
    match &row.assessed {
        Some(a) => cells.extend([
            a.normalised_score.to_string(),
            decision_name(a.decision).to_string(),
            a.regions.to_string(),
            a.p_value.to_string(),
        ]),
        None => cells.extend([String::new(), String::new(), String::new(), String::new()]),
    }
    cells.join(",")
}

/// `text` as one CSV field (RFC 4180): in double quotes, inner quotes doubled, when it
/// holds a comma, a quote or a line break.
fn quoted(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_needed() {
        assert_eq!(quoted("test/good/000.png"), "test/good/000.png");
        assert_eq!(quoted("a,b.png"), "\"a,b.png\"");
        assert_eq!(quoted("say \"x\".png"), "\"say \"\"x\"\".png\"");
        assert_eq!(quoted("two\nlines.png"), "\"two\nlines.png\"");
    }

    #[test]
    fn rows_with_and_without_a_calibration() {
        let row = SummaryRow {
            path: "a,1.png",
            score: 0.25,
            assessed: Some(Assessed {
                normalised_score: 1.5,
                decision: Decision::Fail,
                regions: 3,
                p_value: 0.125,
            }),
        };
        assert_eq!(format_row(&row), "\"a,1.png\",0.25,1.5,fail,3,0.125");
        let row = SummaryRow {
            path: "b.png",
            score: 2.0,
            assessed: None,
        };
        assert_eq!(format_row(&row), "b.png,2,,,,");
    }

    #[test]
    fn each_row_is_on_disk_when_appended() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.csv");
        let mut summary = Summary::create(&path, Existing::Refuse).unwrap();
        let row = SummaryRow {
            path: "x.png",
            score: 1.0,
            assessed: None,
        };
        summary.append(&row).unwrap();
        // Read while the summary is still open, as after a crash.
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{HEADER}\nx.png,1,,,,\n")
        );
        drop(summary);
        let err = Summary::create(&path, Existing::Refuse).err().unwrap();
        assert!(err.message().contains("results.csv"), "{}", err.message());
        Summary::create(&path, Existing::Overwrite).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{HEADER}\n")
        );
    }
}
