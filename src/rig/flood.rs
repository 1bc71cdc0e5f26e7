//! A hostile sender for the flood tests and the measuring rig (`convoy tool scenario
//! --flood-pps`): the stranger's phone of the threat model, made repeatable.
//!
//! [`Flood::run`] sends, at a paced total rate, a deterministic mix of what an attacker
//! without the fleet key can throw at a node, spread over several source addresses (on
//! loopback any `127.x.y.z` works, so the per-address limiter sees many senders and most
//! forgeries reach the HMAC). Fleet ports (timeline, SNTP) get random garbage, truncated
//! and oversized envelopes, envelopes with a forged tag that claim to be the leader,
//! envelopes sealed under the attacker's own key, envelopes naming an unknown key id, and
//! replays of genuine datagrams the caller hands in as "captured". The OSC control port
//! gets garbage, hostile bundles and well-formed transport commands (`/convoy/stop`, …),
//! which the control-port policy must refuse. Each kind is counted in the
//! [`FloodReport`]. [`cpu_seconds`] reads a process's CPU time from `/proc`, to measure
//! what the flood costs the target.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::security::envelope::{self, HEADER_LEN, MAGIC, MAX_DATAGRAM, TAG_LEN, VERSION};
use crate::security::fleet::sender_id;
use crate::security::key::{FleetKey, Keyring};

/// What listens on a flooded port, which decides what is sent to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A sealed fleet port (timeline, SNTP, membership).
    Fleet,
    /// The unsigned OSC control port.
    Control,
}

/// One flood: where, how fast, from where, for how long.
#[derive(Debug, Clone)]
pub struct Flood {
    /// Ports to hit, in turn.
    pub targets: Vec<(SocketAddr, Target)>,
    /// Total datagrams per second over all targets.
    pub rate_pps: f64,
    /// How long to send.
    pub duration: Duration,
    /// Source addresses to send from, in turn (each gets its own ephemeral port).
    pub sources: Vec<IpAddr>,
    /// Genuine sealed datagrams "captured" earlier, replayed verbatim (may be empty).
    pub captured: Vec<Vec<u8>>,
    /// Vehicle id forged envelopes claim to come from (e.g. the leader's).
    pub impersonate: String,
    /// Seed of the packet mix (non-zero).
    pub seed: u64,
}

/// Why a flood could not run.
#[derive(Debug, thiserror::Error)]
pub enum FloodError {
    /// Nothing to send to, or nothing to send from.
    #[error("flood: {0}")]
    Config(&'static str),
    /// A source socket could not be bound.
    #[error("flood: cannot bind a socket on {addr}: {source}")]
    Bind {
        /// The source address.
        addr: IpAddr,
        /// The OS error.
        source: std::io::Error,
    },
}

/// What was sent.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FloodReport {
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Sends the kernel refused.
    pub send_errors: u64,
    /// Datagrams per kind (`garbage`, `forged_tag`, `replay`, `osc_command`, …).
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Seconds spent sending.
    pub seconds: f64,
}

impl FloodReport {
    /// Achieved rate, datagrams per second.
    pub fn rate_pps(&self) -> f64 {
        self.sent as f64 / self.seconds.max(1e-9)
    }
}

/// Deterministic xorshift64.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

fn now_unix_ns() -> u64 {
    crate::clock::realtime_ns().max(0) as u64
}

/// Builds hostile datagrams; one per call.
struct Forger {
    dice: Dice,
    attacker: Keyring,
    impersonate: u32,
    seq: u64,
    captured: Vec<Vec<u8>>,
}

impl Forger {
    fn new(flood: &Flood) -> Result<Forger, FloodError> {
        let mut dice = Dice(flood.seed.max(1));
        let mut key = [0u8; 32];
        dice.fill(&mut key);
        let attacker = FleetKey::from_bytes(1, &key)
            .map(Keyring::new)
            .map_err(|_| FloodError::Config("cannot make the attacker's key"))?;
        Ok(Forger {
            dice,
            attacker,
            impersonate: sender_id(&flood.impersonate),
            seq: now_unix_ns(),
            captured: flood.captured.clone(),
        })
    }

    /// A header that parses: magic, version, key id, sender, fresh seq and timestamp.
    fn header(&mut self, key_id: u8, payload_len: usize, out: &mut Vec<u8>) {
        self.seq += 1;
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(key_id);
        out.extend_from_slice(&self.impersonate.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&now_unix_ns().to_be_bytes());
        out.extend_from_slice(&(payload_len as u16).to_be_bytes());
    }

    fn random(&mut self, out: &mut Vec<u8>, len: usize) {
        let start = out.len();
        out.resize(start + len, 0);
        self.dice.fill(&mut out[start..]);
    }

