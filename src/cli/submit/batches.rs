//! Splitting submissions into `POST /api/links/batch` bodies that the relay
//! accepts: at most [`MAX_BATCH_JOBS`] items and [`MAX_BATCH_BODY_BYTES`]
//! bytes each (protocol.md §3.9).
//!
//! Sizes are counted from the same compact JSON the wire client sends, so a
//! batch that fits here fits on the wire.

use std::ops::Range;

use link_peeler_wire::protocol::{FetchRequest, MAX_BATCH_BODY_BYTES, MAX_BATCH_JOBS};

/// `{"jobs":[` and `]}` around the comma-separated items.
const ENVELOPE_BYTES: usize = r#"{"jobs":[]}"#.len();

/// Consecutive ranges of `jobs`, in order, each a batch within the relay's limits.
pub fn split(jobs: &[FetchRequest]) -> Result<Vec<Range<usize>>, serde_json::Error> {
    split_within(jobs, MAX_BATCH_JOBS, MAX_BATCH_BODY_BYTES)
}

/// [`split`] with the limits as parameters. An item too large for any batch
/// goes alone (the relay then refuses that one batch; the row validation
/// before keeps items far below the limit).
fn split_within(
    jobs: &[FetchRequest],
    max_jobs: usize,
    max_bytes: usize,
) -> Result<Vec<Range<usize>>, serde_json::Error> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = ENVELOPE_BYTES;
    for (i, job) in jobs.iter().enumerate() {
        let size = serde_json::to_vec(job)?.len();
        let comma = usize::from(i > start);
        let full = i - start == max_jobs || bytes + comma + size > max_bytes;
        if i > start && full {
            batches.push(start..i);
            start = i;
            bytes = ENVELOPE_BYTES + size;
        } else {
            bytes += comma + size;
        }
    }
    if start < jobs.len() {
        batches.push(start..jobs.len());
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use link_peeler_wire::protocol::BatchRequest;

    fn job(i: usize, url_len: usize) -> FetchRequest {
        FetchRequest {
            idempotency_key: format!("2026-12-02/row-{i}"),
            tracking_url: format!("https://a.test/{}", "x".repeat(url_len)),
            source: None,
            row_id: Some(i.to_string()),
            options: None,
        }
    }

    fn body_len(jobs: &[FetchRequest]) -> usize {
        serde_json::to_vec(&BatchRequest {
            jobs: jobs.to_vec(),
        })
        .unwrap()
        .len()
    }

    #[test]
    fn counted_size_is_the_wire_size() {
        let jobs: Vec<_> = (0..7).map(|i| job(i, i * 13)).collect();
        for n in 1..=jobs.len() {
            let sizes: usize = jobs[..n]
                .iter()
                .map(|j| serde_json::to_vec(j).unwrap().len())
                .sum();
            assert_eq!(ENVELOPE_BYTES + sizes + (n - 1), body_len(&jobs[..n]));
        }
    }

    #[test]
    fn at_most_500_jobs_per_batch() {
        let jobs: Vec<_> = (0..1201).map(|i| job(i, 5)).collect();
        let b = split(&jobs).unwrap();
        assert_eq!(b, vec![0..500, 500..1000, 1000..1201]);
        assert_eq!(split(&jobs[..500]).unwrap(), vec![0..500]);
        assert!(split(&[]).unwrap().is_empty());
    }

    #[test]
    fn at_most_one_mib_per_batch_and_every_byte_counts() {
        // 8 KB URLs: about 127 of them fill a MiB, long before 500.
        let jobs: Vec<_> = (0..400).map(|i| job(i, 8000)).collect();
        let b = split(&jobs).unwrap();
        assert!(b.len() >= 3, "{b:?}");
        let mut next = 0;
        for r in &b {
            assert_eq!(r.start, next, "in order, nothing skipped");
            next = r.end;
            let len = body_len(&jobs[r.clone()]);
            assert!(len <= MAX_BATCH_BODY_BYTES, "{r:?}: {len}");
            if r.end < jobs.len() {
                let one_more = body_len(&jobs[r.start..=r.end]);
                assert!(one_more > MAX_BATCH_BODY_BYTES, "{r:?} could take one more");
            }
        }
        assert_eq!(next, jobs.len());
        // The limit exactly: a batch of two that fills the limit to the byte.
        let two = [job(0, 10), job(1, 10)];
        let exact = body_len(&two);
        assert_eq!(split_within(&two, 500, exact).unwrap(), vec![0..2]);
        assert_eq!(
            split_within(&two, 500, exact - 1).unwrap(),
            vec![0..1, 1..2]
        );
        assert_eq!(split_within(&two, 1, exact).unwrap(), vec![0..1, 1..2]);
    }
}
