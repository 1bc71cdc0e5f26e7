//! `convoy status`: ask a running node what it is doing and print it.
//!
//! The query is the OSC control port's own `/convoy/status` method (`docs/osc.md`): one
//! UDP datagram to `--addr` (default: this machine's `osc.bind:osc.port`, a wildcard bind
//! read as loopback), prefixed with `security.control.secret` when one is set, resent
//! every 250 ms until the `/reply/convoy/status` answer arrives or `--timeout-ms` passes.
//! The answer carries the node's [`Snapshot`] as JSON: `--json` prints it as the node sent
//! it, otherwise [`render`] lays it out for people — node, role and leader, track and
//! position, sync quality, peers when the node knows any, the Ableton Link session when
//! `[link]` is on ([`link_line`]), and rejected input by reason.
//! The query passes the same control-port policy as any command, so it works only where
//! the node has `osc.enabled = true` and the asking address is allowed.

use std::fmt::Write as _;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::config::Config;
use crate::control::{LinkState, Snapshot};
use crate::osc::codec::{self, OscMessage, OscPacket, OscType};

/// Arguments of `convoy status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// The node's OSC control port, `host:port` (default: `osc.bind:osc.port` from the
    /// configuration, with 0.0.0.0 or :: read as this machine).
    #[arg(long)]
    pub addr: Option<String>,
    /// Print the node's snapshot as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for an answer, ms.
    #[arg(long, default_value_t = 1500)]
    pub timeout_ms: u64,
}

const REPLY: &str = "/reply/convoy/status";

/// Run `convoy status`.
pub fn run(config: &Config, args: &StatusArgs) -> anyhow::Result<()> {
    let addr = target(config, args.addr.as_deref())?;
    let secret = &config.security.control.secret;
    let data = query(addr, secret, Duration::from_millis(args.timeout_ms))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&data)?);
        return Ok(());
    }
    let snapshot: Snapshot = serde_json::from_value(data)
        .with_context(|| format!("the node at {addr} sent a status this version cannot read"))?;
    print!("{}", render(&snapshot));
    Ok(())
}

/// The address to ask: `--addr`, else the configured control port on this machine.
fn target(config: &Config, addr: Option<&str>) -> anyhow::Result<SocketAddr> {
    let text = match addr {
        Some(a) => a.to_string(),
        None => {
            let host = match config.osc.bind.as_str() {
                "0.0.0.0" | "" => "127.0.0.1",
                "::" => "::1",
                other => other,
            };
            SocketAddr::new(
                host.parse()
                    .with_context(|| format!("osc.bind {host:?} is not an IP address"))?,
                config.osc.port,
            )
            .to_string()
        }
    };
    text.to_socket_addrs()
        .with_context(|| format!("--addr {text:?} is not a host:port"))?
        .next()
        .with_context(|| format!("--addr {text:?} resolves to no address"))
}

/// Sends `/convoy/status` to `addr` until the reply arrives; returns its `data`.
pub fn query(
    addr: SocketAddr,
    secret: &str,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).context("cannot open a UDP socket")?;
    // Connected, so only the node's datagrams arrive and a closed port reads as refused.
    sock.connect(addr)
        .with_context(|| format!("cannot reach {addr}"))?;
    let path = if secret.is_empty() {
        "/convoy/status".to_string()
    } else {
        format!("/{secret}/convoy/status")
    };
    let request = codec::encode(&OscPacket::Message(OscMessage {
        addr: path,
        args: vec![],
    }))?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65_536];
    let mut refused = false;
    while Instant::now() < deadline {
        refused |= sock.send(&request).is_err();
        let resend = (Instant::now() + Duration::from_millis(250)).min(deadline);
        while let Some(left) = resend.checked_duration_since(Instant::now()) {
            sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    refused = true;
                    // Wait out this round: the node may be starting.
                    std::thread::sleep(left);
                    break;
                }
                Err(_) => break,
            };
            if let Some(reply) = status_reply(&buf[..n]) {
                return reply.with_context(|| format!("the node at {addr} answered"));
            }
        }
    }
    let why = if refused {
        "nothing listens there"
    } else {
        "no answer"
    };
    bail!(
        "no node answered /convoy/status on {addr} within {} ms ({why}); is `convoy node` \
         running there with osc.enabled = true, and does security.control allow this \
         address? From another host the node answers only with security.control.secret \
         set on both sides (docs/osc.md, Security). (--addr HOST:PORT asks another port)",
        timeout.as_millis()
    )
}