    /// A datagram for a fleet port.
    fn fleet(&mut self, out: &mut Vec<u8>) -> &'static str {
        out.clear();
        let payload = b"/convoy/sync/timeline\0\0\0,s\0\0stop\0\0\0\0";
        match self.dice.below(7) {
            0 => {
                let len = 1 + self.dice.below(300) as usize;
                self.random(out, len);
                "garbage"
            }
            1 => {
                self.header(1, 0, out);
                out.truncate(HEADER_LEN - 1 - self.dice.below(HEADER_LEN as u64 - 5) as usize);
                "truncated"
            }
            2 => {
                self.header(1, MAX_DATAGRAM, out);
                self.random(out, MAX_DATAGRAM + 60 - HEADER_LEN);
                "oversized"
            }
            3 => {
                self.header(1, payload.len(), out);
                out.extend_from_slice(payload);
                self.random(out, TAG_LEN);
                "forged_tag"
            }
            4 => {
                self.seq += 1;
                let (sender, seq) = (self.impersonate, self.seq);
                if envelope::seal_into(&self.attacker, sender, seq, now_unix_ns(), payload, out)
                    .is_err()
                {
                    self.random(out, 64);
                }
                "wrong_key"
            }
            5 => {
                let id = 2 + self.dice.below(250) as u8;
                self.header(id, payload.len(), out);
                out.extend_from_slice(payload);
                self.random(out, TAG_LEN);
                "unknown_key"
            }
            _ => {
                let n = self.captured.len() as u64;
                match self.captured.get(self.dice.below(n) as usize) {
                    Some(c) => {
                        out.extend_from_slice(c);
                        "replay"
                    }
                    None => {
                        self.random(out, 48);
                        "garbage"
                    }
                }
            }
        }
    }

    /// A datagram for the OSC control port.
    fn control(&mut self, out: &mut Vec<u8>) -> &'static str {
        out.clear();
        match self.dice.below(4) {
            0 => {
                let len = 1 + self.dice.below(200) as usize;
                self.random(out, len);
                "garbage"
            }
            1 => {
                // A bundle whose first element claims 2 GB.
                out.extend_from_slice(b"#bundle\0");
                out.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1]);
                out.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
                self.random(out, 16);
                "hostile_bundle"
            }
            _ => {
                let (addr, args): (&str, Vec<rosc::OscType>) = match self.dice.below(4) {
                    0 => ("/convoy/stop", vec![]),
                    1 => ("/convoy/pause", vec![]),
                    2 => ("/convoy/seek", vec![rosc::OscType::Int(0)]),
                    _ => ("/convoy/next", vec![]),
                };
                let msg = rosc::OscPacket::Message(rosc::OscMessage {
                    addr: addr.to_string(),
                    args,
                });
                match rosc::encoder::encode(&msg) {
                    Ok(bytes) => out.extend_from_slice(&bytes),
                    Err(_) => self.random(out, 32),
                }
                "osc_command"
            }
        }
    }
}

