//! The simulated strip in the terminal: one line of 24-bit-colour blocks, redrawn in place
//! at a fixed frame rate by a small thread, followed by a caller-supplied status text
//! (cue, beat, position). It draws only when the target is a terminal, so piping
//! `convoy show` to a file gives plain logs. While it draws, [`log_prefix`] tells log
//! writers to clear the strip's line first, so a log line is not drawn over (the next frame
//! redraws the strip below it).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::output::{sim_now, LedOutput};

/// Whether a strip is being drawn on the terminal.
static DRAWING: AtomicBool = AtomicBool::new(false);

/// What a line written to stderr should start with: `\r` and clear-line while a strip is
/// drawn and stderr is the terminal too, else nothing.
pub fn log_prefix(stderr_is_terminal: bool) -> &'static str {
    prefix_for(DRAWING.load(Ordering::Acquire), stderr_is_terminal)
}

/// Mark the terminal's current line as a status display that log lines must clear first
/// (`convoy node`'s console line; [`TerminalStrip`] sets it itself).
pub fn set_drawing(drawing: bool) {
    DRAWING.store(drawing, Ordering::Release);
}

fn prefix_for(drawing: bool, stderr_is_terminal: bool) -> &'static str {
    if drawing && stderr_is_terminal {
        "\r\x1b[2K"
    } else {
        ""
    }
}
use super::sim::SimStrip;

/// A running terminal renderer; stops (and ends its line) when stopped or dropped.
#[derive(Debug)]
pub struct TerminalStrip {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TerminalStrip {
    /// Draw `output`'s strip on stdout at `fps`, each frame followed by `status()`.
    /// `None` when the output is not simulated or stdout is not a terminal.
    pub fn spawn(
        output: &LedOutput,
        fps: f64,
        status: impl Fn() -> String + Send + 'static,
    ) -> Option<TerminalStrip> {
        let LedOutput::Sim { strip, epoch } = output else {
            return None;
        };
        if !std::io::stdout().is_terminal() {
            return None;
        }
        let (strip, epoch) = (strip.clone(), *epoch);
        DRAWING.store(true, Ordering::Release);
        let period = Duration::from_secs_f64(1.0 / fps.clamp(1.0, 120.0));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("convoy-led-term".into())
            .spawn(move || {
                let mut out = std::io::stdout();
                let mut next = Instant::now();
                while !flag.load(Ordering::Acquire) {
                    let line = frame_line(&strip, &epoch, &status());
                    let _ = out.write_all(line.as_bytes()).and_then(|_| out.flush());
                    next += period;
                    std::thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                let _ = writeln!(out);
            })
            .ok()?;
        Some(TerminalStrip {
            stop,
            thread: Some(thread),
        })
    }

    /// Stop drawing and end the line.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
            DRAWING.store(false, Ordering::Release);
        }
    }
}

impl Drop for TerminalStrip {
    fn drop(&mut self) {
        self.halt();
    }
}

/// One frame: carriage return, clear line, the strip rendered now, a space, `status`.
pub fn frame_line(strip: &Mutex<SimStrip>, epoch: &Instant, status: &str) -> String {
    let now = sim_now(epoch);
    let blocks = {
        let mut s = strip.lock().unwrap_or_else(|p| p.into_inner());
        s.render(now);
        s.to_ansi()
    };
    format!("\r\x1b[2K{blocks} {status}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::led::protocol::{Command, Pattern, Rgb};

    #[test]
    fn logs_clear_the_strip_line_only_on_a_terminal_while_drawing() {
        assert_eq!(prefix_for(true, true), "\r\x1b[2K");
        assert_eq!(prefix_for(true, false), "");
        assert_eq!(prefix_for(false, true), "");
    }

    #[test]
    fn a_frame_is_one_line_of_coloured_blocks() {
        let out = LedOutput::sim(4);
        out.try_send(Command::Pattern(Pattern::Solid)).ok();
        out.try_send(Command::Color(Rgb::new(255, 0, 0))).ok();
        out.try_send(Command::Bright(255)).ok();
        let LedOutput::Sim { strip, epoch } = &out else {
            panic!("sim output")
        };
        let line = frame_line(strip, epoch, "bar 1");
        assert!(line.starts_with("\r\x1b[2K"));
        assert_eq!(
            line.matches("\x1b[38;2;255;0;0m\u{2588}").count(),
            4,
            "{line:?}"
        );
        assert!(line.ends_with("\x1b[0m bar 1"));
        assert!(!line.contains('\n'));
    }
}
