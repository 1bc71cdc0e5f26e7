//! # Convoy
//!
//! A synchronized music-and-light show controller for fleets of vehicles: every bike decodes
//! and plays the track itself, locked to one fleet timeline, and drives its LED strip from
//! the music.
//!
//! # Layout
//!
//! Layers, the three planes (control in, live out, time) and where each rule lives:
//! `docs/architecture.md`; `tools/layers.py` checks that no import points up.
//!
//! - [`clock`] — the monotonic clock, injectable local clock skew, NTP/OSC timestamps and
//!   the one fleet-time type [`clock::FleetClock`]: the only place that converts between
//!   kinds of time.
//! - [`config`] — `config/default.toml` (embedded) layered with a user file and `--set`
//!   overrides; one validation for every entry point.
//! - [`audio`] — decode (symphonia) → resample with live speed adjustment (rubato) →
//!   lock-free ring → sink (`cpal`, `null`, `virtual`); the player reports which track frame
//!   is heard when, and takes speed/seek decisions from a controller.
//! - [`analysis`] — pure DSP: FFT bands, onsets, tempo, Ellis DP beat tracking, downbeats,
//!   sections, the streaming live tracker and the versioned beatmap format.
//! - [`control`] — the control plane: the typed `Command`, the `NodeHandle` every surface
//!   sends through, the status `Snapshot` and the typed `Refusal`.
//! - [`live`] — the live plane: the player's books, beats stamped with when they are heard,
//!   band levels and tempo, read by every output at the instant it sends.
//! - [`sync`] — fleet time (SNTP server + sntpc client, offset/frequency filter), the OSC
//!   timeline, the playback PLL, and the pure state machines of the leader's transport, the
//!   follower's timeline and the role switch.
//! - [`fleet`] — membership: mDNS and broadcast-heartbeat discovery, the Bully election
//!   state machine with terms, Lamport ordering of competing commands, the async driver
//!   that publishes who leads, and the replicated manual lights and command relay.
//! - [`node`] — the `convoy node` daemon, wiring only: player, clock, sync sockets, the
//!   role the fleet elects (fixed or `auto`), the show and lights, the web app, OSC, status.
//! - [`led`] — the Arduino LED protocol (pure codec), the reconnecting serial transport and a
//!   simulated strip (drawn in the terminal); the firmware lives in `tools/arduino/`.
//! - [`show`] — show files (playlist, cues at bars/beats/sections/times, audio-reactive
//!   mappings, per-vehicle overrides), the pure cue scheduler and the runner that sends
//!   each light command ahead of its beat.
//! - [`security`] — HMAC-SHA256 envelopes on every fleet datagram, replay windows, rate
//!   limits, vehicle whitelist and the external control-port policy.
//! - [`osc`] — OSC address patterns, size-capped codec and TCP framings, the typed control
//!   address space (Convoy, Reaper, AbletonOSC, QLab-style replies) and the control server.
//! - [`link`] — an Ableton Link peer (clean-room, from a facts-only wire spec): the pure
//!   wire codec, session timeline and peer state machine, and a thin socket layer; the
//!   lights follow a Link session's beat, or the fleet leads it (`[link]`, `docs/link.md`).
//! - [`library`] — the content-addressed track and show library, fetching shared tracks
//!   from other bikes (resumable, hash-checked, throttled) and opening timeline tracks.
//! - [`web`] — the phone web app and its REST + WebSocket API, the EchoFlux-style playback
//!   API and follower, and serving library tracks (with `Range`); talks to the node only
//!   through `control`.
//! - `rig` (cargo feature `rig`, on by default, off in the Pi binaries) — the measuring rigs:
//!   UDP impairment relay, playback-offset measures, flood sender, the multi-node scenario,
//!   beat-tracking scores and a simulated node for the web app; see `src/rig/mod.rs`.
//! - [`cli`] — the command-line front door; with `rig`, the only places that use `anyhow`.

pub mod analysis;
pub mod audio;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod fleet;
pub mod led;
pub mod library;
pub mod link;
pub mod live;
pub mod node;
pub mod osc;
#[cfg(any(test, feature = "rig"))]
pub mod rig;
pub mod security;
pub mod show;
pub mod sync;
pub mod web;