impl Flood {
    /// Sends until `duration` has passed or `stop` is set; blocks the calling thread.
    pub fn run(&self, stop: &AtomicBool) -> Result<FloodReport, FloodError> {
        if self.targets.is_empty() {
            return Err(FloodError::Config("no target"));
        }
        if self.sources.is_empty() {
            return Err(FloodError::Config("no source address"));
        }
        if !(self.rate_pps.is_finite() && self.rate_pps > 0.0) {
            return Err(FloodError::Config("rate must be positive"));
        }
        let sockets = self
            .sources
            .iter()
            .map(|&ip| {
                UdpSocket::bind(SocketAddr::new(ip, 0))
                    .map_err(|source| FloodError::Bind { addr: ip, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut forger = Forger::new(self)?;
        let mut report = FloodReport::default();
        let mut buf = Vec::with_capacity(MAX_DATAGRAM + 64);
        let start = Instant::now();
        let mut n = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let elapsed = start.elapsed();
            if elapsed >= self.duration {
                break;
            }
            let due = (elapsed.as_secs_f64() * self.rate_pps) as u64;
            if report.sent + report.send_errors >= due {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
            let (to, target) = self.targets[n % self.targets.len()];
            let sock = &sockets[(n / self.targets.len()) % sockets.len()];
            n += 1;
            let kind = match target {
                Target::Fleet => forger.fleet(&mut buf),
                Target::Control => forger.control(&mut buf),
            };
            match sock.send_to(&buf, to) {
                Ok(_) => {
                    report.sent += 1;
                    *report.by_kind.entry(kind).or_default() += 1;
                }
                Err(_) => report.send_errors += 1,
            }
        }
        report.seconds = start.elapsed().as_secs_f64();
        Ok(report)
    }
}

/// `n` loopback source addresses `127.0.66.1`, `127.0.66.2`, … (all local on Linux).
pub fn loopback_sources(n: u8) -> Vec<IpAddr> {
    (1..=n.max(1))
        .map(|i| IpAddr::from([127, 0, 66, i]))
        .collect()
}

/// CPU time (user + system) a process has used so far, seconds, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> std::io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| std::io::Error::other("unexpected /proc stat format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let ticks = |i: usize| -> std::io::Result<f64> {
        fields
            .get(i - 3)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| std::io::Error::other("no CPU times in /proc stat"))
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((ticks(14)? + ticks(15)?) / hz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::ratelimit::{ClassRates, Rate, RateLimitConfig, TrafficClass};
    use crate::security::{Guard, GuardConfig, RejectReason, SecurityStats};
    use std::sync::Arc;

    fn flood(captured: Vec<Vec<u8>>) -> Flood {
        Flood {
            targets: vec![],
            rate_pps: 1.0,
            duration: Duration::ZERO,
            sources: vec![],
            captured,
            impersonate: "lead".into(),
            seed: 7,
        }
    }

    #[test]
    fn every_forged_fleet_datagram_is_rejected_under_its_reason() {
        let ring = Keyring::new(FleetKey::from_bytes(1, &[3u8; 32]).expect("key"));
        let now = now_unix_ns();
        let genuine = envelope::seal(&ring, sender_id("bike2"), 5, now, b"x").expect("seal");
        let big = Rate::new(1e9, 1e9);
        let rates = ClassRates {
            timing: big,
            membership: big,
            control: big,
            sntp: big,
        };
        let cfg = GuardConfig {
            rate: RateLimitConfig {
                per_ip: rates,
                per_peer: rates,
                ..RateLimitConfig::default()
            },
            ..GuardConfig::default()
        };
        let stats = Arc::new(SecurityStats::new());
        let mut guard = Guard::new(ring, &cfg).with_stats(stats.clone());
        let src: SocketAddr = "10.0.0.9:4000".parse().expect("addr");
        // The genuine datagram is accepted once; every copy after that is a replay.
        assert!(guard
            .check_class(src, &genuine, TrafficClass::Timing, now)
            .is_ok());
        let mut forger = Forger::new(&flood(vec![genuine])).expect("forger");
        let mut kinds = BTreeMap::<&str, u64>::new();
        let mut buf = Vec::new();
        for _ in 0..2000 {
            let kind = forger.fleet(&mut buf);
            *kinds.entry(kind).or_default() += 1;
            assert!(
                guard
                    .check_class(src, &buf, TrafficClass::Timing, now)
                    .is_err(),
                "{kind} datagram accepted"
            );
        }
        let s = stats.snapshot();
        assert_eq!(s.accepted, 1);
        assert_eq!(s.total_rejected(), 2000);
        for (kind, reason) in [
            ("forged_tag", RejectReason::BadTag),
            ("unknown_key", RejectReason::UnknownKey),
            ("replay", RejectReason::Replay),
        ] {
            assert!(kinds[kind] > 200, "{kinds:?}");
            assert!(stats.rejected(reason) > 0, "{reason:?}: {s:?}");
        }
        // Wrong-key envelopes are bad tags too, on top of the forged ones.
        assert_eq!(s.bad_tag, kinds["forged_tag"] + kinds["wrong_key"]);
        // Garbage is too short (malformed) or has no magic.
        assert_eq!(
            s.malformed + s.bad_magic,
            kinds["garbage"] + kinds["truncated"] + kinds["oversized"]
        );
        assert!(s.bad_magic > 0);
    }

    #[test]
    fn control_datagrams_mix_garbage_and_real_commands() {
        let mut forger = Forger::new(&flood(vec![])).expect("forger");
        let mut buf = Vec::new();
        let (mut decoded, mut commands) = (0, 0);
        for _ in 0..400 {
            let kind = forger.control(&mut buf);
            if let Ok(p) = crate::osc::codec::decode(&buf) {
                decoded += 1;
                assert_eq!(kind, "osc_command");
                assert!(matches!(p, rosc::OscPacket::Message(m) if m.addr.starts_with("/convoy/")));
            }
            commands += u32::from(kind == "osc_command");
        }
        assert_eq!(
            decoded, commands,
            "garbage and hostile bundles must not decode"
        );
        assert!(commands > 100);
    }

    #[test]
    fn a_flood_is_paced_and_counted() {
        let sink = UdpSocket::bind("127.0.0.1:0").expect("sink");
        let to = sink.local_addr().expect("addr");
        let f = Flood {
            targets: vec![(to, Target::Fleet), (to, Target::Control)],
            rate_pps: 4000.0,
            duration: Duration::from_millis(250),
            sources: loopback_sources(3),
            ..flood(vec![])
        };
        let r = f.run(&AtomicBool::new(false)).expect("flood");
        assert_eq!(r.send_errors, 0);
        assert_eq!(r.by_kind.values().sum::<u64>(), r.sent);
        assert!((700..=1100).contains(&r.sent), "{r:?}");
        let none = Flood {
            sources: vec![],
            ..f.clone()
        };
        assert!(matches!(
            none.run(&AtomicBool::new(false)),
            Err(FloodError::Config(_))
        ));
    }

    #[test]
    fn cpu_time_of_this_process_is_readable_and_grows() {
        let a = cpu_seconds(std::process::id()).expect("own stat");
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(60) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        let b = cpu_seconds(std::process::id()).expect("own stat");
        assert!(b >= a, "{a} → {b} ({x})");
        // qemu-user (the cross-build test runner, .cargo/config.toml) synthesises the
        // emulated process's /proc stat with zero CPU times; the kernel's accounting is
        // only visible natively.
        if std::env::var_os("CONVOY_QEMU_USER").is_none() {
            assert!(b > 0.0, "no CPU time accounted after a busy loop ({x})");
        }
        assert!(cpu_seconds(u32::MAX).is_err());
    }
}
