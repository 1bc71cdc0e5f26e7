//! `convoy doctor`: one command that says what is wrong on this bike and how to fix each
//! thing — the fleet key, the vehicle id (another bike heard with the same one), the
//! route for the fleet broadcast, the LED port, the sound card, and the clock of a node
//! running here. Each check prints one line (`ok`, `FAIL` with the fix, or `note`); the
//! exit status is non-zero when any check failed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::{Config, LedOutputKind, Role, SinkKind};
use crate::fleet::{netif, parse_destination, sender_id};
use crate::security::key::FleetKey;

/// Arguments of `convoy doctor`.
#[derive(Debug, Clone, clap::Args)]
pub struct DoctorArgs {
    /// How long to listen on the fleet port for another bike using this bike's id, s.
    #[arg(long, default_value_t = 1.5)]
    pub listen: f64,
    /// Skip opening the sound card (it may be busy with a running node).
    #[arg(long)]
    pub no_sound: bool,
}

/// The verdict of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Fine; what was found.
    Ok(String),
    /// Wrong: what, and how to fix it.
    Fail(String),
    /// Worth knowing, not wrong.
    Note(String),
}

/// Run `convoy doctor`: print every finding; an error when something is wrong.
pub fn run(config: &Config, args: &DoctorArgs) -> anyhow::Result<()> {
    let findings = check(config, args);
    let mut failed = 0;
    for (what, f) in &findings {
        match f {
            Finding::Ok(t) => println!("ok    {what}: {t}"),
            Finding::Note(t) => println!("note  {what}: {t}"),
            Finding::Fail(t) => {
                failed += 1;
                println!("FAIL  {what}: {t}");
            }
        }
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} problem(s) on this bike (see the FAIL lines above)"
    );
    Ok(())
}

/// Every check, in order, as (topic, finding).
pub fn check(config: &Config, args: &DoctorArgs) -> Vec<(&'static str, Finding)> {
    let fleet_roles = config.sync.role != Role::Solo;
    let mut out = vec![("fleet key", key(config, fleet_roles))];
    out.push(("vehicle id", vehicle_id(config, args.listen)));
    out.push(("fleet network", route(config)));
    out.push(("LED", led(config)));
    if !args.no_sound {
        out.push(("sound card", sound(config)));
    }
    out.push(("clock", clock(config)));
    out
}

fn key(config: &Config, needed: bool) -> Finding {
    let s = &config.security;
    let fix = "every bike needs the same key: `sudo tools/pi/install.sh --key fleet.key` \
               installs a copy as /etc/convoy/fleet.key (docs/pi.md), or `convoy tool keygen \
               FILE` makes a new one for a new fleet";
    if s.key_file.is_empty() {
        return match FleetKey::from_env(s.key_id, &s.key_env) {
            Ok(k) => Finding::Ok(format!("from ${} ({})", s.key_env, k.fingerprint())),
            Err(_) if !needed => Finding::Note(format!(
                "none (security.key_file and ${} unset); sync.role = \"solo\" needs none",
                s.key_env
            )),
            Err(_) => Finding::Fail(format!(
                "no key: security.key_file is empty and ${} is unset, so the node refuses \
                 fleet roles; {fix}",
                s.key_env
            )),
        };
    }
    let path = Path::new(&s.key_file);
    // The installed service reads /etc/convoy/fleet.key as a systemd credential that
    // exists only while it runs: check the source file instead.
    let cred = s.key_file.starts_with("/run/credentials/");
    let (path, via) = if cred && !path.exists() {
        (
            Path::new("/etc/convoy/fleet.key"),
            " (the service receives it as a credential)",
        )
    } else {
        (path, "")
    };
    match FleetKey::from_file(s.key_id, path) {
        Ok(k) => Finding::Ok(format!("{}{via} ({})", path.display(), k.fingerprint())),
        Err(e) if !needed => Finding::Note(format!("{e}; sync.role = \"solo\" needs none")),
        Err(e) => Finding::Fail(format!("{e}; {fix}")),
    }
}

/// Listen on the fleet port: a datagram carrying our own sender id from an address that
/// is not ours is another bike with our id.
fn vehicle_id(config: &Config, listen: f64) -> Finding {
    let id = config.node_id();
    if !config.fleet.enabled || listen <= 0.0 {
        return Finding::Ok(id);
    }
    let sock = match bind_shared(config.fleet.port) {
        Ok(s) => s,
        Err(e) => {
            return Finding::Note(format!(
                "{id}; cannot listen on the fleet port {} to look for duplicates: {e}",
                config.fleet.port
            ))
        }
    };
    let me = sender_id(&id).to_be_bytes();
    let ifaces = netif::interfaces();
    let mut buf = [0u8; 2048];
    let mut others = std::collections::BTreeSet::new();
    let end = Instant::now() + Duration::from_secs_f64(listen.min(30.0));
    let mut dup = None;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        let _ = sock.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            break;
        };
        match buf.get(6..10.min(n)) {
            Some(s) if s == me && !netif::is_local(from.ip(), &ifaces) => {
                dup = Some(from);
            }
            Some(s) if s.len() == 4 && s != me => {
                others.insert(from.ip());
            }
            _ => {}
        }
    }
    match dup {
        Some(from) => Finding::Fail(format!(
            "duplicate vehicle id {id} from {from}: set node.id to a name of its own on one \
             of the two bikes (/etc/convoy/convoy.toml)"
        )),
        None => Finding::Ok(format!(
            "{id} (unique: {} other bike(s) heard in {listen} s)",
            others.len()
        )),
    }
}

