//! Where a model run allocates: allocation requests and bytes per node of the optimised graph
//! (all threads: the executor's workers count towards the node they work for), by op kind,
//! plus what the plan itself allocates between nodes; then, with the pool allocator's cache
//! on, how many requests still reach the system allocator per steady-state run.
//!
//!     cargo run -p kestrel-runtime --example alloc_profile -- [MODEL] [--threads N]
//!
//! MODEL defaults to the bundled one; inputs are zeros of the model's input facts.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use kestrel_runtime::pool_alloc::{self, PoolAlloc};
use kestrel_runtime::tract_nnef::internal::*;
use kestrel_runtime::{bundled, LoadOptions, Model};

/// PoolAlloc, plus the bytes requested (process-wide).
struct Profiler;

static BYTES: AtomicU64 = AtomicU64::new(0);
/// While set, the layouts of requests that reach the system allocator are logged.
static WATCH: AtomicBool = AtomicBool::new(false);
static MISSES: [(AtomicUsize, AtomicUsize); 64] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; 64];
static MISS_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Runs `f` and logs `layout` if it reached the system allocator while watched.
fn watched(layout: Layout, f: impl FnOnce() -> *mut u8) -> *mut u8 {
    let before = pool_alloc::counts().system_allocs;
    let p = f();
    if WATCH.load(Ordering::Relaxed) && pool_alloc::counts().system_allocs > before {
        let i = MISS_COUNT.fetch_add(1, Ordering::Relaxed);
        if let Some((s, a)) = MISSES.get(i) {
            s.store(layout.size(), Ordering::Relaxed);
            a.store(layout.align(), Ordering::Relaxed);
        }
    }
    p
}

unsafe impl GlobalAlloc for Profiler {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        watched(layout, || unsafe { PoolAlloc.alloc(layout) })
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        watched(layout, || unsafe { PoolAlloc.alloc_zeroed(layout) })
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        let new = Layout::from_size_align(new_size, layout.align()).unwrap();
        watched(new, || unsafe { PoolAlloc.realloc(ptr, layout, new_size) })
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { PoolAlloc.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Profiler = Profiler;

fn snapshot() -> (u64, u64) {
    (pool_alloc::counts().requests, BYTES.load(Ordering::Relaxed))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threads = args
        .iter()
        .position(|a| a == "--threads")
        .map(|i| args[i + 1].parse::<usize>())
        .transpose()?;
    let path = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with("--") && (*i == 0 || args[i - 1] != "--threads"))
        .map(|(_, a)| a.clone());
    let options = LoadOptions { threads };
    let model = match &path {
        Some(p) => Model::load(std::path::Path::new(p), &options)?,
        None => bundled::load(&options)?,
    };
    let inputs: TVec<TValue> = model
        .inputs()
        .iter()
        .map(|s| Ok(Tensor::zero_dt(s.datum_type, &s.shape)?.into_tvalue()))
        .collect::<TractResult<_>>()?;
    let mut session = model.session()?;
    println!(
        "{} ({} threads): {} nodes",
        model.source(),
        model.threads(),
        model.optimized_graph().nodes().len()
    );

    // Without a cache: every request is an allocation.
    for _ in 0..3 {
        session.run(inputs.clone())?;
    }
    let mut per_node: BTreeMap<usize, (u64, u64)> = BTreeMap::new();
    let (mut mark, start) = (snapshot(), snapshot());
    let outputs = session.run_observed(inputs.clone(), |node, before| {
        let now = snapshot();
        if !before {
            let e = per_node.entry(node.id).or_default();
            e.0 += now.0 - mark.0;
            e.1 += now.1 - mark.1;
        }
        mark = now;
    })?;
    drop(outputs);
    let end = snapshot();
    let in_nodes: (u64, u64) = per_node
        .values()
        .fold((0, 0), |a, v| (a.0 + v.0, a.1 + v.1));
    println!(
        "one run: {} requests, {} bytes; in op evals {} requests, {} bytes; plan and caller {} requests",
        end.0 - start.0,
        end.1 - start.1,
        in_nodes.0,
        in_nodes.1,
        (end.0 - start.0) - in_nodes.0
    );
    let graph = model.optimized_graph();
    let mut by_kind: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
    for (&id, &(n, b)) in &per_node {
        let e = by_kind
            .entry(graph.node(id).op.name().to_string())
            .or_default();
        e.0 += 1;
        e.1 += n;
        e.2 += b;
    }
    let mut kinds: Vec<_> = by_kind.into_iter().collect();
    kinds.sort_by_key(|(_, v)| std::cmp::Reverse(v.1));
    println!(
        "{:<28} {:>6} {:>9} {:>12}",
        "op", "nodes", "requests", "bytes"
    );
    for (name, (nodes, n, b)) in &kinds {
        println!("{name:<28} {nodes:>6} {n:>9} {b:>12}");
    }
    let mut nodes: Vec<_> = per_node.iter().collect();
    nodes.sort_by_key(|(_, v)| std::cmp::Reverse(v.0));
    println!("top nodes:");
    for (&id, &(n, b)) in nodes.iter().take(12) {
        let node = graph.node(id);
        println!(
            "  #{id} {} ({}): {n} requests, {b} bytes",
            node.name,
            node.op.name()
        );
    }

    // With the cache on this thread (the workers enrolled themselves at start).
    let guard = pool_alloc::enable(pool_alloc::cache_bytes_from_env());
    for _ in 0..3 {
        session.run(inputs.clone())?;
    }
    let before = pool_alloc::counts();
    let runs = 20;
    WATCH.store(true, Ordering::Relaxed);
    for _ in 0..runs {
        session.run(inputs.clone())?;
    }
    WATCH.store(false, Ordering::Relaxed);
    let d = pool_alloc::counts() - before;
    println!(
        "with the pool: {runs} runs, {} requests, {} reached the system allocator ({} frees), {} bytes cached on this thread",
        d.requests,
        d.system_allocs,
        d.system_frees,
        pool_alloc::cached_bytes()
    );
    let logged = MISS_COUNT.load(Ordering::Relaxed).min(MISSES.len());
    let mut layouts: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    for (size, align) in &MISSES[..logged] {
        *layouts
            .entry((size.load(Ordering::Relaxed), align.load(Ordering::Relaxed)))
            .or_default() += 1;
    }
    for ((size, align), n) in layouts {
        println!("  reached the system: {n} x {size} bytes aligned {align}");
    }
    drop(guard);
    Ok(())
}
