//! The panic fade (QLab's `/panic`): the fleet's brightness ramps from where it is to zero
//! in [`FADE_STEPS`] even steps over the fade time, then the transport stops. Each step is
//! an ordinary [`Command::Bright`] sent through the node's own handle, so it is shared with
//! the fleet like any other light change, and a `/go` afterwards restores the show's look.

use std::time::Duration;

use super::{Command, NodeHandle, Origin};

/// Brightness steps of a fade (every `fade / FADE_STEPS`; the last is 0).
pub const FADE_STEPS: u32 = 20;

/// The brightness levels of a fade from `from`, last one 0.
pub fn fade_levels(from: f32) -> impl Iterator<Item = f32> {
    let from = from.clamp(0.0, 1.0);
    (1..=FADE_STEPS).map(move |k| from * (1.0 - k as f32 / FADE_STEPS as f32))
}

/// Fade the lights from brightness `from` to black over `fade`, then stop the transport.
/// Runs on the node's runtime; a full command queue skips a step (the next one follows).
pub async fn fade_out(handle: NodeHandle, from: f32, fade: Duration) {
    let step = fade / FADE_STEPS;
    for level in fade_levels(from) {
        tokio::time::sleep(step).await;
        if let Err(e) = handle.submit(Command::Bright { level }, Origin::Internal) {
            tracing::warn!("panic fade: {e}");
        }
    }
    if let Err(e) = handle.submit(Command::Stop, Origin::Internal) {
        tracing::warn!("panic stop: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fade_ends_in_black_in_even_steps() {
        let v: Vec<f32> = fade_levels(0.8).collect();
        assert_eq!(v.len(), FADE_STEPS as usize);
        assert_eq!(v.last(), Some(&0.0));
        assert!((v[0] - 0.76).abs() < 1e-6, "{v:?}");
        assert!(v.windows(2).all(|w| w[1] < w[0]));
    }

    #[tokio::test(start_paused = true)]
    async fn the_fade_sends_brightness_steps_then_stop() {
        let (handle, mut inbox) = NodeHandle::channel(Default::default());
        tokio::spawn(fade_out(handle, 1.0, Duration::from_millis(2000)));
        let mut got = Vec::new();
        while let Some(r) = inbox.requests.recv().await {
            let stop = r.command == Command::Stop;
            got.push(r.command);
            if stop {
                break;
            }
        }
        assert_eq!(got.len(), FADE_STEPS as usize + 1);
        assert_eq!(got[FADE_STEPS as usize - 1], Command::Bright { level: 0.0 });
        assert_eq!(got.last(), Some(&Command::Stop));
    }
}