fn bind_shared(port: u16) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port).into())?;
    Ok(s.into())
}

/// Can the fleet broadcast leave this machine? `connect` on a UDP socket does the route
/// lookup a send would do.
fn route(config: &Config) -> Finding {
    if !config.fleet.enabled {
        return Finding::Note("fleet.enabled = false".into());
    }
    let dests: Vec<SocketAddr> = config
        .fleet
        .broadcast
        .iter()
        .filter_map(|d| parse_destination(d, config.fleet.port))
        .collect();
    let bind: IpAddr = config
        .sync
        .bind
        .parse()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let ifaces = netif::interfaces();
    let targets = netif::expand(&dests, &ifaces, bind);
    let mut bad = Vec::new();
    for t in &targets {
        let probe = UdpSocket::bind(SocketAddr::new(bind, 0))
            .and_then(|s| s.set_broadcast(true).map(|()| s))
            .and_then(|s| s.connect(t));
        if let Err(e) = probe {
            bad.push(format!("{t}: {e}"));
        }
    }
    if targets.is_empty() {
        return Finding::Note("no broadcast destination (fleet.broadcast is empty)".into());
    }
    if bad.is_empty() {
        let list: Vec<String> = targets.iter().map(ToString::to_string).collect();
        return Finding::Ok(format!("heartbeats go to {}", list.join(", ")));
    }
    Finding::Fail(format!(
        "no route for the fleet broadcast ({}): is the fleet WiFi up with its address \
         (`ip -4 addr`)? Set fleet.broadcast to its broadcast address, e.g. \"10.42.0.255\", \
         or add a route",
        bad.join("; ")
    ))
}

fn led(config: &Config) -> Finding {
    match config.led.output {
        LedOutputKind::Serial => {
            let port = Path::new(&config.led.port);
            if port.exists() {
                Finding::Ok(format!("serial on {}", port.display()))
            } else {
                Finding::Fail(format!(
                    "LED port {} missing: is the Arduino plugged in? (the udev rule links it \
                     as /dev/convoy-led; `ls -l /dev/serial/by-id/` lists serial devices; \
                     set led.port, or led.output = \"sim\")",
                    port.display()
                ))
            }
        }
        LedOutputKind::Sim => Finding::Note("led.output = \"sim\": no strip is driven".into()),
        LedOutputKind::None => Finding::Note("led.output = \"none\"".into()),
    }
}

fn sound(config: &Config) -> Finding {
    match config.audio.sink {
        SinkKind::Null | SinkKind::Virtual => Finding::Note(format!(
            "audio.sink = {:?}: no sound card used",
            config.audio.sink
        )),
        kind => match crate::audio::output::open_sink(&config.audio, SinkKind::Cpal) {
            Ok(_) => Finding::Ok("the sound card opens".into()),
            Err(e) if kind == SinkKind::Auto => Finding::Fail(format!(
                "cannot open the sound card ({e}): the node falls back to the null sink and \
                 plays silence; is the USB speaker plugged in (`aplay -l`)?"
            )),
            Err(e) => Finding::Fail(format!(
                "cannot open the sound card ({e}); audio.sink = \"cpal\" makes the node fail; \
                 is the USB speaker plugged in (`aplay -l`)?"
            )),
        },
    }
}

/// Ask a node running here (its control port) whether its clock is locked.
fn clock(config: &Config) -> Finding {
    if !config.osc.enabled {
        return Finding::Note("osc.enabled = false: cannot ask a running node".into());
    }
    let host = match config.osc.bind.as_str() {
        "0.0.0.0" | "" => "127.0.0.1",
        "::" => "::1",
        other => other,
    };
    let Ok(ip) = host.parse::<IpAddr>() else {
        return Finding::Note(format!("osc.bind {host:?} is not an address"));
    };
    let addr = SocketAddr::new(ip, config.osc.port);
    let data = match super::status::query(
        addr,
        &config.security.control.secret,
        Duration::from_millis(600),
    ) {
        Ok(d) => d,
        Err(_) => return Finding::Note(format!("no node answers on {addr}; not checked")),
    };
    let role = data["role"].as_str().unwrap_or("?").to_string();
    let leader = data["leader"].as_str().unwrap_or("nobody").to_string();
    if role == "follower" && data["sync"]["locked"] != true {
        Finding::Fail(format!(
            "the node follows {leader} but its clock is not locked: does the leader answer \
             SNTP (sync.sntp_port) and do both bikes have the same fleet key?"
        ))
    } else {
        Finding::Ok(format!("the node here is {role} (leader {leader})"))
    }
}
