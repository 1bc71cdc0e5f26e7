//! Track-sharing throughput over loopback: one node serves a 64 MiB track, another fetches
//! it with `Library::ensure`, uncapped and at the default 1024 KiB/s cap (8 MiB for the
//! capped run). `cargo run --release --example share_bench`.

use std::time::{Duration, Instant};

use convoy::control::{NodeHandle, Snapshot};
use convoy::library::{Library, LibraryConfig, LibraryError, TrackHash};
use convoy::web::{Auth, WebState};

fn library(dir: &std::path::Path, rate: u64) -> Result<Library, LibraryError> {
    Library::open(LibraryConfig {
        dir: dir.to_path_buf(),
        max_bytes: 1 << 30,
        rate,
        timeout: Duration::from_secs(10),
        attempts: 1,
        pin: None,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    for (mib, rate) in [(64usize, 0u64), (8, 1024 * 1024)] {
        let serve_dir = tempfile::tempdir()?;
        let fetch_dir = tempfile::tempdir()?;
        let mut track = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        let mut x = 0x9e37_79b9u32;
        track.extend((0..mib << 20).map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        }));
        let hash = TrackHash::of(&track);
        let served = library(serve_dir.path(), 0)?;
        served
            .store_track(futures_util::stream::iter([Ok::<_, std::io::Error>(
                track.into(),
            )]))
            .await?;
        let (handle, _inbox) = NodeHandle::channel(Snapshot::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(convoy::web::serve(
            listener,
            WebState::new(handle, Auth::open()?, served),
        ));
        let fetcher = library(fetch_dir.path(), rate)?;
        let t = Instant::now();
        fetcher.ensure(hash, &[base]).await?;
        let s = t.elapsed().as_secs_f64();
        let cap = if rate == 0 {
            "uncapped".to_string()
        } else {
            format!("cap {} KiB/s", rate / 1024)
        };
        println!(
            "share {cap}: {mib} MiB in {s:.2} s = {:.1} MiB/s (SHA-256 verified, fsynced)",
            mib as f64 / s
        );
    }
    Ok(())
}
