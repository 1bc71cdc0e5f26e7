//! The live analyser must not allocate per block once warmed up.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use convoy::analysis::{synth, AnalysisParams, Event, LiveAnalyzer};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(|a| a.get()) {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.with(|a| a.get()) {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn live_analyzer_does_not_allocate_after_warm_up() {
    let sr = 44_100;
    let clip = synth::corpus(sr)
        .into_iter()
        .find(|c| c.name == "rock120to140")
        .expect("clip");
    let mut live = LiveAnalyzer::new(sr, &AnalysisParams::default());
    let warm = 12 * sr as usize;
    let mut beats = 0usize;
    let mut count = |live: &mut LiveAnalyzer, block: &[f32]| {
        for ev in live.process(block) {
            if let Event::Beat(_) = ev {
                beats += 1;
            }
        }
    };
    for b in clip.samples[..warm].chunks(1024) {
        count(&mut live, b);
    }
    ARMED.with(|a| a.set(true));
    // Includes the tempo change, tempo re-estimates and beats.
    for b in clip.samples[warm..].chunks(1024) {
        count(&mut live, b);
    }
    ARMED.with(|a| a.set(false));
    assert_eq!(ALLOCS.load(Ordering::SeqCst), 0);
    assert!(beats > 50);
}
