//! OSC interop for the external control surface.
//!
//! [`pattern`] implements OSC 1.0 address-pattern matching with bounded work,
//! [`codec`] wraps `rosc` with size/depth/argument limits, NTP timetag helpers
//! and incremental TCP framers (OSC 1.0 length prefix, OSC 1.1 SLIP),
//! [`command`] turns messages into the typed Convoy command set (including
//! Reaper and AbletonOSC dialects), and [`server`] is a small tokio UDP
//! control listener tying them to the control-port policy.

pub mod codec;
pub mod command;
pub mod pattern;
pub mod server;
