//! The shipped TouchOSC (Mk1) layout, `tools/touchosc/convoy.touchosc`, read back: every
//! control that sends is accepted by Convoy's own OSC command parser with the float
//! TouchOSC sends (both ends of its `scalef`..`scalet` range), and every display names a
//! feedback address Convoy actually sends. Addresses the OSC service answers itself
//! (`/convoy/subscribe`) are sent to a running service, which must reply `ok`. A misspelled
//! or float-refusing address fails here.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine as _;
use convoy::control::Command;
use convoy::osc::codec::{OscMessage, OscType};
use convoy::osc::command::{parse, parse_request, Request};
use convoy::osc::feedback::FIELDS;
use tokio::net::UdpSocket;

use crate::util::osc::{self as t, msg, recv_until, reply_json};

const LAYOUT: &str = "tools/touchosc/convoy.touchosc";

/// The bytes of `name` in a zip archive whose entries are stored (method 0), as
/// `make_layout.py` writes them; walks the local file headers.
fn stored_entry(zip: &[u8], name: &str) -> Vec<u8> {
    let u16_at = |i: usize| u16::from_le_bytes([zip[i], zip[i + 1]]) as usize;
    let u32_at =
        |i: usize| u32::from_le_bytes([zip[i], zip[i + 1], zip[i + 2], zip[i + 3]]) as usize;
    let mut at = 0;
    while at + 30 <= zip.len() && zip[at..at + 4] == *b"PK\x03\x04" {
        let (method, size) = (u16_at(at + 8), u32_at(at + 18));
        let (name_len, extra_len) = (u16_at(at + 26), u16_at(at + 28));
        let entry = &zip[at + 30..at + 30 + name_len];
        let data = at + 30 + name_len + extra_len;
        if entry == name.as_bytes() {
            assert_eq!(
                method, 0,
                "{name} must be stored, not compressed (rerun make_layout.py)"
            );
            return zip[data..data + size].to_vec();
        }
        at = data + size;
    }
    panic!("{name} not found in {LAYOUT}");
}

/// Every `<control …>` element's attributes (the layout is generated: one element per line,
/// attributes `key="value"` with XML-escaped values; base64 values need no unescaping).
fn controls(xml: &str) -> Vec<HashMap<String, String>> {
    let mut out = Vec::new();
    for el in xml.split("<control ").skip(1) {
        let el = el.split('>').next().unwrap_or_default();
        let mut attrs = HashMap::new();
        for pair in el.split("\" ") {
            if let Some((k, v)) = pair.split_once("=\"") {
                attrs.insert(k.trim().to_string(), v.trim_end_matches('"').to_string());
            }
        }
        out.push(attrs);
    }
    out
}

fn unb64(v: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(v)
        .unwrap_or_else(|e| panic!("not base64: {v:?}: {e}"));
    String::from_utf8(bytes).expect("utf-8")
}

/// Served by the OSC service itself, not parsed into a node `Command`.
const SERVED: &[&str] = &["/convoy/subscribe", "/convoy/unsubscribe", "/convoy/status"];

#[tokio::test]
async fn every_layout_address_is_accepted_by_the_osc_parser() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(LAYOUT);
    let zip = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let xml = String::from_utf8(stored_entry(&zip, "index.xml")).expect("utf-8 index.xml");
    assert!(xml.contains("<layout version=\"16\""), "{xml:.200}");

    let feedback: Vec<&str> = FIELDS.iter().map(|f| f.0).collect();
    let (mut sent, mut shown, mut served) = (Vec::new(), Vec::new(), Vec::new());
    for c in controls(&xml) {
        let kind = c.get("type").map(String::as_str).unwrap_or_default();
        let Some(addr) = c.get("osc_cs").map(|v| unb64(v)) else {
            assert!(kind.starts_with("label"), "a {kind} without osc_cs: {c:?}");
            continue;
        };
        match kind {
            "labelh" | "labelv" | "led" => {
                assert!(
                    feedback.contains(&addr.as_str()),
                    "{kind} shows {addr}, which Convoy never sends"
                );
                shown.push(addr);
            }
            "push" if SERVED.contains(&addr.as_str()) => served.push(addr),
            "push" | "toggle" | "faderh" | "faderv" | "xy" => {
                let range = ["scalef", "scalet"].map(|k| {
                    c.get(k)
                        .and_then(|v| v.parse::<f32>().ok())
                        .unwrap_or_else(|| panic!("{addr}: no numeric {k}"))
                });
                // An XY pad sends both axes in one message (x, y).
                let args = |v: f32| match kind {
                    "xy" => vec![OscType::Float(v), OscType::Float(v)],
                    _ => vec![OscType::Float(v)],
                };
                for v in range {
                    let msg = OscMessage {
                        addr: addr.clone(),
                        args: args(v),
                    };
                    let req = parse_request(&msg)
                        .unwrap_or_else(|e| panic!("{kind} {addr} f {v}: refused: {e}"));
                    // A button's press (scalet) must command something, not read as a release.
                    if kind == "push" && v != 0.0 {
                        assert!(
                            !matches!(req, Request::Node(Command::Release { .. })),
                            "{addr} press: {req:?}"
                        );
                    }
                }
                sent.push(addr);
            }
            other => panic!("control type {other:?} not covered by this test ({addr})"),
        }
    }
    for want in [
        "/convoy/play",
        "/convoy/pause",
        "/convoy/stop",
        "/convoy/next",
        "/go",
        "/convoy/bright",
        "/convoy/seek/norm",
        "/convoy/hue/norm",
        "/convoy/color/xy",
    ] {
        assert!(
            sent.iter().any(|a| a == want),
            "layout lacks {want}: {sent:?}"
        );
    }
    assert!(shown.iter().any(|a| a == "/convoy/fb/track"), "{shown:?}");

    // Service-served buttons: a press (float 1.0) from loopback must be answered `ok`.
    assert_eq!(served, ["/convoy/subscribe"]);
    let (svc, _node, _) = t::start(&t::config(), None).await;
    let phone = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    for addr in &served {
        let packet = msg(addr, vec![OscType::Float(1.0)]);
        let bytes = convoy::osc::codec::encode(&packet).expect("encode");
        phone.send_to(&bytes, svc.udp_addr()).await.expect("send");
        let want = format!("/reply{addr}");
        let r = reply_json(&recv_until(&phone, 5.0, |m| m.addr == want).await);
        assert_eq!(r["status"], "ok", "{addr} f 1.0: {r}");
    }
    svc.shutdown().await;
}

#[test]
fn a_misspelled_address_would_be_refused() {
    // The check above is only as good as the parser's refusal; pin it.
    let msg = OscMessage {
        addr: "/convoy/plya".into(),
        args: vec![OscType::Float(1.0)],
    };
    assert!(parse(&msg).is_err());
    // And a fader's range: the 0..1 controls refuse what a fader set to another range sends.
    for addr in ["/convoy/seek/norm", "/convoy/hue/norm"] {
        let msg = OscMessage {
            addr: addr.into(),
            args: vec![OscType::Float(360.0)],
        };
        assert!(parse_request(&msg).is_err(), "{addr} took 360.0");
    }
}
