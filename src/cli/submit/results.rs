//! The results file of `submit --csv`: one line per input row, in the input's
//! order, whatever happened to the row.
//!
//! Columns: `rowId, inputUrl, finalUrl, conclusion, finalStatus,
//! redirectCount, hops` (the hop list as protocol.md §5 JSON), then `jobId`,
//! `status` (the job's — `done`, `failed`, `queued`, `leased` — or, for a row
//! without a job, `invalid`, `refused`, `conflict` or `unsent`),
//! `idempotencyKey` and `error`. Every cell is a pure function of the job, so
//! a second run of the same file on the same day writes the same bytes.
//!
//! The file is written to a private temporary file beside the target and
//! renamed over it at the end: a crash never leaves half a file, an earlier
//! file stays whole until the new one is complete, and the URLs it holds are
//! readable by the owner only (0600). An existing file is replaced only with
//! `--overwrite`; that is checked before anything is submitted.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tempfile::NamedTempFile;

use link_peeler_wire::protocol::{Job, JobStatus};

use super::rows::Row;

/// The results file's header line.
pub const HEADER: [&str; 11] = [
    "rowId",
    "inputUrl",
    "finalUrl",
    "conclusion",
    "finalStatus",
    "redirectCount",
    "hops",
    "jobId",
    "status",
    "idempotencyKey",
    "error",
];

/// Where a row stands.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// It has a job (finished or not).
    Job(Box<Job>),
    /// It has none: `status` is `invalid`, `refused`, `conflict` or `unsent`.
    NoJob { status: &'static str, error: String },
}

impl Outcome {
    /// Still waiting for the job to finish.
    pub fn is_pending(&self) -> bool {
        matches!(self, Outcome::Job(job) if !is_finished(job))
    }
}

/// `done` or `failed`: the job will not change again.
pub fn is_finished(job: &Job) -> bool {
    matches!(job.status, JobStatus::Done | JobStatus::Failed)
}

/// The default results path: the rows file with the extension `.results.csv`.
pub fn default_path(rows_file: &Path) -> PathBuf {
    rows_file.with_extension("results.csv")
}

/// One results line.
pub fn record(row: &Row, outcome: &Outcome) -> Result<[String; 11], serde_json::Error> {
    let mut cells: [String; 11] = Default::default();
    cells[0].clone_from(&row.row_id);
    cells[1].clone_from(&row.url);
    cells[9].clone_from(&row.idempotency_key);
    match outcome {
        Outcome::Job(job) => {
            if let Some(r) = &job.result {
                cells[2].clone_from(&r.final_url);
                cells[3] = r.conclusion.as_str().to_owned();
                cells[4] = r.final_status.map(|s| s.to_string()).unwrap_or_default();
                cells[5] = r.redirect_count.to_string();
                cells[6] = serde_json::to_string(&r.hops)?;
                cells[10] = r.error.clone().unwrap_or_default();
            }
            cells[7].clone_from(&job.job_id);
            cells[8] = job.status.as_str().to_owned();
            if let Some(e) = &job.error {
                cells[10] = format!("{}: {}", e.code, e.message);
            }
        }
        Outcome::NoJob { status, error } => {
            cells[8] = (*status).to_owned();
            cells[10].clone_from(error);
        }
    }
    Ok(cells)
}

/// A results file being prepared: the target is checked and a private
/// temporary file beside it is open.
pub struct ResultsFile {
    path: PathBuf,
    temp: NamedTempFile,
    overwrite: bool,
}

