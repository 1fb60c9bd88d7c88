//! The lane kernel's bulk tile, 8 lanes × 4 channels, as one block of assembly. The tap-word
//! loop is where a binary layer spends its time; assembly fixes its registers, so that the
//! loop walks the inputs by post-indexed loads (no address arithmetic) and the first tile of
//! a pair keeps its counts in registers while the second one runs (no spills).
//!
//! Per tap word the tile loads its 8 input lanes (64 bytes) with one `ld1` of four
//! registers, post-indexed by the byte distance to the next tap word's lanes (a table of
//! deltas the job builds once), and the 4 channels' weight words with one `ld4r`, then
//! accumulates 16 XOR-popcounts. Tap words run four a turn, their deltas read two per `ldp`:
//! 51 instructions per tap word. The first tap word starts the accumulators with `uaddlp`
//! (no zeroing); the last 0–3 run one a turn (53 each). The accumulators stay in registers
//! from the first tap word to the fold.
//!
//! Registers: v0–v15 the accumulators, v16–v19 the input vectors, v20–v23 the weights
//! (`ld4r` needs four consecutive registers), v24–v27 the products. The fold (three `addp`
//! per channel) ends in four registers the caller picks: v28–v31 for the first tile of a
//! pair, v0–v3 for the second, so that the first tile's counts survive the second one's
//! assembly in registers.

use std::arch::aarch64::*;
use std::arch::asm;

/// Four XOR-popcounts accumulated with `$op` (`uadalp`, or `uaddlp` to start): for each
/// `(acc, x, y, t)`, `vT = cnt(vX ^ vY)` and `vACC (op)= vT`; the four `eor` first, then
/// the `cnt`, then the accumulations, so that no instruction waits on the one before it.
macro_rules! xor_popcount4 {
    ($op:literal; $(($a:literal, $x:literal, $y:literal, $t:literal))*) => {
        concat!(
            $("eor v", $t, ".16b, v", $x, ".16b, v", $y, ".16b\n",)*
            $("cnt v", $t, ".16b, v", $t, ".16b\n",)*
            $($op, " v", $a, ".8h, v", $t, ".16b\n",)*
        )
    };
}

/// One tap word's 16 XOR-popcounts: accumulator v(4c + r) takes input vector `r` (v16 + r)
/// against channel `c`'s weight word (v20 + c).
macro_rules! tap_word {
    ($op:literal) => {
        concat!(
            xor_popcount4!($op; ("0", "16", "20", "24") ("1", "17", "20", "25")
                ("2", "18", "20", "26") ("3", "19", "20", "27")),
            xor_popcount4!($op; ("4", "16", "21", "24") ("5", "17", "21", "25")
                ("6", "18", "21", "26") ("7", "19", "21", "27")),
            xor_popcount4!($op; ("8", "16", "22", "24") ("9", "17", "22", "25")
                ("10", "18", "22", "26") ("11", "19", "22", "27")),
            xor_popcount4!($op; ("12", "16", "23", "24") ("13", "17", "23", "25")
                ("14", "18", "23", "26") ("15", "19", "23", "27")),
        )
    };
}

/// Loads one tap word's inputs (64 bytes at `{p}`, which then moves on by the delta in
/// operand `$d`) and weights (at `{w}`, which moves on by 32 bytes).
macro_rules! load {
    ($d:literal) => {
        concat!(
            "ld1 {{v16.16b, v17.16b, v18.16b, v19.16b}}, [{p}], {",
            $d,
            "}\n",
            "ld4r {{v20.2d, v21.2d, v22.2d, v23.2d}}, [{w}], #32\n",
        )
    };
}

/// Channel `c`'s fold into v`$o`: (vectors 0, 1) and (2, 3) pairwise, then those.
macro_rules! fold {
    ($a0:literal, $a1:literal, $a2:literal, $a3:literal, $o:literal) => {
        concat!(
            "addp v24.8h, v",
            $a0,
            ".8h, v",
            $a1,
            ".8h\n",
            "addp v25.8h, v",
            $a2,
            ".8h, v",
            $a3,
            ".8h\n",
            "addp v",
            $o,
            ".8h, v24.8h, v25.8h\n",
        )
    };
}

