//! SNTP against software we did not write: Convoy's client disciplined by chrony's NTP
//! server, and chrony's client (`chronyd -Q`) reading Convoy's SNTP server. Ignored under
//! plain `cargo test`: tools/test.sh installs chrony and runs them with `--include-ignored`.

use std::process::Command;
use std::time::Duration;

use convoy::clock::LocalClock;
use convoy::sync::sntp::{self, SntpClient};

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[test]
#[ignore = "needs chrony's chronyd (tools/test.sh installs it)"]
fn convoy_client_agrees_with_a_chrony_server() {
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_udp_port();
    let conf = dir.path().join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 8\ncmdport 0\ndriftfile {d}/drift\npidfile {d}/pid\n",
            d = dir.path().display()
        ),
    )
    .expect("conf");
    // -x: never touch the system clock; -d: stay in the foreground so we can kill it.
    let mut chrony = Command::new("chronyd")
        .args(["-f", conf.to_str().expect("utf8"), "-x", "-d"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chronyd (Debian package chrony) runs");
    std::thread::sleep(Duration::from_millis(700));
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let best = rt.block_on(async {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = SntpClient::new(sock, LocalClock::unix(0, 0.0), Duration::from_millis(500));
        let mut best: Option<convoy::sync::filter::Exchange> = None;
        for _ in 0..10 {
            if let Ok(ex) = client.exchange(([127, 0, 0, 1], port).into()).await {
                if best.is_none_or(|b| ex.delay_ns < b.delay_ns) {
                    best = Some(ex);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        best
    });
    let _ = chrony.kill();
    let _ = chrony.wait();
    let ex = best.expect("chrony answered");
    eprintln!(
        "chrony server vs Convoy's clock: offset {} us, delay {} us",
        ex.offset_ns / 1000,
        ex.delay_ns / 1000
    );
    // Both read the same machine's time: they must agree to well under a millisecond.
    assert!(ex.offset_ns.abs() < 1_000_000, "offset {} ns", ex.offset_ns);
}

#[test]
#[ignore = "needs chrony's chronyd (tools/test.sh installs it)"]
fn chrony_client_reads_convoys_server() {
    let rt = tokio::runtime::Runtime::new().expect("rt");
    let sock = rt
        .block_on(tokio::net::UdpSocket::bind("127.0.0.1:0"))
        .expect("bind");
    let port = sock.local_addr().expect("addr").port();
    // Our server runs 250 ms ahead: chrony must see exactly that.
    let server = rt.spawn(sntp::serve(
        sock,
        convoy::clock::FleetClock::own(LocalClock::unix(250_000_000, 0.0)),
        None,
        Default::default(),
    ));
    let out = Command::new("chronyd")
        .args([
            "-Q",
            "-t",
            "8",
            &format!("server 127.0.0.1 port {port} iburst maxsamples 4"),
        ])
        .output()
        .expect("chronyd runs");
    server.abort();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let wrong_by: f64 = text
        .lines()
        .find_map(|l| {
            l.split("wrong by ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("chronyd gave no measurement: {text}"));
    eprintln!("chronyd -Q: system clock wrong by {wrong_by} s against Convoy's server (+0.25 s)");
    assert!(
        (wrong_by.abs() - 0.25).abs() < 0.002,
        "chrony measured {wrong_by} s"
    );
}
