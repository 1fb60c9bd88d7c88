//! Splitting an op's work over the runtime's threads: the executor tract runs the plan with
//! (`--threads`), so binary ops and tract's own kernels share one pool and one setting.

use tract_linalg::multithread::{current_tract_executor, Executor};

/// Runs independent tasks on the current tract executor (inline when single-threaded or when
/// there is one task).
pub fn run_tasks<T: Send>(tasks: Vec<T>, f: impl Fn(T) + Sync) {
    match current_tract_executor() {
        Executor::MultiThread(pool) if tasks.len() > 1 => pool.install(|| {
            rayon::scope(|s| {
                for t in tasks {
                    let f = &f;
                    s.spawn(move |_| f(t));
                }
            })
        }),
        _ => tasks.into_iter().for_each(f),
    }
}
