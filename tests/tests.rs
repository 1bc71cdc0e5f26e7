//! Integration tests: one binary, one module per area, shared helpers in `util`.

mod util;

mod analyze;
mod cli;
mod decode;
mod docs;
mod fleet;
mod fleet_control;
mod fleet_hier;
mod fleet_lights;
mod fleet_netns_node;
mod fleet_node;
mod flood_status;
mod led_firmware;
mod led_link;
mod led_reconnect;
mod live_plane;
mod osc_interop;
mod osc_node;
mod osc_robustness;
mod osc_service;
mod osc_tools;
mod pi;
mod playback;
mod pulse;
mod security_guard;
mod show;
mod show_node;
mod sntp_interop;
mod sync;
mod web;
mod web_browser;
mod web_node;
