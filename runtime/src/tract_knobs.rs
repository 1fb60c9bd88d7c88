//! Kestrel's defaults for tract's process-wide knobs, installed before tract first probes
//! the CPU.
//!
//! One default today: **tract's Intel AMX int8 matmul kernels are off**
//! (`TRACT_CPU_ISA=-amx-int8`). On a Xeon with AMX (Sapphire/Emerald Rapids) tract 0.23.9
//! picks `avx512amx_mmm_i32_8x8` / `_16x16` for int8 matmuls, and the 8x8 kernel faults
//! (SIGSEGV) now and then on the `tileloadd` of its packed B operand
//! (`tileloadd (%rbx,%r9,1),%tmm2`, caught under gdb): the tile load reaches memory the
//! operand does not own, and whether that memory is mapped depends on where the allocator
//! put the buffer, hence intermittent. Seen once in CI on the PP-OCR recognizer's int8
//! graph (`tests/int8_ppocr_rec.rs`), never in 8 plain runs here, once in 2 under gdb. With
//! AMX off tract uses its AVX-512 VNNI (or AVX2) int8 kernels, which tract keeps
//! bit-identical to the AMX ones.
//!
//! The defaults sit below the environment in tract's order of precedence (programmatic
//! override, scope, environment, config globals, built-in default), so a deployer can still
//! say `TRACT_CPU_ISA=+amx-int8` to try the kernel again. A `TRACT_CPU_ISA` in the
//! environment replaces this default as a whole: to edit another feature and keep AMX off,
//! write both (`TRACT_CPU_ISA=-amx-int8,-avx512f`).
//!
//! [`apply`] is idempotent and cheap; the runtime calls it before it builds any tract
//! object ([`crate::ops::registry::nnef`], [`crate::Model`]), and so does the converter.

use std::sync::Once;

use tract_linalg::isa::{self, Isa};
use tract_nnef::tract_core::knobs::set_config_global;

/// The value Kestrel gives `TRACT_CPU_ISA` unless the environment sets it. x86_64 only:
/// tract refuses (panics on) a token of another architecture, so elsewhere Kestrel sets
/// nothing.
pub const DEFAULT_CPU_ISA: Option<&str> = if cfg!(target_arch = "x86_64") {
    Some("-amx-int8")
} else {
    None
};

/// Installs Kestrel's knob defaults (see the module docs). Call before tract probes the CPU:
/// tract reads `TRACT_CPU_ISA` once per process.
pub fn apply() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Some(value) = DEFAULT_CPU_ISA else { return };
        if let Err(e) = set_config_global("TRACT_CPU_ISA", value) {
            // Only possible if someone installed another config value first: theirs stands.
            log::warn!("could not default TRACT_CPU_ISA to {value}: {e}");
        }
    });
}

/// Whether tract may pick its AMX int8 kernels in this process (after [`apply`]).
pub fn amx_int8_enabled() -> bool {
    isa::native().has(Isa::X86_64AmxInt8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_linalg::knobs::TRACT_CPU_ISA;

    #[test]
    fn the_default_is_installed_and_the_environment_still_wins() {
        apply();
        apply(); // idempotent
        let expected = std::env::var("TRACT_CPU_ISA")
            .ok()
            .or(DEFAULT_CPU_ISA.map(String::from));
        assert_eq!(TRACT_CPU_ISA.get(), expected);
    }
}
