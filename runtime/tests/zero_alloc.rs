//! Steady state allocates nothing per frame: a counting global allocator watches the whole
//! frame path of `kestrel run` — stream framing, the capture slot and mailbox hand-over,
//! pixel conversion (YUYV, NV12, I420, gray), resize + normalise into the input tensor,
//! post-processing, the JSON line and the statistics — for 20 frames per format after a
//! warm-up of 5 (kept short: under qemu each frame costs a model run of ~0.5 s).
//!
//! Not counted: `Session::run` itself (tract allocates its intermediate and output tensors
//! per run; the count is printed for reference) and the MJPEG decoder (zune-jpeg allocates
//! per image; see `pipeline::convert`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Read;
use std::time::Duration;

use kestrel_runtime::camera::pipe::Pipe;
use kestrel_runtime::camera::{FrameSource, PixelFormat, SourceOptions};
use kestrel_runtime::pipeline::mailbox::{Mailbox, Slot, Take};
use kestrel_runtime::pipeline::sinks::{FrameInfo, JsonLines};
use kestrel_runtime::pipeline::stats::{Stages, Stats};
use kestrel_runtime::pipeline::Pipeline;
use kestrel_runtime::{bundled, LoadOptions};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made by this thread so far.
fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// An endless camera-like byte stream: a moving ramp, produced without allocating.
struct Endless {
    t: u8,
}

impl Read for Endless {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = out.len().min(64 * 1024);
        for (i, b) in out[..n].iter_mut().enumerate() {
            *b = (i as u8).wrapping_add(self.t);
        }
        self.t = self.t.wrapping_add(1);
        Ok(n)
    }
}

#[test]
fn steady_state_frames_allocate_nothing_outside_the_model() {
    let model = bundled::load(&LoadOptions::default()).unwrap();
    let mut pipeline = Pipeline::new(&model, bundled::normalize(), bundled::task(2)).unwrap();
    let mut sink = JsonLines::new(std::io::sink());
    let mut stats = Box::new(Stats::new());
    let mailbox = Mailbox::new();
    let (mut back, mut front) = (Slot::default(), Slot::default());
    for format in [
        PixelFormat::Yuyv,
        PixelFormat::Nv12,
        PixelFormat::I420,
        PixelFormat::Gray8,
    ] {
        let options = SourceOptions {
            width: 640,
            height: 480,
            pixel_format: Some(format),
            ..SourceOptions::default()
        };
        let mut source = Pipe::new("pipe:", Box::new(Endless { t: 0 }), &options).unwrap();
        let (mut ours, mut model_allocs) = (0, 0);
        for i in 0..25 {
            let start = allocations();
            let frame = source.next_frame().unwrap().unwrap();
            back.fill(&frame);
            mailbox.post(&mut back, source.counters());
            assert!(matches!(
                mailbox.take(&mut front, Duration::ZERO),
                Take::Frame
            ));
            let frame = front.frame();
            let (convert, resize) = pipeline.prepare(&frame).unwrap();
            let before_model = allocations();
            let outputs = pipeline.infer().unwrap();
            let after_model = allocations();
            pipeline.post(&outputs).unwrap();
            drop(outputs);
            let stages = Stages {
                convert_ms: convert.as_secs_f64() * 1e3,
                resize_ms: resize.as_secs_f64() * 1e3,
                ..Stages::default()
            };
            let info = FrameInfo {
                seq: frame.seq,
                t_capture_ms: 0.0,
                latency_ms: 1.0,
                stages,
            };
            sink.frame(&info, pipeline.task(), pipeline.result())
                .unwrap();
            stats.record(frame.captured.elapsed(), &stages);
            let end = allocations();
            // Warm-up: buffers grow to the frame size, tables are built.
            if i >= 5 {
                ours += (end - start) - (after_model - before_model);
                model_allocs += after_model - before_model;
            }
        }
        eprintln!("{format}: 20 frames, {ours} allocations on our path, {model_allocs} inside tract's run");
        assert!(
            model_allocs > 0,
            "the counting allocator sees tract's allocations"
        );
        assert_eq!(
            ours, 0,
            "{format}: allocations per frame outside the model run"
        );
    }
}
