//! Issue 21 item 1: a track named over the network is read only from the library or an
//! allowed music directory. A running node is asked through its real OSC port to play
//! /etc/passwd, a `..` escape, a symlink out of the music directory, a FIFO and a pty; each
//! gets the same refusal at once, and the node still answers status afterwards.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use rosc::{OscMessage, OscPacket, OscType};
use serde_json::Value;

use crate::util::node::Node;

/// Send `addr args` from `sock` and wait (≤ `secs`) for its `/reply/...` JSON.
fn ask(sock: &UdpSocket, port: u16, addr: &str, args: Vec<OscType>, secs: f64) -> Value {
    let bytes = rosc::encoder::encode(&OscPacket::Message(OscMessage {
        addr: addr.to_string(),
        args,
    }))
    .expect("encode");
    sock.send_to(&bytes, ("127.0.0.1", port)).expect("send");
    let want = format!("/reply{addr}");
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < end {
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let Ok((_, OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..n]) else {
            continue;
        };
        if m.addr == want {
            if let Some(OscType::String(s)) = m.args.first() {
                return serde_json::from_str(s).expect("reply is JSON");
            }
        }
    }
    panic!("no {want} within {secs} s");
}

/// A pseudo-terminal: the master stays open while the test runs; returns the slave path.
fn pty() -> (std::fs::File, String) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain libc calls on a descriptor we own; ptsname_r writes into `name`.
    unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(fd >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(fd), 0, "grantpt");
        assert_eq!(libc::unlockpt(fd), 0, "unlockpt");
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_string_lossy()
            .into_owned();
        (std::fs::File::from_raw_fd(fd), path)
    }
}

#[test]
fn issue21_remote_play_names_only_library_tracks_and_never_blocks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let music = tmp.path().join("music");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&music).expect("mkdir");
    std::fs::create_dir_all(&outside).expect("mkdir");
    std::fs::write(outside.join("secret.wav"), b"RIFF....WAVE").expect("write");
    std::os::unix::fs::symlink("/etc/passwd", music.join("passwd.wav")).expect("symlink");
    let fifo = music.join("pipe.wav");
    let c = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).expect("path");
    // SAFETY: mkfifo reads a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let (_master, pts) = pty();

    let port = 29_000 + (std::process::id() % 1000) as u16;
    let node = Node::spawn(
        "tracks",
        "solo",
        port,
        &[
            format!("web.library=\"{}\"", tmp.path().join("lib").display()),
            // /dev/pts allowed on purpose: the pty must be refused as not a regular file.
            format!("web.music_dirs=[\"{}\", \"/dev/pts\"]", music.display()),
            "web.enabled=false".into(),
        ],
        &[],
    );
    node.wait("the node runs", 20.0, |_| true);
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    ask(&sock, port, "/convoy/status", vec![], 10.0);

    let escape = format!("{}/../outside/secret.wav", music.display());
    let fifo_name = fifo.to_string_lossy().into_owned();
    for name in [
        "/etc/passwd",
        "../outside/secret.wav",
        escape.as_str(),
        "passwd.wav",
        "/etc/shadow",
        "/nonexistent/song.flac",
        "pipe.wav",
        fifo_name.as_str(),
        pts.as_str(),
    ] {
        let started = Instant::now();
        let r = ask(
            &sock,
            port,
            "/convoy/play",
            vec![OscType::String(name.into())],
            15.0,
        );
        let took = started.elapsed();
        assert_eq!(r["status"], "error", "{name}: {r}");
        assert_eq!(
            r["message"],
            format!("no such track in the library: {name}"),
            "{name}"
        );
        eprintln!("{name}: refused in {:.1} ms", took.as_secs_f64() * 1e3);
        // The command loop is free: status still answers.
        let s = ask(&sock, port, "/convoy/status", vec![], 10.0);
        assert_eq!(s["status"], "ok");
        assert_eq!(s["data"]["playing"], false, "{name} started playing");
    }
    // A built-in still plays.
    let r = ask(
        &sock,
        port,
        "/convoy/play",
        vec![OscType::String("demo".into())],
        10.0,
    );
    assert_eq!(r["status"], "ok", "{r}");
}