/// The `data` of a `/reply/convoy/status` datagram; `None` for any other datagram
/// (feedback, other replies).
fn status_reply(bytes: &[u8]) -> Option<anyhow::Result<serde_json::Value>> {
    let OscPacket::Message(m) = codec::decode(bytes).ok()? else {
        return None;
    };
    if m.addr != REPLY {
        return None;
    }
    let Some(OscType::String(text)) = m.args.first() else {
        return Some(Err(anyhow::anyhow!("a status reply without its JSON")));
    };
    Some(parse_reply(text))
}

fn parse_reply(text: &str) -> anyhow::Result<serde_json::Value> {
    let mut body: serde_json::Value =
        serde_json::from_str(text).context("a status reply that is not JSON")?;
    if body["status"] != "ok" {
        bail!(
            "status refused: {}",
            body["message"].as_str().unwrap_or("no reason given")
        );
    }
    match body.get_mut("data").map(serde_json::Value::take) {
        Some(data) if data.is_object() => Ok(data),
        _ => bail!("a status reply without data"),
    }
}

fn clock(ms: f64) -> String {
    let s = (ms / 1e3).max(0.0);
    format!("{}:{:04.1}", (s / 60.0).floor() as u64, s % 60.0)
}

fn signed_ms(ms: Option<f64>) -> String {
    ms.map_or("–".into(), |v| format!("{v:+.3} ms"))
}

/// The Link session in one line: mode, peers (and their ids), tempo, phase in the quantum,
/// transport, who set the timeline and when a peer was last heard, e.g. `follow · 1 peer
/// Xy7#pQ2a · 128.00 BPM · beat 2.41/4 · playing · led by Xy7#pQ2a · heard 120 ms ago`.
pub fn link_line(l: &LinkState) -> String {
    let mut parts = vec![l.mode.clone()];
    parts.push(match l.peers {
        0 => "no peers".to_string(),
        1 => "1 peer".to_string(),
        n => format!("{n} peers"),
    });
    if !l.peer_ids.is_empty() {
        let shown: Vec<&str> = l.peer_ids.iter().take(4).map(String::as_str).collect();
        let more = if l.peer_ids.len() > 4 { ", …" } else { "" };
        let _ = write!(parts[1], " {}{more}", shown.join(", "));
    }
    if l.heard > l.peers {
        let _ = write!(parts[1], " (+{} in another session)", l.heard - l.peers);
    }
    parts.push(format!("{:.2} BPM", l.tempo_bpm));
    parts.push(format!("beat {:.2}/{}", l.phase, l.quantum));
    parts.push(if l.playing { "playing" } else { "stopped" }.into());
    parts.push(match (l.peers, l.timeline.as_str()) {
        (0, _) => "alone".to_string(),
        (_, "lead") => "leading".to_string(),
        _ => format!("led by {}", l.timeline_from),
    });
    if let Some(ms) = l.last_heard_ms {
        parts.push(format!("heard {ms} ms ago"));
    }
    parts.join(" · ")
}

