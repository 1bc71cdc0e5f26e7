//! The impairment relay at the IP layer, for protocols the UDP relay cannot carry (TCP: a
//! Snapcast stream, `tools/snapcast-compare.sh`). It opens one TUN device on the server's
//! side and one per client (the caller moves each into its own network namespace and
//! gives it an address); every IPv4 packet a client's device emits is written to the
//! server's device after what that client's [`Model`] decides (direction [`Dir::Up`]), and
//! every packet the server's device emits goes to the client whose address it is for
//! (learned from that client's own packets) after the same model's [`Dir::Down`] fate.
//! One model per client, each with its own seed, as the scenario gives each follower its
//! own relays: the very same delays, losses, tails, power save and outages as
//! [`crate::rig::impair::relay`], packet by packet. The model may reorder packets (jitter
//! larger than their spacing); TCP sorts that out as it would on a real link. Linux only
//! (`/dev/net/tun`); needs CAP_NET_ADMIN.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::rig::impair::{self, Dir, ImpairConfig, ImpairStats, Model, Out, Pending, Shaper};

/// Source and destination of an IPv4 packet (None: not IPv4, or too short).
pub fn ipv4_addrs(packet: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return None;
    }
    let at = |i: usize| Ipv4Addr::new(packet[i], packet[i + 1], packet[i + 2], packet[i + 3]);
    Some((at(12), at(16)))
}

/// Which client a packet belongs to: the clients' addresses as learned so far.
#[derive(Debug, Default)]
pub struct Routes {
    by_addr: HashMap<Ipv4Addr, usize>,
}

impl Routes {
    /// A packet client `k` sent: its source address is client k's.
    pub fn learn(&mut self, k: usize, packet: &[u8]) {
        if let Some((src, _)) = ipv4_addrs(packet) {
            self.by_addr.insert(src, k);
        }
    }

    /// The client a packet from the server goes to (None: unknown, dropped).
    pub fn client_for(&self, packet: &[u8]) -> Option<usize> {
        ipv4_addrs(packet).and_then(|(_, dst)| self.by_addr.get(&dst).copied())
    }
}

/// `struct ifreq` as TUNSETIFF reads it: the name, then the flags (40 bytes on Linux).
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Create (or attach to) the TUN device `name`: IP packets, no packet-information header.
/// It lives as long as the returned file.
pub fn open_tun(name: &str) -> anyhow::Result<File> {
    use std::os::fd::AsRawFd;
    anyhow::ensure!(
        !name.is_empty() && name.len() < 16,
        "TUN name {name:?} must be 1 to 15 bytes"
    );
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .context("cannot open /dev/net/tun (root needed)")?;
    let mut req = IfReq {
        name: [0; 16],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads (and writes back the name into) a struct ifreq, which `req`
    // is laid out as and outlives the call; the fd is open.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("TUNSETIFF {name} (root needed)"));
    }
    Ok(file)
}

/// Relay packets between `server` and each of `clients` (TUN device names), impaired by
/// one model per client seeded `cfg(k)`, until a device fails. Prints the counters to
/// stderr every 10 s.
pub fn relay(
    server: &str,
    clients: &[String],
    cfg: impl Fn(usize) -> ImpairConfig,
) -> anyhow::Result<()> {
    let server_dev = Arc::new(open_tun(server)?);
    let client_devs = clients
        .iter()
        .map(|c| open_tun(c).map(Arc::new))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start = tokio::time::Instant::now();
    let stats = Arc::new(ImpairStats::default());
    let shapers: Arc<Vec<Shaper>> = Arc::new(
        (0..clients.len())
            .map(|k| Shaper {
                model: Mutex::new(Model::new(cfg(k))),
                start,
                stats: stats.clone(),
            })
            .collect(),
    );
    let routes = Arc::new(Mutex::new(Routes::default()));
    let courier = impair::spawn_courier();
    let send = |courier: &std::sync::mpsc::Sender<Pending>,
                shaper: &Shaper,
                dir: Dir,
                to: &Arc<File>,
                data: &[u8]| {
        for at in shaper.schedule(dir) {
            let _ = courier.send(Pending {
                at: at.into_std(),
                out: Out::Tun(to.clone()),
                data: data.to_vec(),
            });
        }
    };
    let mut threads = Vec::new();
    for (k, dev) in client_devs.iter().enumerate() {
        let (dev, server_dev) = (dev.clone(), server_dev.clone());
        let (shapers, routes, courier) = (shapers.clone(), routes.clone(), courier.clone());
        threads.push(std::thread::spawn(move || -> std::io::Result<()> {
            let mut buf = vec![0u8; 65_536];
            loop {
                let n = (&*dev).read(&mut buf)?;
                let packet = &buf[..n];
                if ipv4_addrs(packet).is_none() {
                    continue; // IPv6 neighbour chatter and the like
                }
                if let Ok(mut r) = routes.lock() {
                    r.learn(k, packet);
                }
                send(&courier, &shapers[k], Dir::Up, &server_dev, packet);
            }
        }));
    }
    {
        let (shapers, routes, courier) = (shapers.clone(), routes.clone(), courier.clone());
        let (server_dev, client_devs) = (server_dev.clone(), client_devs.clone());
        threads.push(std::thread::spawn(move || -> std::io::Result<()> {
            let mut buf = vec![0u8; 65_536];
            loop {
                let n = (&*server_dev).read(&mut buf)?;
                let packet = &buf[..n];
                let k = routes.lock().ok().and_then(|r| r.client_for(packet));
                if let Some(k) = k {
                    send(&courier, &shapers[k], Dir::Down, &client_devs[k], packet);
                }
            }
        }));
    }
    eprintln!(
        "impair-tun: {server} <-> {} ({} clients)",
        clients.join(", "),
        clients.len()
    );
    loop {
        std::thread::sleep(std::time::Duration::from_secs(10));
        if let Some(t) = threads.iter().position(|t| t.is_finished()) {
            let result = threads.swap_remove(t).join();
            return match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e).context("TUN device"),
                Err(_) => anyhow::bail!("a relay thread panicked"),
            };
        }
        eprintln!(
            "impair-tun: {} packets, {} dropped",
            stats.received.load(Ordering::Relaxed),
            stats.dropped.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal IPv4 header from `src` to `dst`.
    fn packet(src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p
    }

    #[test]
    fn reads_the_addresses_of_ipv4_packets_only() {
        let p = packet([10, 77, 1, 2], [10, 77, 0, 1]);
        assert_eq!(
            ipv4_addrs(&p),
            Some((Ipv4Addr::new(10, 77, 1, 2), Ipv4Addr::new(10, 77, 0, 1)))
        );
        let mut v6 = p.clone();
        v6[0] = 0x60;
        assert_eq!(ipv4_addrs(&v6), None);
        assert_eq!(ipv4_addrs(&p[..19]), None);
    }

    #[test]
    fn replies_go_to_the_client_whose_address_they_are_for() {
        let mut r = Routes::default();
        assert_eq!(r.client_for(&packet([10, 77, 0, 1], [10, 77, 2, 2])), None);
        r.learn(0, &packet([10, 77, 1, 2], [10, 77, 0, 1]));
        r.learn(1, &packet([10, 77, 2, 2], [10, 77, 0, 1]));
        assert_eq!(
            r.client_for(&packet([10, 77, 0, 1], [10, 77, 2, 2])),
            Some(1)
        );
        assert_eq!(
            r.client_for(&packet([10, 77, 0, 1], [10, 77, 1, 2])),
            Some(0)
        );
        assert_eq!(r.client_for(&packet([10, 77, 0, 1], [10, 77, 3, 2])), None);
    }
}
