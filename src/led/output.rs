//! One front for every LED target.
//!
//! Callers (the show engine, the beat tracker) hand [`Command`]s to an
//! [`LedOutput`] without caring whether it drives a real controller through
//! the [`super::serial`] task or an in-process [`super::sim::SimStrip`]
//! (for development on a laptop or for tests). Both paths share the same
//! delivery rule: stream updates may be dropped when stale, state commands
//! are never dropped silently.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::protocol::Command;
use super::serial::{spawn_serial, Delivery, LedError, LedHandle, LinkState, SerialConfig};
use super::sim::SimStrip;
use crate::config::{LedConfig, LedOutputKind};

/// Where LED commands go.
#[derive(Debug, Clone)]
pub enum LedOutput {
    /// The serial task of a real controller.
    Serial(LedHandle),
    /// A simulated strip; `epoch` is t = 0 for its clock.
    Sim {
        /// The strip, shared with whoever renders it.
        strip: Arc<Mutex<SimStrip>>,
        /// Start of the strip's millisecond clock.
        epoch: Instant,
    },
    /// No LED hardware: commands are accepted and discarded.
    Off,
}

impl LedOutput {
    /// A simulated output with a fresh strip of `num_leds` LEDs.
    pub fn sim(num_leds: u16) -> LedOutput {
        LedOutput::Sim {
            strip: Arc::new(Mutex::new(SimStrip::new(num_leds))),
            epoch: Instant::now(),
        }
    }

    /// Send a command; state commands may wait for queue room (serial).
    pub async fn send(&self, cmd: Command) -> Result<Delivery, LedError> {
        match self {
            LedOutput::Serial(h) => h.send(cmd).await,
            LedOutput::Sim { .. } | LedOutput::Off => self.try_send(cmd),
        }
    }

    /// Send without waiting (see [`LedHandle::try_send`]).
    pub fn try_send(&self, cmd: Command) -> Result<Delivery, LedError> {
        match self {
            LedOutput::Serial(h) => h.try_send(cmd),
            LedOutput::Sim { strip, epoch } => {
                let now = sim_now(epoch);
                strip
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .apply(&cmd, now);
                Ok(Delivery::Queued)
            }
            LedOutput::Off => Ok(Delivery::Queued),
        }
    }

    /// The link as the node's snapshot names it: `sim`, `none`, `connected`,
    /// `connecting` or `disconnected`.
    pub fn link_label(&self) -> &'static str {
        match self {
            LedOutput::Sim { .. } => "sim",
            LedOutput::Off => "none",
            LedOutput::Serial(h) => match h.current_status().link {
                LinkState::Connected => "connected",
                LinkState::Connecting => "connecting",
                LinkState::Disconnected | LinkState::Stopped => "disconnected",
            },
        }
    }
}

/// Open the output `[led]` selects. A serial output starts its reconnecting task on the
/// current tokio runtime (it must be called inside one) and never fails: a missing port
/// is reported as `disconnected` and retried.
pub fn open_output(config: &LedConfig) -> LedOutput {
    match config.output {
        LedOutputKind::Sim => LedOutput::sim(config.num_leds),
        LedOutputKind::None => LedOutput::Off,
        LedOutputKind::Serial => {
            let mut sc = SerialConfig::new(&config.port);
            sc.baud = config.baud;
            sc.binary_stream = config.binary_stream;
            let (handle, _task) = spawn_serial(sc);
            LedOutput::Serial(handle)
        }
    }
}

/// Milliseconds since `epoch`, wrapping like the firmware's `millis()`.
pub fn sim_now(epoch: &Instant) -> u32 {
    (epoch.elapsed().as_millis() & u128::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::led::protocol::Pattern;

    #[tokio::test]
    async fn sim_output_applies_commands() {
        let out = LedOutput::sim(10);
        assert_eq!(
            out.send(Command::Pattern(Pattern::Chase)).await.ok(),
            Some(Delivery::Queued)
        );
        out.try_send(Command::Hue(77)).ok();
        let LedOutput::Sim { strip, .. } = &out else {
            panic!("expected sim output")
        };
        let st = strip.lock().map(|s| s.state()).ok();
        assert_eq!(st.map(|s| (s.pattern, s.hue)), Some((Pattern::Chase, 77)));
    }
}
