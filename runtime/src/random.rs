//! Seeded random tensors: benchmark inputs and the converter's verification inputs.
//!
//! Floats are uniform in [-1, 1) (the range of normalised pixels); integers cover their whole
//! range (u8, i8) or a small one (wider types: indices and shapes must stay plausible).

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use tract_nnef::internal::*;

use crate::model::TensorSpec;

/// A random tensor of the given type and shape, reproducible from `seed`.
pub fn random_tensor(dt: DatumType, shape: &[usize], seed: u64) -> TractResult<Tensor> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let t = match dt.unquantized() {
        DatumType::F32 => {
            let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            Tensor::from_shape(shape, &v)?
        }
        DatumType::F64 => {
            let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0f64..1.0)).collect();
            Tensor::from_shape(shape, &v)?
        }
        DatumType::F16 => {
            let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            Tensor::from_shape(shape, &v)?
                .cast_to_dt(DatumType::F16)?
                .into_owned()
        }
        DatumType::U8 => {
            let v: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            Tensor::from_shape(shape, &v)?
        }
        DatumType::I8 => {
            let v: Vec<i8> = (0..n).map(|_| rng.random()).collect();
            Tensor::from_shape(shape, &v)?
        }
        DatumType::Bool => {
            let v: Vec<bool> = (0..n).map(|_| rng.random()).collect();
            Tensor::from_shape(shape, &v)?
        }
        other => {
            let v: Vec<i64> = (0..n).map(|_| rng.random_range(0..16)).collect();
            Tensor::from_shape(shape, &v)?
                .cast_to_dt(other)?
                .into_owned()
        }
    };
    // Quantized types (QU8/QI8) keep their zero point and scale: same bytes, new type.
    if t.datum_type() != dt {
        ensure!(
            t.datum_type().unquantized() == dt.unquantized(),
            "random tensor: no generator for {dt:?}"
        );
        let mut t = t;
        // SAFETY: `dt` differs from the tensor's type only by its quantization parameters
        // (checked above): the same element type and size, so every element stays valid.
        unsafe { t.set_datum_type(dt) };
        return Ok(t);
    }
    Ok(t)
}

/// Random inputs for every spec, each from its own seed derived from `seed`.
pub fn random_inputs(specs: &[TensorSpec], seed: u64) -> TractResult<TVec<TValue>> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(random_tensor(s.datum_type, &s.shape, seed.wrapping_add(i as u64))?.into_tvalue())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_tensor_and_range() {
        let a = random_tensor(DatumType::F32, &[2, 8], 3).unwrap();
        let b = random_tensor(DatumType::F32, &[2, 8], 3).unwrap();
        assert_eq!(a, b);
        let v = a.try_as_plain_ram().unwrap();
        assert!(v
            .as_slice::<f32>()
            .unwrap()
            .iter()
            .all(|x| (-1.0..1.0).contains(x)));
        assert_ne!(a, random_tensor(DatumType::F32, &[2, 8], 4).unwrap());
    }
}
