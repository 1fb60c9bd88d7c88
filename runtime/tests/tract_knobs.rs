//! Kestrel keeps tract off its AMX int8 kernels (see `kestrel_runtime::tract_knobs`): they
//! over-read their packed operand and crash intermittently on Sapphire/Emerald Rapids.
//! Its own test binary, so nothing has asked tract about the CPU before the runtime does.

use kestrel_runtime::tract_knobs;

#[test]
fn loading_through_the_runtime_keeps_amx_int8_off() {
    // The first tract object the runtime builds installs the defaults.
    let _nnef = kestrel_runtime::ops::registry::nnef();
    // A deployer's own TRACT_CPU_ISA replaces Kestrel's default as a whole.
    if std::env::var_os("TRACT_CPU_ISA").is_none() {
        assert!(
            !tract_knobs::amx_int8_enabled(),
            "tract may still dispatch to its AMX int8 kernels"
        );
    }
}
