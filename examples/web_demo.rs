//! The phone web app against a simulated node: `cargo run --example web_demo [PORT] [PIN]`,
//! then open http://127.0.0.1:PORT/ (default 8080, no PIN) in a browser or a phone on the
//! same network. Prints its resident memory after start-up, for docs/web.md.

use std::time::Duration;

use convoy::control::NodeHandle;
use convoy::library::{Library, LibraryConfig};
use convoy::web::{self, Auth, AuthConfig, WebState};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().map_or(Ok(8080), |p| p.parse())?;
    let pin = args.next().unwrap_or_default();
    let dir = std::env::temp_dir().join("convoy-web-demo");
    let library = Library::open(LibraryConfig {
        dir: dir.clone(),
        max_bytes: 200 << 20,
        rate: 1 << 20,
        timeout: Duration::from_secs(10),
        attempts: 3,
        pin: None,
    })?;
    let auth = Auth::new(&AuthConfig {
        pin,
        open_reads: true,
        login_burst: 5,
        login_per_minute: 3.0,
    })?;
    let (handle, inbox) = NodeHandle::channel(convoy::rig::web_sim::initial_snapshot());
    tokio::spawn(convoy::rig::web_sim::run(inbox, None));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    println!(
        "Convoy web demo on http://{} (library {})",
        listener.local_addr()?,
        dir.display()
    );
    let server = tokio::spawn(web::serve(listener, WebState::new(handle, auth, library)));
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        if let Some(rss) = status.lines().find(|l| l.starts_with("VmRSS")) {
            println!("{rss}");
        }
    }
    server.await??;
    Ok(())
}
