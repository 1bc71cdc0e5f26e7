//! The machine's IPv4 interfaces, and where fleet broadcasts really go.
//!
//! The limited broadcast `255.255.255.255` (the default `fleet.broadcast`) is routed like
//! any other address: on a bike whose WiFi profile sets no gateway there is no route for
//! it and every send fails with `ENETUNREACH`. A directed broadcast (`10.42.0.255`) always
//! has the interface's own connected route, so [`expand`] replaces the limited broadcast by
//! the directed broadcast of every interface that is up (only the one holding the bound
//! address when the socket is bound to one). [`interfaces`] reads them with `getifaddrs`;
//! [`expand`] is pure.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// One IPv4 address of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    /// Interface name (`wlan0`).
    pub name: String,
    /// Its address.
    pub addr: Ipv4Addr,
    /// Its directed broadcast address, when it has one.
    pub broadcast: Option<Ipv4Addr>,
    /// The loopback interface.
    pub loopback: bool,
    /// Administratively up.
    pub up: bool,
}

/// The IPv4 addresses of this machine's interfaces (empty when `getifaddrs` fails).
pub fn interfaces() -> Vec<Iface> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs; every
    // pointer read is checked for null and only read while the list is alive.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut p = head;
        while !p.is_null() {
            let ifa = &*p;
            p = ifa.ifa_next;
            let Some(addr) = v4(ifa.ifa_addr) else {
                continue;
            };
            let flags = ifa.ifa_flags;
            let broadcast = if flags & libc::IFF_BROADCAST as u32 != 0 {
                directed(addr, v4(ifa.ifa_netmask), v4(ifa.ifa_ifu))
            } else {
                None
            };
            let name = if ifa.ifa_name.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(ifa.ifa_name)
                    .to_string_lossy()
                    .into_owned()
            };
            out.push(Iface {
                name,
                addr,
                broadcast,
                loopback: flags & libc::IFF_LOOPBACK as u32 != 0,
                up: flags & libc::IFF_UP as u32 != 0,
            });
        }
        libc::freeifaddrs(head);
    }
    out
}

/// The network's directed broadcast: `addr | !netmask` (the kernel always routes it for
/// prefixes up to /30, also when the address was added without `brd`, which leaves the
/// interface's own broadcast field 0.0.0.0); else the interface's broadcast field when it
/// is a real address.
pub fn directed(
    addr: Ipv4Addr,
    netmask: Option<Ipv4Addr>,
    field: Option<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    if let Some(mask) = netmask {
        let m = u32::from(mask);
        if m.count_ones() <= 30 && m != 0 {
            return Some(Ipv4Addr::from(u32::from(addr) | !m));
        }
    }
    field.filter(|b| !b.is_unspecified() && !b.is_broadcast())
}

/// An IPv4 socket address behind `sa`, if it is one.
///
/// # Safety
/// `sa` is null or points to a valid `sockaddr` of its family's size.
unsafe fn v4(sa: *const libc::sockaddr) -> Option<Ipv4Addr> {
    if sa.is_null() || i32::from((*sa).sa_family) != libc::AF_INET {
        return None;
    }
    let sin = &*(sa as *const libc::sockaddr_in);
    Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
}

/// Is `ip` one of this machine's addresses (any loopback address counts)?
pub fn is_local(ip: IpAddr, ifaces: &[Iface]) -> bool {
    ip.is_loopback()
        || match ip {
            IpAddr::V4(v4) => ifaces.iter().any(|i| i.addr == v4),
            IpAddr::V6(_) => false,
        }
}

