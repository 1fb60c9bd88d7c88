//! Turns a panic inside a *dependency* (tract's graph readers) into an error.
//!
//! tract's NNEF and ONNX readers assert on some malformed graphs (a negative dimension after
//! an overflowing `tile`, an op whose attributes do not fit its inputs) instead of returning
//! an error. A model file is untrusted input, so the loaders run tract inside [`guard`]: such
//! a panic becomes an error message naming where tract gave up, and the user sees a clear
//! "cannot load" error with exit code 2 instead of a crash. This needs unwinding panics, so
//! every profile unwinds, `release` (and the board bundles built from it) included.
//!
//! Only panics located in a dependency's source are treated so: a panic in Kestrel's own code
//! (`runtime/`, `quantize/`) is a bug and still goes through the normal panic hook (printed;
//! under `cargo fuzz`, reported as a crash).

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Whether a panic at `file` is in a dependency (a registry or git checkout), not Kestrel.
fn in_dependency(file: &str) -> bool {
    file.contains("/registry/src/")
        || file.contains("/git/checkouts/")
        || file.starts_with("/rustc/")
}

fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let dependency = info.location().is_some_and(|l| in_dependency(l.file()));
            if GUARDED.with(Cell::get) && dependency {
                log::debug!("caught a panic in a dependency: {info}");
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`; a panic inside a dependency while it runs becomes `Err(message)`, with the
/// panic's message and location.
pub fn guard<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    install_hook();
    let was = GUARDED.with(|g| g.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(was));
    result.map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        format!("the graph reader failed an internal check ({message})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dependency_panic_is_an_error() {
        // ShapeFact asserts non-negative dimensions (tract-core, a dependency).
        let r = guard(|| {
            use tract_nnef::internal::*;
            ShapeFact::from_dims([TDim::Val(-1)])
        });
        let e = r.unwrap_err();
        assert!(e.contains("internal check"), "{e}");
        assert_eq!(guard(|| 7), Ok(7));
    }

    #[test]
    fn dependency_paths_are_told_from_kestrel_paths() {
        assert!(in_dependency(
            "/home/user/.cargo/registry/src/index.crates.io-0000000000000000/tract-core-0.23.9/src/model/fact.rs"
        ));
        assert!(!in_dependency("runtime/src/ops/bdense.rs"));
        assert!(!in_dependency("/src/kestrel/runtime/src/model.rs"));
    }
}
