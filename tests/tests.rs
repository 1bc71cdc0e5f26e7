//! Integration tests: one binary, one module per area, shared helpers in `util`.

mod util;

mod cli;
mod decode;
mod playback;
mod pulse;
