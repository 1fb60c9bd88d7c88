//! x86-64 int8 kernels, one file per ISA variant: [`vnni512`] (`x86-avx512-vnni`, AVX-512
//! VNNI's `vpdpbusd`) and [`avx2`] (`x86-avx2`, widened to i16 for `vpmaddwd`, for cores
//! without VNNI); [`pack`] packs i8 codes for both.

pub mod avx2;
pub mod pack;
pub mod vnni512;
