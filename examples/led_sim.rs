//! Render every pattern of the simulated strip in the terminal
//! (24-bit colour): `cargo run --example led_sim`.

use convoy::led::protocol::{Command, Pattern, Rgb};
use convoy::led::sim::SimStrip;

fn main() {
    let mut strip = SimStrip::new(48);
    strip.apply(&Command::Color(Rgb::new(255, 120, 0)), 0);
    strip.apply(&Command::Bright(255), 0);
    strip.apply(&Command::Bands3([80, 200, 140]), 0);
    for p in Pattern::ALL {
        strip.apply(&Command::Pattern(p), 1000);
        strip.apply(
            &Command::Beat {
                beat_in_bar: 1,
                strength: 255,
            },
            1000,
        );
        strip.render(1100);
        println!("{:>10} {}", p.name(), strip.to_ansi());
    }
}
