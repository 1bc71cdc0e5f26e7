//! The LED link's timers (`led::serial::LedLink`: ack timeout and retries, the handshake's
//! give-up, a write that stalls) over an in-memory byte stream to a simulated controller
//! (`SimDevice`), in paused tokio time: each wait is exact and costs no wall time. The
//! real-time versions of these waits (0.3 s per ack, 3 s handshake, 1 s write stall) run
//! against real serial ports in led_reconnect and led_firmware.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use convoy::led::protocol::{Command, Pattern, Reply};
use convoy::led::serial::{LedError, LedLink, LinkTiming};
use convoy::led::sim::SimDevice;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);

/// How the simulated controller behaves.
#[derive(Clone, Copy, Default)]
struct Behaviour {
    /// Silent (bootloader) for this long after the port opens, then prints its banner.
    boot: Duration,
    /// Reads that get no answer (a noisy cable), counted from the first.
    ignore_reads: usize,
    /// Delay before each answer.
    reply_after: Duration,
}

/// A `SimDevice` at the far end of `io`; returns the device and how many reads it saw.
fn controller(mut io: DuplexStream, b: Behaviour) -> (Arc<Mutex<SimDevice>>, Arc<Mutex<usize>>) {
    let dev = Arc::new(Mutex::new(SimDevice::new(30, "sim-1")));
    let reads = Arc::new(Mutex::new(0));
    let (d, r) = (dev.clone(), reads.clone());
    tokio::spawn(async move {
        let epoch = Instant::now();
        let mut buf = [0u8; 512];
        // In its bootloader the controller hears nothing.
        while epoch.elapsed() < b.boot {
            let heard = tokio::time::timeout_at(epoch + b.boot, io.read(&mut buf)).await;
            if let Ok(Ok(0) | Err(_)) = heard {
                return;
            }
        }
        if !b.boot.is_zero() {
            let banner = d.lock().expect("device").boot_banner();
            if io.write_all(&banner).await.is_err() {
                return;
            }
        }
        loop {
            let n = match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let seen = {
                let mut r = r.lock().expect("reads");
                *r += 1;
                *r
            };
            let mut out = Vec::new();
            let now_ms = epoch.elapsed().as_millis() as u32;
            d.lock()
                .expect("device")
                .receive(&buf[..n], now_ms, &mut out);
            if seen <= b.ignore_reads || out.is_empty() {
                continue;
            }
            tokio::time::sleep(b.reply_after).await;
            if io.write_all(&out).await.is_err() {
                return;
            }
        }
    });
    (dev, reads)
}

fn link(
    b: Behaviour,
) -> (
    LedLink<DuplexStream>,
    Arc<Mutex<SimDevice>>,
    Arc<Mutex<usize>>,
) {
    let (host, device) = tokio::io::duplex(4096);
    let (dev, reads) = controller(device, b);
    (LedLink::new(host, "sim", LinkTiming::default()), dev, reads)
}

#[tokio::test(start_paused = true)]
async fn an_unanswered_command_is_sent_four_times_then_times_out() {
    let timing = LinkTiming::default();
    let (mut link, dev, reads) = link(Behaviour {
        ignore_reads: usize::MAX,
        ..Behaviour::default()
    });
    let t0 = Instant::now();
    let err = link
        .request(&Command::Pattern(Pattern::Chase))
        .await
        .expect_err("nobody answers");
    let attempts = timing.max_retries + 1;
    assert!(
        matches!(err, LedError::AckTimeout { attempts: a, .. } if a == attempts),
        "{err}"
    );
    assert!(
        !err.is_link_loss(),
        "a silent controller is not a lost port"
    );
    // One ack timeout per attempt, to the millisecond.
    assert_eq!(t0.elapsed(), timing.ack_timeout * attempts);
    assert_eq!(*reads.lock().expect("reads"), attempts as usize);
    // Every resend carried the same sequence number.
    let dev = dev.lock().expect("device");
    let seqs: Vec<_> = dev.received().iter().map(|p| p.seq).collect();
    assert_eq!(seqs.len(), attempts as usize);
    assert!(
        seqs.iter().all(|&s| s == seqs[0] && s.is_some()),
        "{seqs:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lost_ack_is_retried_after_the_ack_timeout() {
    let timing = LinkTiming::default();
    let (mut link, _, reads) = link(Behaviour {
        ignore_reads: 2,
        reply_after: 40 * MS,
        ..Behaviour::default()
    });
    let t0 = Instant::now();
    let ack = link
        .request(&Command::Bright(120))
        .await
        .expect("the third attempt is acked");
    assert_eq!(ack.attempts, 3);
    assert_eq!(ack.reply, Reply::Ok);
    // The round trip counts from the last resend; the two lost ones cost a timeout each.
    assert_eq!(ack.rtt, 40 * MS);
    assert_eq!(t0.elapsed(), timing.ack_timeout * 2 + 40 * MS);
    assert_eq!(*reads.lock().expect("reads"), 3);
}

#[tokio::test(start_paused = true)]
async fn the_handshake_waits_out_the_bootloader() {
    let timing = LinkTiming::default();
    let (mut link, _, _) = link(Behaviour {
        boot: 1_700 * MS,
        ..Behaviour::default()
    });
    let t0 = Instant::now();
    let (info, rtt) = link
        .handshake(Duration::from_secs(3))
        .await
        .expect("answers after booting");
    assert_eq!(info.firmware, "sim-1");
    assert_eq!(link.device(), Some(&info));
    // HELLO every ack timeout; the banner at 1.7 s cuts the wait short and the next HELLO
    // is answered at once.
    assert_eq!(rtt, Duration::ZERO);
    assert_eq!(t0.elapsed(), 1_700 * MS);
    assert!(t0.elapsed() < timing.ack_timeout * 6);
}

#[tokio::test(start_paused = true)]
async fn a_controller_that_never_boots_fails_the_handshake_at_its_timeout() {
    let (mut link, _, _) = link(Behaviour {
        boot: Duration::from_secs(3600),
        ..Behaviour::default()
    });
    let t0 = Instant::now();
    let err = link
        .handshake(Duration::from_secs(3))
        .await
        .expect_err("never boots");
    assert!(
        matches!(err, LedError::HandshakeTimeout { waited, .. } if waited == Duration::from_secs(3)),
        "{err}"
    );
    assert_eq!(t0.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_port_that_stops_draining_is_a_lost_link_after_the_write_timeout() {
    let timing = LinkTiming::default();
    // A far end that never reads: the 64-byte pipe fills and the write blocks.
    let (host, _device) = tokio::io::duplex(64);
    let mut link = LedLink::new(host, "stuck", timing);
    let t0 = Instant::now();
    let err = loop {
        if let Err(e) = link.send_stream(&Command::Bands3([1, 2, 3])).await {
            break e;
        }
    };
    assert!(
        matches!(err, LedError::WriteStalled { waited, .. } if waited == timing.write_timeout),
        "{err}"
    );
    assert!(err.is_link_loss());
    assert_eq!(t0.elapsed(), timing.write_timeout);
}
