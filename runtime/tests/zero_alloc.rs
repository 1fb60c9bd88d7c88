//! Steady-state frames make no call to the system allocator — the whole frame path of
//! `kestrel run` including the model run: stream framing, the capture slot and mailbox
//! hand-over, pixel conversion (YUYV, NV12, I420, gray, MJPEG), resize + normalise into the
//! input tensor, `Session::run`, post-processing, the JSON line and the statistics.
//!
//! The allocator is the `kestrel` binary's own ([`PoolAlloc`]), counted process-wide (so the
//! executor's worker threads count too): per frame it reports *requests* (Rust-level
//! `alloc`/`alloc_zeroed`/`realloc` calls) and how many of them *reached the system
//! allocator*. Asserted, after a warm-up (5 frames per format; 70 for the binary model, see
//! [`check`]), over 20 frames each:
//! - 0 system allocations per frame on the whole path (the promise);
//! - 0 requests on our side of the path (outside `Session::run` and the MJPEG decoder:
//!   those request blocks every frame — tract its tensors, zune-jpeg its decoder state —
//!   and the pool serves them from the per-thread cache). Both counts are printed.
//!
//! Three models: the bundled one (ppocr-cls, a float CNN; 4 formats + MJPEG), the binary
//! MNIST model (`models/mnist-bnn`, Kestrel's binary ops), and the shipped person detector
//! (`models/ssdlite-mobilenet-v2`) on a clip of a man walking across the frame, again and
//! again, with the whole analytics path on our side: SSD decoding and NMS, the tracker, a
//! zone and a line, the event and status lines. The model runs on the default thread count
//! (every core), so the executor's workers are part of the count.
//!
//! No libtest harness (`harness = false`): the counters are process-wide, and libtest's own
//! threads (e.g. its "running for over 60 seconds" notice under qemu) would allocate.

mod common;

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use kestrel_runtime::analytics::zones::{parse_line_flag, parse_zone_flag};
use kestrel_runtime::analytics::AnalyticsConfig;
use kestrel_runtime::camera::pipe::Pipe;
use kestrel_runtime::camera::{FrameSource, PixelFormat, SourceOptions};
use kestrel_runtime::pipeline::mailbox::{Mailbox, Slot, Take};
use kestrel_runtime::pipeline::metrics::Metrics;
use kestrel_runtime::pipeline::preprocess::Normalize;
use kestrel_runtime::pipeline::sidecar::Sidecar;
use kestrel_runtime::pipeline::sinks::{FrameInfo, JsonLines, Status};
use kestrel_runtime::pipeline::stats::{Stages, Stats};
use kestrel_runtime::pipeline::tasks::Task;
use kestrel_runtime::pipeline::Pipeline;
use kestrel_runtime::pool_alloc::{self, Counts, PoolAlloc};
use kestrel_runtime::{bundled, LoadOptions, Model};

use common::clip;

thread_local! {
    /// Requests made by this thread while `WATCH` is set (our side of the path).
    static OURS: Cell<u64> = const { Cell::new(0) };
    static WATCH: Cell<bool> = const { Cell::new(false) };
}

/// PoolAlloc, plus a per-thread count of requests in the stretches the test watches.
struct Counting;

