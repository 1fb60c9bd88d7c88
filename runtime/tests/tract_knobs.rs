//! Kestrel keeps tract off its AMX int8 kernels (see `kestrel_runtime::tract_knobs`): they
//! over-read their packed operand and crash intermittently on Sapphire/Emerald Rapids.
//! Its own test binary, so nothing has asked tract about the CPU before the runtime does.

use kestrel_runtime::tract_knobs::{self, DEFAULT_CPU_ISA};
use tract_linalg::knobs::TRACT_CPU_ISA;

#[test]
fn loading_through_the_runtime_keeps_amx_int8_off() {
    // The first tract object the runtime builds installs the defaults.
    let _nnef = kestrel_runtime::ops::registry::nnef();
    match std::env::var("TRACT_CPU_ISA") {
        // Kestrel's default is what tract reads, and it keeps AMX int8 off.
        Err(_) => {
            assert_eq!(TRACT_CPU_ISA.get().as_deref(), DEFAULT_CPU_ISA);
            assert!(
                !tract_knobs::amx_int8_enabled(),
                "tract may still dispatch to its AMX int8 kernels"
            );
        }
        // A deployer's own TRACT_CPU_ISA replaces Kestrel's default as a whole.
        Ok(deployer) => assert_eq!(
            TRACT_CPU_ISA.get(),
            Some(deployer),
            "the environment's TRACT_CPU_ISA must win over Kestrel's default"
        ),
    }
}
