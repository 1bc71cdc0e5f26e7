//! Fleet time and playback lock. Followers estimate the leader's clock (offset and
//! frequency) from SNTP exchanges ([`sntp`], [`filter`]); the leader publishes the timeline
//! — which track frame is heard at which fleet time, at what rate — over OSC ([`timeline`]);
//! a PI loop on each follower steers the resampler's speed so its speaker plays the frame
//! the timeline says, seeking only on join or after a large persistent error ([`pll`]).
//! The impairment relay and the playback-offset measures the tests and the scenario use
//! live in `rig` (`rig::impair`, `rig::measure`).

pub mod filter;
pub mod pll;
pub mod sntp;
pub mod timeline;