fn watched() {
    let _ = WATCH.try_with(|w| {
        if w.get() {
            let _ = OURS.try_with(|c| c.set(c.get() + 1));
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        watched();
        unsafe { PoolAlloc.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        watched();
        unsafe { PoolAlloc.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        watched();
        unsafe { PoolAlloc.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { PoolAlloc.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` with this thread's requests counted as ours.
fn ours<T>(f: impl FnOnce() -> T) -> T {
    WATCH.with(|w| w.set(true));
    let r = f();
    WATCH.with(|w| w.set(false));
    r
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

/// The same bytes over and over: concatenated JPEGs, or raw frames of a clip.
struct Cycle {
    bytes: Vec<u8>,
    at: usize,
}

impl Read for Cycle {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = out.len().min(self.bytes.len() - self.at);
        out[..n].copy_from_slice(&self.bytes[self.at..][..n]);
        self.at = (self.at + n) % self.bytes.len();
        Ok(n)
    }
}

/// Two 640x480 JPEG frames (different content, so the decoder really works every frame).
fn jpeg_stream() -> Vec<u8> {
    let mut bytes = vec![];
    for t in 0..2u32 {
        let rgb: Vec<u8> = (0..640 * 480 * 3)
            .map(|i| ((i as u32 / 3 % 640 + i as u32 / 1920 + 40 * t) % 256) as u8)
            .collect();
        jpeg_encoder::Encoder::new(&mut bytes, 85)
            .encode(&rgb, 640, 480, jpeg_encoder::ColorType::Rgb)
            .unwrap();
    }
    bytes
}

const FRAMES: u64 = 20;

/// Checks `FRAMES` frames of each format after `warm_up` frames (buffers grow to the frame
/// size, tables are built, the pool fills). A model whose run submits few jobs to the
/// executor needs a longer warm-up: rayon's job queue allocates a block per 63 jobs
/// submitted, and only once the first block has been freed does the pool hold one to reuse.
fn check(
    label: &str,
    model: &Model,
    (normalize, task): (Normalize, Task),
    formats: &[PixelFormat],
    warm_up: usize,
    analytics: Option<&AnalyticsConfig>,
) {
    let mut pipeline = Pipeline::new(model, normalize, task).unwrap();
    if let Some(config) = analytics {
        pipeline.set_analytics(config).unwrap();
    }
    let mut events = 0;
    let mut sink = JsonLines::new(std::io::sink());
    let mut stats = Box::new(Stats::new());
    // `--http`'s counters, updated every frame as the run loop does.
    let metrics = Metrics::new("pipe:", label, Duration::ZERO, pipeline.task());
    let mailbox = Mailbox::new();
    let (mut back, mut front) = (Slot::default(), Slot::default());
    for &format in formats {
        let (width, height) = if analytics.is_some() {
            (clip::WIDTH, clip::HEIGHT)
        } else {
            (640, 480)
        };
        let options = SourceOptions {
            width,
            height,
            pixel_format: Some(format),
            ..SourceOptions::default()
        };
        let stream: Box<dyn Read + Send> = match format {
            PixelFormat::Mjpeg => Box::new(Cycle {
                bytes: jpeg_stream(),
                at: 0,
            }),
            PixelFormat::Rgb24 => Box::new(Cycle {
                bytes: clip::rgb_frames(FRAMES as usize).concat(),
                at: 0,
            }),
            _ => Box::new(Endless { t: 0 }),
        };
        let mut source = Pipe::new("pipe:", stream, &options).unwrap();
        // Up to WINDOWS windows of FRAMES frames, until one reaches the system allocator
        // zero times. A per-frame allocation shows in every window. What does not: on a
        // loaded machine a queue inside rayon/crossbeam (its blocks freed late, in batches)
        // can take a block of a class the pool has not seen yet, once in a while, until the
        // pool holds enough of them (seen: 1 in a 20-frame window, twice in a row).
        const WINDOWS: usize = 4;
        let mut windows = [Counts::default(); WINDOWS];
        let mut ours_total = 0;
        let frames = FRAMES as usize;
        for i in 0..warm_up + WINDOWS * frames {
            if i >= warm_up + frames
                && (i - warm_up).is_multiple_of(frames)
                && windows[(i - warm_up) / frames - 1].system_allocs == 0
            {
                break;
            }
            let (start, ours_start) = (pool_alloc::counts(), OURS.with(Cell::get));
            let frame = ours(|| {
                let frame = source.next_frame().unwrap().unwrap();
                back.fill(&frame);
                mailbox.post(&mut back, source.counters());
                assert!(matches!(
                    mailbox.take(&mut front, Duration::ZERO),
                    Take::Frame
                ));
                front.frame()
            });
            // Conversion: ours, except decoding a JPEG (zune-jpeg's state, per image).
            let prepared = if format == PixelFormat::Mjpeg {
                pipeline.prepare(&frame)
            } else {
                ours(|| pipeline.prepare(&frame))
            };
            let (convert, resize) = prepared.unwrap();
            let outputs = pipeline.infer().unwrap();
            ours(|| {
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
                if let Some(a) = pipeline.analytics() {
                    for e in a.events() {
                        sink.event(e, a, info.seq, 0.0).unwrap();
                        if i >= warm_up {
                            events += 1;
                        }
                    }
                    let status = Status {
                        seq: info.seq,
                        t_ms: 0.0,
                        frames: i as u64,
                        fps: 1.0,
                        tracks: a.tracker().tracks().count(),
                    };
                    sink.status(&status, a).unwrap();
                    sink.render_counts(a).unwrap();
                }
                stats.record(frame.captured.elapsed(), &stages);
                metrics.frame(frame.captured.elapsed(), &stages, pipeline.result());
                metrics.source(mailbox.dropped(), mailbox.counters());
            });
            if i >= warm_up {
                let d = pool_alloc::counts() - start;
                let whole = &mut windows[(i - warm_up) / frames];
                whole.requests += d.requests;
                whole.system_allocs += d.system_allocs;
                whole.system_frees += d.system_frees;
                ours_total += OURS.with(Cell::get) - ours_start;
            }
        }
        let used = windows
            .iter()
            .position(|w| w.system_allocs == 0)
            .unwrap_or(WINDOWS - 1);
        if used > 0 {
            let seen: Vec<u64> = windows[..=used].iter().map(|w| w.system_allocs).collect();
            eprintln!("{label} {format}: system allocations per {FRAMES}-frame window: {seen:?}");
        }
        let whole = windows[used];
        eprintln!(
            "{label} {format}: {FRAMES} frames, whole path: {} requests ({:.1} per frame), \
             {} reached the system allocator, {} freed to it; our side: {ours_total} requests",
            whole.requests,
            whole.requests as f64 / FRAMES as f64,
            whole.system_allocs,
            whole.system_frees,
        );
        assert!(
            whole.requests > 0,
            "the counting allocator sees tract's requests"
        );
        assert_eq!(
            whole.system_allocs, 0,
            "{label} {format}: steady-state frames reached the system allocator"
        );
        assert_eq!(
            ours_total, 0,
            "{label} {format}: requests on our side of the path"
        );
    }
    eprintln!(
        "{label}: the pool holds {:.1} MiB",
        pool_alloc::cached_bytes() as f64 / (1 << 20) as f64
    );
    if analytics.is_some() {
        eprintln!("{label}: {events} events in the counted frames");
        assert!(events > 0, "{label}: the counted frames make events");
    }
}

fn main() {
    // The run loop's thread keeps its freed blocks, as in `pipeline::run`.
    let _pool = pool_alloc::enable(pool_alloc::DEFAULT_CACHE_BYTES);
    let options = LoadOptions::default();
    let bundled_model = bundled::load(&options).unwrap();
    check(
        "ppocr-cls",
        &bundled_model,
        (bundled::normalize(), bundled::task(2)),
        &[
            PixelFormat::Yuyv,
            PixelFormat::Nv12,
            PixelFormat::I420,
            PixelFormat::Gray8,
            PixelFormat::Mjpeg,
        ],
        5,
        None,
    );
    let bnn_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/mnist-bnn/mnist-bnn.nnef.tgz");
    let bnn = Model::load(&bnn_path, &options).unwrap();
    check(
        "mnist-bnn",
        &bnn,
        (Normalize::unit(), Task::classify(vec![], 3)),
        &[PixelFormat::Yuyv, PixelFormat::Gray8],
        70,
        None,
    );
    let ssd_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/ssdlite-mobilenet-v2/ssdlite-mobilenet-v2.nnef.tgz");
    let ssd = Model::load(&ssd_path, &options).unwrap();
    let sidecar = Sidecar::find(&ssd_path).unwrap().unwrap();
    let analytics = AnalyticsConfig {
        classes: vec!["person".into()],
        zones: vec![parse_zone_flag("right=0.6,0;1,0;1,1;0.6,1").unwrap()],
        lines: vec![parse_line_flag("gate=0.5,0;0.5,1").unwrap()],
        ..AnalyticsConfig::default()
    };
    check(
        "ssdlite",
        &ssd,
        (sidecar.normalize().unwrap(), sidecar.task(1)),
        &[PixelFormat::Rgb24],
        // The walk repeats every FRAMES frames: the warm-up covers one crossing and the start
        // of the next walk (a track born, confirmed, crossing; the next one born); tracks are
        // removed inside the counted frames.
        25,
        Some(&analytics),
    );
    eprintln!("zero_alloc: ok");
}