/// The destinations heartbeats really go to: every `255.255.255.255` entry becomes the
/// directed broadcast of each up, non-loopback interface with one (only the interface
/// holding `bind` when bound to a specific address), at the entry's port. Kept as it is
/// when no interface qualifies. Other entries are unchanged; no duplicates.
pub fn expand(destinations: &[SocketAddr], ifaces: &[Iface], bind: IpAddr) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::with_capacity(destinations.len());
    let push = |a: SocketAddr, out: &mut Vec<SocketAddr>| {
        if !out.contains(&a) {
            out.push(a);
        }
    };
    for d in destinations {
        if d.ip() != IpAddr::V4(Ipv4Addr::BROADCAST) {
            push(*d, &mut out);
            continue;
        }
        let directed: Vec<Ipv4Addr> = ifaces
            .iter()
            .filter(|i| i.up && !i.loopback)
            .filter(|i| bind.is_unspecified() || bind == IpAddr::V4(i.addr))
            .filter_map(|i| i.broadcast)
            .filter(|b| *b != Ipv4Addr::BROADCAST)
            .collect();
        if directed.is_empty() {
            push(*d, &mut out);
        }
        for b in directed {
            push(SocketAddr::new(IpAddr::V4(b), d.port()), &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, addr: [u8; 4], bcast: Option<[u8; 4]>, loopback: bool) -> Iface {
        Iface {
            name: name.into(),
            addr: addr.into(),
            broadcast: bcast.map(Ipv4Addr::from),
            loopback,
            up: true,
        }
    }

    #[test]
    fn the_limited_broadcast_goes_to_each_interfaces_own_broadcast() {
        let ifaces = [
            iface("lo", [127, 0, 0, 1], None, true),
            iface("wlan0", [10, 42, 0, 12], Some([10, 42, 0, 255]), false),
            iface("eth0", [192, 168, 1, 5], Some([192, 168, 1, 255]), false),
        ];
        let any: IpAddr = "0.0.0.0".parse().expect("ip");
        let limited: SocketAddr = "255.255.255.255:9125".parse().expect("addr");
        let peer: SocketAddr = "10.42.0.7:9125".parse().expect("addr");
        assert_eq!(
            expand(&[limited, peer], &ifaces, any),
            [
                "10.42.0.255:9125".parse().expect("addr"),
                "192.168.1.255:9125".parse().expect("addr"),
                peer
            ]
        );
        // Bound to the WiFi address: only its network.
        let bound: IpAddr = "10.42.0.12".parse().expect("ip");
        assert_eq!(
            expand(&[limited], &ifaces, bound),
            ["10.42.0.255:9125".parse::<SocketAddr>().expect("addr")]
        );
        // Nothing to expand to (loopback only, or a bind on loopback): unchanged.
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(expand(&[limited], &ifaces, lo), [limited]);
        assert_eq!(expand(&[limited], &ifaces[..1], any), [limited]);
    }

    #[test]
    fn the_directed_broadcast_comes_from_the_netmask_when_the_field_is_empty() {
        let a = Ipv4Addr::new(10, 77, 0, 1);
        let m24 = Some(Ipv4Addr::new(255, 255, 255, 0));
        // `ip addr add 10.77.0.1/24` without `brd`: the field reads 0.0.0.0.
        let none = Some(Ipv4Addr::UNSPECIFIED);
        assert_eq!(directed(a, m24, none), Some(Ipv4Addr::new(10, 77, 0, 255)));
        assert_eq!(directed(a, None, none), None);
        let field = Some(Ipv4Addr::new(10, 77, 0, 255));
        assert_eq!(directed(a, None, field), field);
    }

    #[test]
    fn local_addresses_include_every_loopback_address() {
        let ifaces = [iface(
            "wlan0",
            [10, 42, 0, 12],
            Some([10, 42, 0, 255]),
            false,
        )];
        assert!(is_local("10.42.0.12".parse().expect("ip"), &ifaces));
        assert!(is_local("127.0.0.3".parse().expect("ip"), &ifaces));
        assert!(!is_local("10.42.0.13".parse().expect("ip"), &ifaces));
    }

    #[test]
    fn this_machine_has_a_loopback_interface() {
        assert!(interfaces().iter().any(|i| i.loopback && i.up));
    }
}