/// The snapshot as aligned `label  value` lines.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let line = |out: &mut String, label: &str, value: String| {
        let _ = writeln!(out, "{label:<10}{value}");
    };
    line(&mut out, "node", format!("{} ({})", s.id, s.role));
    line(
        &mut out,
        "leader",
        s.leader.clone().unwrap_or_else(|| "none".into()),
    );
    let track = match &s.track {
        None => "none".to_string(),
        Some(t) => {
            let mut v = t.clone();
            if let Some(p) = s.position_ms {
                let _ = write!(v, "  {}", clock(p));
                if let Some(d) = s.duration_ms {
                    let _ = write!(v, " / {}", clock(d));
                }
            }
            v.push_str(if s.playing { "  playing" } else { "  paused" });
            if let Some(bpm) = s.tempo_bpm {
                let _ = write!(v, "  {bpm:.1} BPM");
            }
            v
        }
    };
    line(&mut out, "track", track);
    if let Some(show) = &s.show {
        let cue = s.cue.as_deref().map(|c| format!("  cue {c}"));
        line(
            &mut out,
            "show",
            format!("{show}{}", cue.unwrap_or_default()),
        );
    }
    let y = &s.sync;
    line(
        &mut out,
        "sync",
        format!(
            "{}  offset {}  clock {}  playback error {}{}",
            if y.locked { "locked" } else { "NOT LOCKED" },
            signed_ms(y.offset_ms),
            y.clock_ppm.map_or("–".into(), |p| format!("{p:+.1} ppm")),
            signed_ms(y.playback_error_ms),
            y.clock_bound_ms
                .map_or(String::new(), |b| format!("  clock within ±{b:.2} ms")),
        ),
    );
    if !s.peers.is_empty() {
        line(&mut out, "peers", s.peers.len().to_string());
        for p in &s.peers {
            let _ = writeln!(
                out,
                "  {:<14} {:<9} {:<22} heard {:>6} ms ago  error {:<12} {}",
                p.id,
                p.role,
                p.addr,
                p.last_heard_ms,
                signed_ms(p.playback_error_ms),
                p.version
            );
        }
    }
    if let Some(l) = &s.link {
        line(&mut out, "link", link_line(l));
    }
    let total: u64 = s.rejected.values().sum();
    if total == 0 {
        line(&mut out, "rejected", "none".into());
    } else {
        let mut by: Vec<(&String, &u64)> = s.rejected.iter().collect();
        by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let parts: Vec<String> = by.iter().map(|(k, v)| format!("{k} {v}")).collect();
        line(
            &mut out,
            "rejected",
            format!("{total}: {}", parts.join(", ")),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{PeerState, SyncState};

    fn snapshot() -> Snapshot {
        Snapshot {
            id: "bike2".into(),
            role: "follower".into(),
            leader: Some("lead".into()),
            track: Some("demo".into()),
            playing: true,
            position_ms: Some(83_460.0),
            duration_ms: Some(190_000.0),
            tempo_bpm: Some(124.0),
            sync: SyncState {
                offset_ms: Some(-2.5),
                clock_ppm: Some(12.3),
                playback_error_ms: Some(0.031),
                locked: true,
                clock_bound_ms: None,
            },
            rejected: [("bad_tag".to_string(), 40), ("replay".to_string(), 900)].into(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn renders_a_readable_table() {
        let text = render(&snapshot());
        for want in [
            "node      bike2 (follower)",
            "leader    lead",
            "track     demo  1:23.5 / 3:10.0  playing  124.0 BPM",
            "sync      locked  offset -2.500 ms  clock +12.3 ppm  playback error +0.031 ms",
            "rejected  940: replay 900, bad_tag 40",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("peers"), "{text}");
        assert!(!text.contains("link "), "Link is off: no line\n{text}");
    }

    fn link() -> LinkState {
        LinkState {
            mode: "follow".into(),
            node: "ourNode1".into(),
            session: "aalinkSs".into(),
            peers: 2,
            peer_ids: vec!["aalinkSs".into(), "Xy7#pQ2a".into()],
            heard: 2,
            tempo_bpm: 128.0,
            at_mono_ns: 5_000_000_000,
            at_fleet_ns: Some(1_700_000_005_000_000_000),
            beat: 1034.41,
            phase: 2.41,
            quantum: 4.0,
            playing: true,
            timeline: "follow".into(),
            timeline_from: "aalinkSs".into(),
            last_heard_ms: Some(120),
        }
    }

    #[test]
    fn renders_the_link_session() {
        let mut s = snapshot();
        s.link = Some(link());
        let text = render(&s);
        assert!(
            text.contains(
                "link      follow · 2 peers aalinkSs, Xy7#pQ2a · 128.00 BPM · beat 2.41/4 · playing · \
                 led by aalinkSs · heard 120 ms ago\n"
            ),
            "{text}"
        );
        // The line sits before the rejected counters.
        assert!(text.find("link  ") < text.find("rejected"), "{text}");
        // Leading, one peer, stopped, a peer of another session heard.
        let lead = LinkState {
            mode: "both".into(),
            peers: 1,
            peer_ids: vec!["Xy7#pQ2a".into()],
            heard: 2,
            tempo_bpm: 99.996,
            phase: 0.0,
            playing: false,
            timeline: "lead".into(),
            timeline_from: "ourNode1".into(),
            ..link()
        };
        assert_eq!(
            link_line(&lead),
            "both · 1 peer Xy7#pQ2a (+1 in another session) · 100.00 BPM · beat 0.00/4 · stopped · \
             leading · heard 120 ms ago"
        );
        // Alone on its own session: nobody to lead or be led by.
        let alone = LinkState {
            peers: 0,
            peer_ids: Vec::new(),
            heard: 0,
            timeline: "lead".into(),
            last_heard_ms: None,
            quantum: 3.0,
            ..link()
        };
        assert_eq!(
            link_line(&alone),
            "follow · no peers · 128.00 BPM · beat 2.41/3 · playing · alone"
        );
    }

    #[test]
    fn the_json_status_carries_the_link_fields() {
        let mut s = snapshot();
        s.link = Some(link());
        let v = serde_json::to_value(&s).expect("json");
        let l = &v["link"];
        assert_eq!(l["mode"], "follow");
        assert_eq!(l["peers"], 2);
        assert_eq!(l["tempo_bpm"], 128.0);
        assert_eq!(l["phase"], 2.41);
        assert_eq!(l["playing"], true);
        assert_eq!(l["timeline"], "follow");
        assert_eq!(l["timeline_from"], "aalinkSs");
        assert_eq!(l["last_heard_ms"], 120);
        // A node without Link (or an older one) reads as no session.
        let off = serde_json::to_value(snapshot()).expect("json");
        assert!(off["link"].is_null(), "{off}");
        let old: Snapshot = serde_json::from_str(r#"{"id":"old"}"#).expect("older node");
        assert_eq!(old.link, None);
        let back: Snapshot = serde_json::from_value(v).expect("round trip");
        assert_eq!(back.link, Some(link()));
    }

    #[test]
    fn shows_the_verified_clock_bound() {
        let mut s = snapshot();
        s.sync.clock_bound_ms = Some(2.345);
        let text = render(&s);
        assert!(
            text.contains("playback error +0.031 ms  clock within ±2.35 ms"),
            "{text}"
        );
    }

    #[test]
    fn renders_peers_when_present_and_idle_nodes() {
        let mut s = snapshot();
        s.peers = vec![PeerState {
            id: "bike3".into(),
            addr: "10.0.0.3:9123".into(),
            role: "follower".into(),
            last_heard_ms: 120,
            playback_error_ms: Some(-0.2),
            version: "1".into(),
        }];
        let text = render(&s);
        assert!(text.contains("peers     1"), "{text}");
        assert!(
            text.contains("bike3") && text.contains("10.0.0.3:9123"),
            "{text}"
        );
        let idle = render(&Snapshot {
            id: "solo".into(),
            role: "solo".into(),
            sync: SyncState {
                locked: false,
                ..SyncState::default()
            },
            ..Snapshot::default()
        });
        assert!(idle.contains("track     none"), "{idle}");
        assert!(idle.contains("NOT LOCKED  offset –"), "{idle}");
        assert!(idle.contains("rejected  none"), "{idle}");
    }

    #[test]
    fn replies_are_checked() {
        let ok = parse_reply(r#"{"address":"/convoy/status","status":"ok","data":{"id":"a"}}"#)
            .expect("ok");
        assert_eq!(ok["id"], "a");
        let refused = parse_reply(r#"{"status":"error","message":"busy"}"#).expect_err("error");
        assert!(refused.to_string().contains("busy"), "{refused}");
        assert!(parse_reply(r#"{"status":"ok"}"#).is_err());
        assert!(parse_reply("not json").is_err());
        let other = codec::encode(&OscPacket::Message(OscMessage {
            addr: "/convoy/fb/playing".into(),
            args: vec![OscType::Int(1)],
        }))
        .expect("encode");
        assert!(status_reply(&other).is_none());
        assert!(status_reply(b"garbage").is_none());
    }

    #[test]
    fn no_node_is_a_clear_error_naming_the_address() {
        // A bound but silent socket: the query times out.
        let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let addr = silent.local_addr().expect("addr");
        let e = query(addr, "", Duration::from_millis(300)).expect_err("no answer");
        let msg = e.to_string();
        assert!(msg.contains(&addr.to_string()), "{msg}");
        assert!(
            msg.contains("osc.enabled") && msg.contains("no answer"),
            "{msg}"
        );
        // A closed port is told apart from a silent one.
        let closed = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free port");
        let e = query(closed, "", Duration::from_millis(300)).expect_err("nobody");
        assert!(e.to_string().contains("nothing listens there"), "{e}");
    }

    #[test]
    fn the_default_target_is_the_configured_port_on_this_machine() {
        let mut cfg = Config::builtin().expect("defaults");
        cfg.osc.port = 8123;
        assert_eq!(
            target(&cfg, None).expect("target"),
            "127.0.0.1:8123".parse::<SocketAddr>().expect("addr")
        );
        assert!(target(&cfg, Some("no-port")).is_err());
    }
}
