//! Files in and out: numpy arrays (`.npy`, `.npz`) and atomic writes.

pub mod atomic;
pub mod npy;
