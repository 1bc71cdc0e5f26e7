//! The phone app in a real browser: headless Chromium driven over WebDriver (chromedriver,
//! spoken to with Convoy's own tiny HTTP client) loads the app from a running web server
//! with a PIN, clicks play (answering the PIN sheet) and a pattern, and checks that the node
//! received the commands and the page shows the new state. Screenshots of the main views at
//! phone size (390×844 CSS px, 2× pixels) land in `<target>/tmp/web-screenshots/`.
//! Ignored under plain `cargo test`: tools/test.sh installs chromium and chromium-driver and
//! runs them with `--include-ignored`.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use convoy::control::Command;
use convoy::library::client::{read_body, HttpClient};
use hyper::Method;
use serde_json::{json, Value};

use crate::util::node::Node;
use crate::web::start;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    base: String,
    session: String,
    client: HttpClient,
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = std::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (apt install chromium-driver)");
        let base = format!("http://127.0.0.1:{port}");
        let client = HttpClient::new(Duration::from_secs(30));
        let mut driver = Driver {
            base,
            session: String::new(),
            client,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut r) = driver
                .client
                .get(&format!("{}/status", driver.base), &[])
                .await
            {
                if read_body(&mut r, 1 << 16).await.is_ok() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=390,844"],
                "mobileEmulation": {"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2.0}}
            }
        }}});
        let v = driver.call(Method::POST, "/session", Some(caps)).await;
        driver.session = v["sessionId"].as_str().expect("session id").to_string();
        driver
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let body = body.map(|b| b.to_string().into_bytes().into());
        let mut r = self
            .client
            .send(method, &url, &[("content-type", "application/json")], body)
            .await
            .expect("webdriver request");
        let bytes = read_body(&mut r, 64 << 20).await.expect("webdriver body");
        let v: Value = serde_json::from_slice(&bytes).expect("webdriver JSON");
        assert!(
            r.status() == 200,
            "webdriver {path}: HTTP {}: {}",
            r.status(),
            v["value"]["message"]
        );
        v.get("value").cloned().unwrap_or(v)
    }

    async fn session_call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let p = format!("/session/{}{path}", self.session);
        self.call(method, &p, body).await
    }

    async fn goto(&self, url: &str) {
        self.session_call(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn script(&self, script: &str) -> Value {
        self.session_call(
            Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Wait until the JS expression is truthy.
    async fn wait_for(&self, expr: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.script(&format!("return !!({expr});")).await == json!(true) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {expr}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn click(&self, css: &str) {
        let el = self
            .session_call(
                Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        let id = el[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("element {css}: {el}"))
            .to_string();
        self.session_call(
            Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self
            .session_call(
                Method::POST,
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        let id = el[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("element {css}: {el}"))
            .to_string();
        self.session_call(
            Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn screenshot(&self, name: &str) {
        let v = self.session_call(Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .expect("decodes");
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
        eprintln!("screenshot {}", path.display());
    }

    async fn quit(&self) {
        self.session_call(Method::DELETE, "", None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (tools/test.sh installs them)"]
async fn the_phone_app_drives_the_node_in_chromium() {
    let mut server = start("4321", true, 0).await;
    let driver = Driver::start().await;
    driver.goto(&format!("{}/", server.base)).await;
    driver.wait_for("document.querySelector('#conn.ok')").await;
    driver
        .wait_for("document.querySelectorAll('#bikes .bike').length === 4")
        .await;
    driver.screenshot("fleet").await;

    // Play: the PIN sheet appears (401), the PIN unlocks, the request is retried.
    driver.click("[data-tab=play]").await;
    driver.click("#play").await;
    driver
        .wait_for("!document.querySelector('#pin-sheet').classList.contains('hidden')")
        .await;
    driver.screenshot("pin").await;
    assert!(
        server.commands.try_recv().is_err(),
        "nothing before the PIN"
    );
    driver.type_into("#pin-input", "4321").await;
    driver.click("#pin-submit").await;
    let got = tokio::time::timeout(Duration::from_secs(10), server.commands.recv())
        .await
        .expect("the node hears the play");
    assert_eq!(got, Some(Command::Play { track: None }));
    driver
        .wait_for("document.querySelector('#state-text').textContent === 'playing'")
        .await;
    assert!(server.handle.snapshot().playing);
    tokio::time::sleep(Duration::from_millis(700)).await;
    driver
        .script("document.querySelector('#toast').classList.add('hidden');")
        .await;
    driver.screenshot("play").await;

    // A pattern.
    driver.click("[data-tab=lights]").await;
    driver.click(".pattern[data-pattern=chase]").await;
    let got = tokio::time::timeout(Duration::from_secs(10), server.commands.recv())
        .await
        .expect("the node hears the pattern");
    assert_eq!(
        got,
        Some(Command::Pattern {
            name: "chase".into()
        })
    );
    driver
        .wait_for(
            "document.querySelector('.pattern[data-pattern=chase]').classList.contains('active')",
        )
        .await;
    assert_eq!(server.handle.snapshot().light.pattern, "chase");
    driver
        .script("document.querySelector('#toast').classList.add('hidden');")
        .await;
    driver.screenshot("lights").await;

    driver.click("[data-tab=upload]").await;
    driver
        .wait_for("document.querySelector('#library li')")
        .await;
    driver.screenshot("upload").await;
    driver.quit().await;
}

/// The same app against a real `convoy node` process (not the simulated node): the
/// browser names a track, answers the PIN sheet, and the node's own status lines show it
/// playing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromedriver (tools/test.sh installs them)"]
async fn the_phone_app_plays_a_track_on_a_running_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let osc_port = 27_000 + (std::process::id() % 1000) as u16;
    let node = Node::spawn(
        "phonebike",
        "solo",
        osc_port,
        &[
            "web.enabled=true".into(),
            "web.bind=127.0.0.1".into(),
            format!("web.port={web_port}"),
            "web.pin=\"2468\"".into(),
            format!("web.library={}", dir.path().join("library").display()),
        ],
        &[],
    );
    let driver = Driver::start().await;
    let base = format!("http://127.0.0.1:{web_port}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while HttpClient::new(Duration::from_secs(1))
        .get(&format!("{base}/api/info"), &[])
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the node's web server never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    driver.goto(&format!("{base}/")).await;
    driver.wait_for("document.querySelector('#conn.ok')").await;
    driver.click("[data-tab=play]").await;
    driver.type_into("#track-name", "demo").await;
    driver.click("#track-play").await;
    driver
        .wait_for("!document.querySelector('#pin-sheet').classList.contains('hidden')")
        .await;
    assert!(
        node.last().is_none_or(|v| v["track"].is_null()),
        "nothing plays before the PIN"
    );
    driver.type_into("#pin-input", "2468").await;
    driver.click("#pin-submit").await;
    node.wait("the node to play the demo", 10.0, |v| {
        v["track"] == "demo" && v["playing"].as_bool() == Some(true)
    });
    driver
        .wait_for("document.querySelector('#state-text').textContent === 'playing'")
        .await;
    driver.screenshot("node-playing").await;
    driver.quit().await;
}
