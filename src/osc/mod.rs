//! OSC: the external control port, feedback, outbound streams and WLED audio sync.
//!
//! Pure parts: [`pattern`] (OSC 1.0 address patterns with bounded work), [`codec`] (`rosc`
//! behind size/depth/argument limits, NTP timetags, incremental OSC 1.0 length-prefix and
//! OSC 1.1 SLIP stream framers), [`command`] (the typed Convoy command set, with QLab, Reaper
//! and AbletonOSC dialects), the feedback and outbound message builders and the WLED packet
//! encoder. Adapters: [`serve`] ([`service`]) binds UDP and TCP on one port and feeds every
//! packet to the [`dispatch::Dispatcher`] (security policy, pattern dispatch, QLab-style
//! replies, bundles held by [`schedule`] until their timetag on the fleet clock), which talks
//! to the node only through a [`crate::control::NodeHandle`]; [`feedback`] pushes state
//! changes to control surfaces, [`outbound`] streams beats, bars, levels and position to
//! configured destinations, and [`wled`] sends the WLED audio-sync V2 packet. The whole
//! address space is documented in `docs/osc.md`.

pub mod ableton;
pub mod codec;
pub mod command;
pub mod dispatch;
pub mod feedback;
pub mod follow;
pub mod outbound;
pub mod pattern;
pub mod schedule;
pub mod service;
pub mod wled;

pub use crate::config::{FollowMode, OscConfig, TcpFraming, WledConfig};
pub use service::{serve, serve_with, OscService, ServeError};
