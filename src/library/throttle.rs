//! Pacing shared bytes so fleet sync traffic keeps priority on the WiFi: a token bucket
//! ([`Throttle`]) that lets a debt build up and sleeps it off, and the paced file stream a
//! library serves tracks with. A [`super::Library`] holds two buckets at the configured
//! `share_rate_kib`: one for its downloads, one shared by every connection it serves.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{io_err, LibraryError};

/// Pacing for shared bytes: a token bucket that lets a debt build up and sleeps it off, so
/// the average rate is the configured one and bursts are at most `burst` bytes.
#[derive(Debug)]
pub(super) struct Throttle {
    /// Bytes per second; 0 means unlimited.
    rate: f64,
    /// Largest burst, bytes.
    burst: f64,
    /// Available bytes (negative: debt to sleep off).
    tokens: f64,
    /// Last refill.
    last: Instant,
}

impl Throttle {
    /// `rate` bytes/s (0 = unlimited) with bursts of at most `burst` bytes.
    pub(super) fn new(rate: u64, burst: u64) -> Self {
        Self {
            rate: rate as f64,
            burst: burst as f64,
            tokens: burst as f64,
            last: Instant::now(),
        }
    }

    /// Account for `n` bytes, sleeping as long as the rate requires.
    pub(super) async fn take(&mut self, n: usize) {
        let wait = self.debit(n, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Charge `n` bytes at time `now`; returns how long to wait before sending more. The
    /// wait is charged up front (the bucket is left empty at `now + wait`).
    pub(super) fn debit(&mut self, n: usize, now: Instant) -> Duration {
        if self.rate <= 0.0 {
            return Duration::ZERO;
        }
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst) - n as f64;
        self.last = now;
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        let wait = Duration::from_secs_f64(-self.tokens / self.rate);
        self.tokens = 0.0;
        self.last = now + wait;
        wait
    }
}

/// Burst of the share token bucket: a quarter second at the rate, at least one 16 KiB frame.
pub(super) fn burst_for(rate: u64) -> u64 {
    (rate / 4).max(16 * 1024)
}

/// Open `path` positioned at `start`.
pub(super) async fn open_at(path: &Path, start: u64) -> Result<tokio::fs::File, LibraryError> {
    let mut file = tokio::fs::File::open(path).await.map_err(io_err(path))?;
    file.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(io_err(path))?;
    Ok(file)
}

/// Stream `len` bytes of `file` from its current position in 64 KiB chunks, paced by
/// `throttle`.
pub(super) fn file_stream(
    file: tokio::fs::File,
    len: u64,
    throttle: Arc<Mutex<Throttle>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> {
    futures_util::stream::unfold(
        (file, len, throttle),
        |(mut file, left, throttle)| async move {
            if left == 0 {
                return None;
            }
            let mut buf = vec![0u8; (64 * 1024).min(left as usize)];
            match file.read(&mut buf).await {
                Ok(0) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "track shrank while being served",
                    )),
                    (file, 0, throttle),
                )),
                Ok(n) => {
                    buf.truncate(n);
                    throttle.lock().await.take(n).await;
                    Some((Ok(Bytes::from(buf)), (file, left - n as u64, throttle)))
                }
                Err(e) => Some((Err(e), (file, 0, throttle))),
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    #[test]
    fn a_throttle_paces_to_its_rate() {
        let t0 = Instant::now();
        let mut t = Throttle::new(100_000, 10_000);
        let mut now = t0;
        for _ in 0..100 {
            now += t.debit(10_000, now);
        }
        // 1 MB at 100 kB/s, minus the initial 10 kB burst: 9.9 s of waiting.
        let took = (now - t0).as_secs_f64();
        assert!((took - 9.9).abs() < 1e-6, "{took}");
        // Idle time refills at most one burst.
        now += Duration::from_secs(60);
        assert_eq!(t.debit(10_000, now), Duration::ZERO);
        assert_eq!(t.debit(10_000, now), Duration::from_millis(100));
        assert_eq!(Throttle::new(0, 0).debit(1 << 30, now), Duration::ZERO);
    }

    #[test]
    fn the_burst_is_a_quarter_second_and_at_least_one_frame() {
        assert_eq!(burst_for(0), 16 * 1024);
        assert_eq!(burst_for(1024 * 1024), 256 * 1024);
        assert_eq!(burst_for(4 * 16 * 1024 - 4), 16 * 1024);
    }

    async fn collect(
        stream: impl futures_util::Stream<Item = std::io::Result<Bytes>>,
    ) -> (Vec<usize>, Vec<u8>, Option<std::io::ErrorKind>) {
        let mut stream = std::pin::pin!(stream);
        let (mut sizes, mut bytes, mut err) = (Vec::new(), Vec::new(), None);
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => {
                    sizes.push(c.len());
                    bytes.extend_from_slice(&c);
                }
                Err(e) => err = Some(e.kind()),
            }
        }
        (sizes, bytes, err)
    }

    #[tokio::test(start_paused = true)]
    async fn a_served_range_streams_in_paced_64k_chunks() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("t.wav");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).expect("write");

        // Bytes 1000..=150999 at 64 KiB/s with a 16 KiB burst.
        let throttle = Arc::new(Mutex::new(Throttle::new(64 * 1024, 16 * 1024)));
        let file = open_at(&path, 1000).await.expect("open");
        let t0 = Instant::now();
        let (sizes, bytes, err) = collect(file_stream(file, 150_000, throttle)).await;
        assert_eq!(err, None);
        assert_eq!(sizes, vec![65_536, 65_536, 150_000 - 2 * 65_536]);
        assert_eq!(bytes, &data[1000..151_000]);
        // The whole range but the first burst is paid for at the rate.
        let waited = t0.elapsed().as_secs_f64();
        let expect = (150_000.0 - 16_384.0) / 65_536.0;
        assert!(
            (waited - expect).abs() < 0.01,
            "{waited} s, expected {expect}"
        );

        // A file shorter than announced ends the stream with an error, not a hang.
        let file = open_at(&path, 190_000).await.expect("open");
        let unpaced = Arc::new(Mutex::new(Throttle::new(0, 0)));
        let (sizes, _, err) = collect(file_stream(file, 20_000, unpaced)).await;
        assert_eq!(sizes, vec![10_000]);
        assert_eq!(err, Some(std::io::ErrorKind::UnexpectedEof));
    }

    /// The token bucket under that cap, in paused time: `take` sleeps off exactly the debt the
    /// rate requires, and an idle minute refills one burst, no more.
    #[tokio::test(start_paused = true)]
    async fn the_share_throttle_sleeps_off_its_debt() {
        use tokio::time::Instant;
        let mut bucket = Throttle::new(100_000, 10_000);
        let t0 = Instant::now();
        for _ in 0..100 {
            bucket.take(10_000).await;
        }
        // 1 MB at 100 kB/s, the first 10 kB burst free: 9.9 s.
        assert_eq!(t0.elapsed(), Duration::from_millis(9_900));
        tokio::time::sleep(Duration::from_secs(60)).await;
        let t1 = Instant::now();
        bucket.take(10_000).await;
        assert_eq!(t1.elapsed(), Duration::ZERO);
        bucket.take(10_000).await;
        assert_eq!(t1.elapsed(), Duration::from_millis(100));
        // Unlimited never waits.
        Throttle::new(0, 0).take(1 << 30).await;
        assert_eq!(t1.elapsed(), Duration::from_millis(100));
    }
}
