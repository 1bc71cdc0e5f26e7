//! Issue 21 items 6 and 8: the OSC control port amplifies nothing towards an address that
//! has not proved it asked, and without a control secret another host may read but not
//! command. The probe: `/convoy/status` + `/convoy/subscribe` from a host address that
//! never confirms (a spoofed source looks exactly like this to the node); the bytes the
//! node sends to it, and to the port it names, are counted for a few seconds.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use convoy::clock::WallClock;
use convoy::control::Snapshot;
use convoy::osc::codec::{self, OscPacket, OscType};
use tokio::net::UdpSocket;

use crate::util::osc::{config, guard_allowing, msg, recv_until, reply_json, test_node};

/// This machine's address towards the network (not loopback), if it has one.
fn lan_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.200:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

fn bytes(p: &OscPacket) -> Vec<u8> {
    codec::encode(p).expect("encode")
}

/// Everything `sock` receives within `secs`: (bytes, messages).
async fn drain(sock: &UdpSocket, secs: f64) -> (usize, Vec<codec::OscMessage>) {
    let mut buf = vec![0u8; 65_536];
    let (mut total, mut msgs) = (0, Vec::new());
    let end = tokio::time::Instant::now() + Duration::from_secs_f64(secs);
    while let Ok(Ok((n, _))) = tokio::time::timeout_at(end, sock.recv_from(&mut buf)).await {
        total += n;
        if let Ok(OscPacket::Message(m)) = codec::decode(&buf[..n]) {
            msgs.push(m);
        }
    }
    (total, msgs)
}

#[tokio::test]
async fn issue21_an_unverified_address_gets_no_more_than_it_sent() {
    let Some(ip) = lan_ip() else {
        eprintln!("no non-loopback address on this machine: skipped");
        return;
    };
    let mut cfg = config();
    cfg.bind = "0.0.0.0".into();
    let (handle, node) = test_node(Snapshot::default());
    let g = guard_allowing(&["0.0.0.0/0"], None);
    let svc = convoy::osc::serve(&cfg, handle, g, WallClock)
        .await
        .expect("OSC service starts");
    let port = svc.udp_addr().port();
    let to = SocketAddr::new(ip, port);
    let attacker = UdpSocket::bind((ip, 0)).await.expect("bind");
    let victim = UdpSocket::bind((ip, 0)).await.expect("bind");
    let victim_port = victim.local_addr().expect("addr").port();

    // The probe: status + subscribe to itself, and a subscription for another port.
    let probe = [
        bytes(&msg("/convoy/status", vec![])),
        bytes(&msg("/convoy/subscribe", vec![])),
    ];
    let redirect = bytes(&msg(
        "/convoy/subscribe",
        vec![OscType::Int(victim_port.into())],
    ));
    let mut sent = 0;
    for p in &probe {
        sent += attacker.send_to(p, to).await.expect("send");
    }
    let redirected = attacker.send_to(&redirect, to).await.expect("send");
    // The state changes while they listen: a subscriber would be told.
    for i in 0..10 {
        node.state
            .send_modify(|s| s.track = Some(format!("track {i}")));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ((got, msgs), (got_victim, victim_msgs)) =
        tokio::join!(drain(&attacker, 2.0), drain(&victim, 0.1));
    eprintln!(
        "unverified sender: sent {sent} B, got {got} B {:?}; victim port: sent {redirected} B, got {got_victim} B",
        msgs.iter().map(|m| m.addr.as_str()).collect::<Vec<_>>()
    );
    assert!(got <= sent, "{got} B reflected for {sent} B: {msgs:?}");
    assert!(
        got_victim <= redirected,
        "{got_victim} B sent to a port that never asked, for {redirected} B: {victim_msgs:?}"
    );
    assert!(msgs.iter().all(|m| m.addr == "/convoy/cookie"), "{msgs:?}");
    assert!(
        victim_msgs.iter().all(|m| m.addr == "/convoy/cookie"),
        "{victim_msgs:?}"
    );

    // A real subscriber echoes the cookie it was sent and gets its feedback and replies.
    let phone = UdpSocket::bind((ip, 0)).await.expect("bind");
    phone
        .send_to(&bytes(&msg("/convoy/subscribe", vec![])), to)
        .await
        .expect("send");
    let cookie = recv_until(&phone, 5.0, |m| m.addr == "/convoy/cookie").await;
    let Some(OscType::Int(c)) = cookie.args.first().cloned() else {
        panic!("cookie args {:?}", cookie.args);
    };
    phone
        .send_to(
            &bytes(&msg(
                "/convoy/subscribe",
                vec![OscType::Int(0), OscType::Float(c as f32)],
            )),
            to,
        )
        .await
        .expect("send");
    let ok = recv_until(&phone, 5.0, |m| m.addr == "/reply/convoy/subscribe").await;
    assert_eq!(reply_json(&ok)["status"], "ok");
    recv_until(&phone, 5.0, |m| m.addr == "/convoy/fb/track").await;
    phone
        .send_to(&bytes(&msg("/convoy/status", vec![])), to)
        .await
        .expect("send");
    let status = recv_until(&phone, 5.0, |m| m.addr == "/reply/convoy/status").await;
    assert_eq!(reply_json(&status)["status"], "ok");

    // Item 8: no secret configured, so this host may read but not command.
    let mut node = node;
    phone
        .send_to(&bytes(&msg("/convoy/pause", vec![])), to)
        .await
        .expect("send");
    node.assert_quiet(1.0).await;
}