/// The tile's assembly: its four folded counts into the vector registers numbered `$o`
/// (the outputs `$r`, bound to registers `$or`), the registers `$clob` clobbered.
macro_rules! tile_asm {
    ($src:expr, $deltas:expr, $w:expr, $rest:expr,
     [$($o:literal),*], [$($r:ident = $or:tt),*], [$($clob:tt),*]) => {
        asm!(
            "ldr {d0}, [{deltas}], #8",
            load!("d0"),
            tap_word!("uaddlp"),
            "cbz {quads}, 2f",
            "1:",
            "ldp {d0}, {d1}, [{deltas}], #16",
            "ldp {d2}, {d3}, [{deltas}], #16",
            load!("d0"),
            tap_word!("uadalp"),
            load!("d1"),
            tap_word!("uadalp"),
            load!("d2"),
            tap_word!("uadalp"),
            load!("d3"),
            tap_word!("uadalp"),
            "subs {quads}, {quads}, #1",
            "b.ne 1b",
            "2:",
            "cbz {singles}, 4f",
            "3:",
            "ldr {d0}, [{deltas}], #8",
            load!("d0"),
            tap_word!("uadalp"),
            "subs {singles}, {singles}, #1",
            "b.ne 3b",
            "4:",
            fold_all!($($o),*),
            p = inout(reg) $src => _,
            deltas = inout(reg) $deltas => _,
            w = inout(reg) $w => _,
            quads = inout(reg) $rest / 4 => _,
            singles = inout(reg) $rest % 4 => _,
            d0 = out(reg) _,
            d1 = out(reg) _,
            d2 = out(reg) _,
            d3 = out(reg) _,
            $(out($or) $r,)*
            $(out($clob) _,)*
            options(nostack, readonly),
        )
    };
}

/// The four channels' folds into v`$o0`..v`$o3` (channel `c`'s accumulators are v4c..v4c + 3;
/// each fold reads only its own channel's, and an output register is an earlier channel's
/// accumulator or outside v0–v15).
macro_rules! fold_all {
    ($o0:literal, $o1:literal, $o2:literal, $o3:literal) => {
        concat!(
            fold!("0", "1", "2", "3", $o0),
            fold!("4", "5", "6", "7", $o1),
            fold!("8", "9", "10", "11", $o2),
            fold!("12", "13", "14", "15", $o3),
        )
    };
}

/// Counts of 8 lanes (u64 lanes, 2 per vector) against the 4 channels' interleaved weight
/// rows `w` (`w[4i + c]`: channel `c`'s tap word `i`), summed over the tap words `i`: lane
/// `j` of `[c]` is lane `j`'s count of channel `c`, as the intrinsic tile returns them. Tap
/// word 0's lanes start at `start`, tap word `i + 1`'s `deltas[i]` bytes after tap word
/// `i`'s (`deltas` has one entry per tap word, the last one unused). `SECOND`: the second
/// tile of a pair (its counts in v0–v3, leaving v28–v31, where the first tile's are,
/// untouched).
///
/// # Safety
/// NEON is available; `deltas` is not empty; each tap word's 8 lanes (64 bytes) are
/// readable; `w` readable for `4 · deltas.len()` words; at most 1 023 tap words, so that
/// the u16 sums cannot wrap (64 bits a tap word: the caller's `MAX_TAP_WORDS`).
#[inline(always)]
pub(super) unsafe fn tile<const SECOND: bool>(
    start: *const u64,
    deltas: &[usize],
    w: *const u64,
) -> [uint16x8_t; 4] {
    let rest = deltas.len() - 1;
    let deltas = deltas.as_ptr();
    let (r0, r1, r2, r3): (uint16x8_t, uint16x8_t, uint16x8_t, uint16x8_t);
    // SAFETY: the caller's contract: every load is of a tap word's inputs (64 bytes from
    // `p`, which moves by the deltas) or of its 4 weight words (32 bytes from `w`, which
    // moves 32 bytes a tap word); `deltas` is read in order, `rest` + 1 entries. Nothing is
    // written.
    unsafe {
        if SECOND {
            tile_asm!(
                start,
                deltas,
                w,
                rest,
                ["0", "1", "2", "3"],
                [r0 = "v0", r1 = "v1", r2 = "v2", r3 = "v3"],
                [
                    "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13", "v14", "v15",
                    "v16", "v17", "v18", "v19", "v20", "v21", "v22", "v23", "v24", "v25", "v26",
                    "v27"
                ]
            );
        } else {
            tile_asm!(
                start,
                deltas,
                w,
                rest,
                ["28", "29", "30", "31"],
                [r0 = "v28", r1 = "v29", r2 = "v30", r3 = "v31"],
                [
                    "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11",
                    "v12", "v13", "v14", "v15", "v16", "v17", "v18", "v19", "v20", "v21", "v22",
                    "v23", "v24", "v25", "v26", "v27"
                ]
            );
        }
    }
    [r0, r1, r2, r3]
}
