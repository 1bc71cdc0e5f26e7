//! Integration tests: one binary, one module per area, shared helpers in `util`.

mod util;

mod analyze;
mod cli;
mod decode;
mod led_firmware;
mod led_reconnect;
mod osc_interop;
mod osc_robustness;
mod playback;
mod pulse;
mod security_guard;
mod sntp_interop;
mod sync;
mod web;
mod web_browser;
