//! The real-time render path must not allocate: [`RenderCore::render`], the whole body of
//! every sink's audio callback (cpal, null, virtual), is driven here for thousands of
//! callbacks of varying sizes from a ring that the player's rate converter fills, with speed
//! changes ramping through it, starved stretches (underrun zero-fill), a full timing queue
//! and finally a player that has gone away. A counting global allocator (this is its own
//! test binary) counts the allocations made inside the callbacks, and separately inside
//! the converter's steady-state chunk processing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use convoy::audio::render::{PlaybackShared, RenderCore, TimingSample};
use convoy::audio::resample::RateConverter;
use convoy::audio::EngineOptions;
use convoy::config::Config;

struct Counting;

/// Allocations made while [`Phase::Render`] was armed on the allocating thread.
static RENDER_ALLOCS: AtomicUsize = AtomicUsize::new(0);
/// Allocations made while [`Phase::Convert`] was armed on the allocating thread.
static CONVERT_ALLOCS: AtomicUsize = AtomicUsize::new(0);

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Off,
    Render,
    Convert,
}

thread_local! {
    static PHASE: Cell<Phase> = const { Cell::new(Phase::Off) };
}

fn count() {
    match PHASE.with(|p| p.get()) {
        Phase::Off => {}
        Phase::Render => {
            RENDER_ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        Phase::Convert => {
            CONVERT_ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Run `f` with `phase` armed on this thread.
fn armed<T>(phase: Phase, f: impl FnOnce() -> T) -> T {
    PHASE.with(|p| p.set(phase));
    let out = f();
    PHASE.with(|p| p.set(Phase::Off));
    out
}

/// Device buffer sizes a callback is asked for, in frames (ALSA periods, PulseAudio's
/// irregular requests, one larger than the resampler chunk).
const CALLBACK_FRAMES: [usize; 6] = [64, 128, 256, 441, 480, 1024];

#[test]
fn the_render_callback_never_allocates() {
    let config = Config::builtin().expect("built-in config");
    let opts = EngineOptions::from_config(&config.audio);
    let ch = usize::from(config.audio.channels);
    let out_rate = config.audio.sample_rate;
    let in_rate = 44_100;

    // The player's side: a 441 Hz stereo tone through the configured converter.
    let mut conv = RateConverter::new(
        opts.resampler,
        opts.sinc_len,
        in_rate,
        out_rate,
        ch,
        opts.chunk_frames,
        opts.max_ppm,
    )
    .expect("converter");
    let source: Vec<f32> = (0..in_rate as usize * 2)
        .flat_map(|i| {
            let v = (i as f32 * 441.0 * std::f32::consts::TAU / in_rate as f32).sin() * 0.5;
            std::iter::repeat_n(v, ch)
        })
        .collect();
    let source_frames = source.len() / ch;
    let mut read = 0usize;
    let (mut ring, audio) = rtrb::RingBuffer::<f32>::new(opts.ring_frames * ch);
    let (timing_tx, mut timing) = rtrb::RingBuffer::<TimingSample>::new(64);
    let shared = PlaybackShared::new();
    let mut core = RenderCore::new(audio, timing_tx, shared.clone(), ch);
    let mut out = vec![0.0f32; 1024 * ch];

    // One converter chunk into the ring if it fits; input wraps around the tone.
    let mut produce = |conv: &mut RateConverter, ring: &mut rtrb::Producer<f32>| -> bool {
        if ring.slots() < conv.chunk() * ch {
            return false;
        }
        while conv.buffered() < conv.input_needed() {
            let want = (conv.input_needed() - conv.buffered()).min(source_frames - read);
            conv.push_input(&source[read * ch..(read + want) * ch]);
            read = (read + want) % source_frames;
        }
        let (chunk, _) = conv
            .process(false)
            .expect("process")
            .expect("a chunk: the input was topped up");
        for &s in chunk {
            ring.push(s).expect("room was checked");
        }
        true
    };

    let mut requested = 0u64;
    let mut speed_changes = 0;
    let mut callback = |i: usize,
                        conv: &mut RateConverter,
                        ring: &mut rtrb::Producer<f32>,
                        core: &mut RenderCore,
                        timing: &mut rtrb::Consumer<TimingSample>,
                        out: &mut [f32],
                        arm: bool| {
        // A PLL nudging the speed every 40 callbacks, swinging ±250 ppm.
        if i % 40 == 0 {
            let ppm = ((i / 40) % 11) as f64 * 50.0 - 250.0;
            let phase = if arm { Phase::Convert } else { Phase::Off };
            armed(phase, || conv.set_speed_ppm(ppm));
            speed_changes += 1;
        }
        // Every 300 callbacks the player stalls for 40 of them (about 0.3 s, more than the
        // ring holds): the ring runs dry.
        if i % 300 >= 40 {
            let phase = if arm { Phase::Convert } else { Phase::Off };
            armed(phase, || while produce(conv, ring) {});
        }
        let frames = CALLBACK_FRAMES[i % CALLBACK_FRAMES.len()];
        let buf = &mut out[..frames * ch];
        let phase = if arm { Phase::Render } else { Phase::Off };
        armed(phase, || core.render(buf, i as u64 * 1_000_000));
        requested += frames as u64;
        // The player reads timing samples now and then; in between, the queue fills up.
        if i % 100 == 0 {
            while timing.pop().is_ok() {}
        }
    };

    // Warm up (first chunks, the converter's first ramps), then count.
    for i in 0..600 {
        callback(
            i,
            &mut conv,
            &mut ring,
            &mut core,
            &mut timing,
            &mut out,
            false,
        );
    }
    let underruns_before = shared.underruns.load(Ordering::Relaxed);
    for i in 600..10_600 {
        callback(
            i,
            &mut conv,
            &mut ring,
            &mut core,
            &mut timing,
            &mut out,
            true,
        );
    }
    // The player goes away: the callback plays silence (not counted as underruns).
    drop(ring);
    let underruns = shared.underruns.load(Ordering::Relaxed);
    armed(Phase::Render, || {
        for _ in 0..50 {
            core.render(&mut out, 0);
        }
    });
    requested += 50 * 1024;

    eprintln!(
        "10 050 counted callbacks: {} underruns; {} frames zero-filled in all; {speed_changes} speed changes",
        underruns - underruns_before,
        shared.underrun_frames.load(Ordering::Relaxed)
    );
    assert_eq!(RENDER_ALLOCS.load(Ordering::SeqCst), 0, "in the callback");
    assert_eq!(
        CONVERT_ALLOCS.load(Ordering::SeqCst),
        0,
        "in the converter's chunk processing and speed changes"
    );
    // What was exercised.
    assert!(
        underruns - underruns_before >= 30,
        "{underruns} underruns: the starved stretches must zero-fill"
    );
    assert_eq!(shared.underruns.load(Ordering::Relaxed), underruns);
    assert!(speed_changes > 250, "{speed_changes}");
    assert_eq!(shared.callbacks.load(Ordering::Relaxed), 10_650);
    let device = shared.device_frames.load(Ordering::Relaxed);
    assert_eq!(device, requested);
    let ring_frames = shared.ring_frames.load(Ordering::Relaxed);
    let filled = shared.underrun_frames.load(Ordering::Relaxed);
    assert!(ring_frames + filled <= device && ring_frames > device / 2);
    assert!(
        out.iter().all(|&s| s == 0.0),
        "silence once the player left"
    );
}