impl ResultsFile {
    /// Checks the overwrite rules and opens the temporary file, so that a
    /// results file that cannot be written fails the run before any job is created.
    pub fn prepare(path: &Path, rows_file: &Path, overwrite: bool) -> anyhow::Result<ResultsFile> {
        if path.is_dir() {
            bail!("the results file {} is a directory", path.display());
        }
        if path.exists() {
            let same = match (path.canonicalize(), rows_file.canonicalize()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            };
            if same {
                bail!(
                    "the results file {} is the rows file; choose another --out",
                    path.display()
                );
            }
            if !overwrite {
                bail!(
                    "the results file {} exists; pass --overwrite to replace it, or choose another --out",
                    path.display()
                );
            }
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // tempfile creates the file 0600 on Unix: the rename keeps it private.
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(dir)
            .with_context(|| format!("cannot write the results file in {}", dir.display()))?;
        Ok(ResultsFile {
            path: path.to_owned(),
            temp,
            overwrite,
        })
    }

    /// Writes every line, syncs and renames the file into place.
    pub fn finish<'a>(
        mut self,
        lines: impl IntoIterator<Item = (&'a Row, &'a Outcome)>,
    ) -> anyhow::Result<()> {
        let what = || format!("cannot write the results file {}", self.path.display());
        {
            let mut out = csv::Writer::from_writer(self.temp.as_file_mut());
            out.write_record(HEADER).with_context(what)?;
            for (row, outcome) in lines {
                out.write_record(record(row, outcome)?).with_context(what)?;
            }
            out.flush().with_context(what)?;
        }
        self.temp.as_file().sync_all().with_context(what)?;
        let path = self.path.clone();
        let persisted = if self.overwrite {
            self.temp.persist(&path)
        } else {
            self.temp.persist_noclobber(&path)
        };
        persisted.map_err(|e| anyhow::anyhow!("{}: {}", what(), e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use link_peeler_wire::protocol::{Conclusion, Hop, JobError, ResolutionResult};

    fn row() -> Row {
        Row {
            line: 2,
            row_id: "17".into(),
            url: "https://a.test/x".into(),
            source: None,
            idempotency_key: "2026-12-02/row-17".into(),
        }
    }

    fn job(status: JobStatus) -> Job {
        Job {
            job_id: "job_1".into(),
            idempotency_key: "2026-12-02/row-17".into(),
            tracking_url: "https://a.test/x".into(),
            source: None,
            row_id: Some("17".into()),
            status,
            attempts: 1,
            created_at: "2026-12-02T00:00:00.000Z".into(),
            updated_at: "2026-12-02T00:00:01.000Z".into(),
            resolved_by: None,
            result: None,
            error: None,
            webhook: None,
        }
    }

    #[test]
    fn a_done_job_fills_every_result_column() {
        let mut j = job(JobStatus::Done);
        j.result = Some(ResolutionResult {
            input_url: "https://a.test/x".into(),
            final_url: "https://b.test/y".into(),
            conclusion: Conclusion::Resolved,
            final_status: Some(200),
            redirect_count: 0,
            elapsed_ms: 3,
            error: None,
            hops: vec![Hop {
                url: "https://a.test/x".into(),
                status: Some(200),
                redirect_kind: None,
                location: None,
                elapsed_ms: 3,
                remote_addr: None,
                method: None,
                note: None,
            }],
        });
        let r = record(&row(), &Outcome::Job(Box::new(j))).unwrap();
        assert_eq!(
            r[..6],
            [
                "17",
                "https://a.test/x",
                "https://b.test/y",
                "resolved",
                "200",
                "0"
            ]
        );
        assert!(
            r[6].starts_with(r#"[{"url":"https://a.test/x","status":200"#),
            "{}",
            r[6]
        );
        assert_eq!(r[7..], ["job_1", "done", "2026-12-02/row-17", ""]);
    }

    #[test]
    fn failed_jobs_and_rows_without_a_job_say_why() {
        let mut j = job(JobStatus::Failed);
        j.error = Some(JobError {
            code: link_peeler_wire::protocol::ErrorCode::AgentUnavailable,
            message: "the lease expired 3 times".into(),
        });
        let r = record(&row(), &Outcome::Job(Box::new(j))).unwrap();
        assert_eq!(r[8], "failed");
        assert_eq!(r[10], "agent_unavailable: the lease expired 3 times");
        assert_eq!(r[2..7], ["", "", "", "", ""]);
        let none = Outcome::NoJob {
            status: "invalid",
            error: "invalid_url: trackingUrl must use http or https".into(),
        };
        let r = record(&row(), &none).unwrap();
        assert_eq!(
            r[7..],
            [
                "",
                "invalid",
                "2026-12-02/row-17",
                "invalid_url: trackingUrl must use http or https"
            ]
        );
        assert!(!none.is_pending());
        assert!(Outcome::Job(Box::new(job(JobStatus::Leased))).is_pending());
    }

    #[test]
    fn overwrite_rules() {
        let dir = tempfile::tempdir().unwrap();
        let rows_file = dir.path().join("rows.csv");
        std::fs::write(&rows_file, "url,rowId\n").unwrap();
        let out = default_path(&rows_file);
        assert_eq!(out, dir.path().join("rows.results.csv"));

        let file = ResultsFile::prepare(&out, &rows_file, false).unwrap();
        file.finish([(
            &row(),
            &Outcome::NoJob {
                status: "unsent",
                error: "x".into(),
            },
        )])
        .unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.starts_with("rowId,inputUrl,finalUrl,"), "{text}");
        assert!(text.ends_with(",,unsent,2026-12-02/row-17,x\n"), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&out).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        let e = ResultsFile::prepare(&out, &rows_file, false).err().unwrap();
        assert!(format!("{e}").contains("exists; pass --overwrite"), "{e}");
        let file = ResultsFile::prepare(&out, &rows_file, true).unwrap();
        file.finish(std::iter::empty()).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 1);

        let e = ResultsFile::prepare(&rows_file, &rows_file, true)
            .err()
            .unwrap();
        assert!(format!("{e}").contains("is the rows file"), "{e}");
        let e = ResultsFile::prepare(dir.path(), &rows_file, true)
            .err()
            .unwrap();
        assert!(format!("{e}").contains("is a directory"), "{e}");
        let e = ResultsFile::prepare(&dir.path().join("no/such/dir/x.csv"), &rows_file, true)
            .err()
            .unwrap();
        assert!(
            format!("{e}").contains("cannot write the results file in"),
            "{e}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files cleaned up");
    }
}
