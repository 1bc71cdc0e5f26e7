//! LED strip control for Convoy: talks to the Arduino strip controller on
//! each bike (or to a simulated strip) so that patterns, beats and audio band
//! levels follow the music.
//!
//! [`protocol`] is the pure wire codec shared with the firmware in
//! `tools/arduino/convoy_led/`, [`serial`] the reconnecting async transport,
//! [`sim`] an in-memory strip and firmware model, [`patterns`] the pattern
//! maths both the simulator and the firmware implement, and [`output`] a
//! single front ([`LedOutput`], opened from `[led]` by [`open_output`]) over the serial
//! and simulated targets; [`term`] draws a simulated strip in the terminal.
//! The protocol is specified in `docs/led-protocol.md`.

pub mod output;
pub mod patterns;
pub mod protocol;
pub mod serial;
pub mod sim;
pub mod term;

pub use output::{open_output, LedOutput};
