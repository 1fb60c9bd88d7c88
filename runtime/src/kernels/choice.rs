//! One rule for every kernel family's choice: `KESTREL_KERNELS` and CPU detection.

use super::{binary, bitpack, depthwise, depthwise8, int8, linear, pool};

/// The rule `KESTREL_KERNELS` follows in every kernel family (binary, int8, depthwise, int8
/// depthwise, linear, bitpack, pool): the kernel of `kernels` (slowest first) with that name, else the last (best) one.
/// The variable is shared, so a name of another family is ignored quietly; a name of none is a
/// warning.
pub fn pick_by_name<K: Copy>(var: Option<&str>, kernels: Vec<K>, name: impl Fn(&K) -> &str) -> K {
    let best = *kernels.last().expect("generic is always available");
    let Some(wanted) = var.filter(|v| !v.is_empty()) else {
        return best;
    };
    if let Some(k) = kernels.iter().find(|k| name(k) == wanted) {
        return *k;
    }
    if known_kernel_name(wanted) {
        log::debug!("KESTREL_KERNELS={wanted}: not a kernel of this family here; auto-selecting");
    } else {
        log::warn!("KESTREL_KERNELS={wanted} names no kernel this CPU has; auto-selecting");
    }
    best
}

/// The kernel of a family for this process: [`pick_by_name`] over `available` with
/// `KESTREL_KERNELS`, logged once as `FAMILY kernel: NAME`.
pub(crate) fn select_from<K: Copy>(
    family: &str,
    available: Vec<K>,
    name: impl Fn(&K) -> &str,
) -> K {
    let var = std::env::var("KESTREL_KERNELS").ok();
    let kernel = pick_by_name(var.as_deref(), available, &name);
    log::info!("{family} kernel: {}", name(&kernel));
    kernel
}

/// Whether `name` is a kernel of any family available on this CPU.
pub fn known_kernel_name(name: &str) -> bool {
    binary::available().iter().any(|k| k.name() == name)
        || int8::available().iter().any(|k| k.name() == name)
        || depthwise::available().iter().any(|k| k.name() == name)
        || depthwise::fp16::available()
            .iter()
            .any(|k| k.name() == name)
        || depthwise8::available().iter().any(|k| k.name() == name)
        || linear::available().iter().any(|k| k.name() == name)
        || bitpack::available().iter().any(|k| k.name() == name)
        || pool::available().iter().any(|k| k.name() == name)
}
