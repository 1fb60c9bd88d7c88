//! The constant-velocity Kalman filter of SORT (Bewley et al., "Simple Online and Realtime
//! Tracking", ICIP 2016) in the DeepSORT / ByteTrack formulation (Zhang et al., "ByteTrack:
//! Multi-Object Tracking by Associating Every Detection Box", ECCV 2022): one filter per
//! track, following one box.
//!
//! # State and model
//!
//! The state is `x = (cx, cy, a, h, vcx, vcy, va, vh)`: the box centre, its aspect ratio
//! `a = w / h`, its height, and the four rates of change per frame. The measurement is
//! `z = (cx, cy, a, h)` of a detection box (`H = [I₄ 0]`). The motion model is constant
//! velocity with a step of one frame, `F = [[I₄, I₄], [0, I₄]]`:
//!
//! - predict: `x ← F x`, `P ← F P Fᵀ + Q`;
//! - update: `S = H P Hᵀ + R` (4×4), `K = P Hᵀ S⁻¹`, `x ← x + K (z − H x)`,
//!   `P ← P − K S Kᵀ`.
//!
//! The noise is diagonal and scaled by the box height `h`, with `σp = 1/20`
//! ([`STD_WEIGHT_POSITION`]) and `σv = 1/160` ([`STD_WEIGHT_VELOCITY`]), as ByteTrack:
//!
//! - [`initiate`]: `x = (z, 0, 0, 0, 0)`, standard deviations
//!   `(2σp·h, 2σp·h, 10⁻², 2σp·h, 10σv·h, 10σv·h, 10⁻⁵, 10σv·h)` (`h` of the measurement);
//! - `Q` (in [`predict`]): `(σp·h, σp·h, 10⁻², σp·h, σv·h, σv·h, 10⁻⁵, σv·h)`, `h` of the state
//!   before the step;
//! - `R` (in [`update`]): `(σp·h, σp·h, 10⁻¹, σp·h)`, `h` of the predicted state.
//!
//! (The heights used for noise are floored at [`MIN_NOISE_HEIGHT`], so the noise stays
//! positive when a prediction shrinks a box to nothing.)
//!
//! # Invariants, and why `f32` suffices
//!
//! `F`, `H`, `Q`, `R` and the initial `P` never couple two different coordinates: every
//! covariance this module produces is zero outside the four 2×2 blocks
//! `{i, i+4}` (position and velocity of one coordinate), exactly, in floating point too
//! (an off-block entry is a sum of products with an exact zero factor). So `S` is diagonal
//! with every entry ≥ its `R` entry > 0: the Cholesky factorisation in [`update`] never meets
//! a near-singular matrix while the covariance is finite, and each block behaves as an
//! independent scalar filter whose posterior variance `p·r / (p + r)` is computed as
//! `p − p² / (p + r)`; in `f32` its relative error is about `ε·(p + r)/r`, below 10⁻⁴ for the
//! gaps a tracker keeps a lost track (`p/r` stays below ~2·10³ after 30 predictions without an
//! update). The covariance is kept exactly symmetric (averaged with its transpose after each
//! step) and its diagonal non-negative. The tests compare this `f32` filter with an `f64`
//! scalar reference over long random sequences with gaps.
//!
//! The filter commutes with a per-axis change of units: in each block the noise terms all
//! scale together, so the Kalman gains do not depend on units. Tracking boxes relative to
//! the image (0..1 on both axes) therefore gives exactly the pixel-space filter's boxes,
//! divided by the frame size, whatever the frame's aspect ratio.
//!
//! [`update`] returns `false` and leaves the state unchanged when `S` is not positive
//! definite or the result is not finite (a corrupted covariance or a non-finite
//! measurement); the caller then re-initiates the track from the measurement.
//!
//! Everything is fixed-size arrays: no heap allocation.

/// Position noise per unit of box height (ByteTrack's `_std_weight_position`).
pub const STD_WEIGHT_POSITION: f32 = 1.0 / 20.0;
/// Velocity noise per unit of box height (ByteTrack's `_std_weight_velocity`).
pub const STD_WEIGHT_VELOCITY: f32 = 1.0 / 160.0;
/// Smallest height used to scale the noise (relative to the image: far below one pixel).
pub const MIN_NOISE_HEIGHT: f32 = 1e-5;

/// State mean `(cx, cy, a, h, vcx, vcy, va, vh)`.
pub type Mean = [f32; 8];
/// State covariance (row-major, symmetric).
pub type Cov = [[f32; 8]; 8];
/// Measurement `(cx, cy, a, h)`.
pub type Measurement = [f32; 4];

/// `[x0, y0, x1, y1]` to `(cx, cy, a, h)` with `a = w / h`.
pub fn xyxy_to_xyah(b: [f32; 4]) -> Measurement {
    let w = b[2] - b[0];
    let h = b[3] - b[1];
    [b[0] + 0.5 * w, b[1] + 0.5 * h, w / h, h]
}

/// The box `[x0, y0, x1, y1]` of a state (or measurement) `(cx, cy, a, h, …)`.
pub fn xyah_to_xyxy(m: &[f32]) -> [f32; 4] {
    let (cx, cy, a, h) = (m[0], m[1], m[2], m[3]);
    let w = a * h;
    [cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h]
}

/// The height that scales the noise: `|h|`, at least [`MIN_NOISE_HEIGHT`].
fn noise_height(h: f32) -> f32 {
    let h = h.abs();
    if h >= MIN_NOISE_HEIGHT {
        h
    } else {
        MIN_NOISE_HEIGHT
    }
}

/// `P ← (P + Pᵀ) / 2`, diagonal floored at 0.
#[allow(clippy::needless_range_loop)] // (i, j) and (j, i) together: indices are clearest.
fn symmetrize(cov: &mut Cov) {
    for i in 0..8 {
        for j in i + 1..8 {
            let m = 0.5 * (cov[i][j] + cov[j][i]);
            cov[i][j] = m;
            cov[j][i] = m;
        }
        if cov[i][i] < 0.0 {
            cov[i][i] = 0.0;
        }
    }
}

/// A new track's state from its first measurement: zero velocity, and a covariance wide in
/// the velocities (10σv·h) and twice the measurement noise in the positions.
pub fn initiate(z: Measurement) -> (Mean, Cov) {
    let h = noise_height(z[3]);
    let p = 2.0 * STD_WEIGHT_POSITION * h;
    let v = 10.0 * STD_WEIGHT_VELOCITY * h;
    let std = [p, p, 1e-2, p, v, v, 1e-5, v];
    let mut mean = [0.0; 8];
    mean[..4].copy_from_slice(&z);
    let mut cov = [[0.0; 8]; 8];
    for (i, s) in std.iter().enumerate() {
        cov[i][i] = s * s;
    }
    (mean, cov)
}

/// One frame of motion: `x ← F x`, `P ← F P Fᵀ + Q`, `Q` scaled by the height before the step.
pub fn predict(mean: &mut Mean, cov: &mut Cov) {
    let h = noise_height(mean[3]);
    let p = STD_WEIGHT_POSITION * h;
    let v = STD_WEIGHT_VELOCITY * h;
    let std = [p, p, 1e-2, p, v, v, 1e-5, v];
    for i in 0..4 {
        mean[i] += mean[i + 4];
    }
    // F P: row i += row i+4 (rows 4..8 are unchanged).
    let (top, bottom) = cov.split_at_mut(4);
    for (row, below) in top.iter_mut().zip(bottom.iter()) {
        for (c, b) in row.iter_mut().zip(below) {
            *c += b;
        }
    }
    // (F P) Fᵀ: column j += column j+4 (columns 4..8 are unchanged).
    for row in cov.iter_mut() {
        for j in 0..4 {
            row[j] += row[j + 4];
        }
    }
    for (i, s) in std.iter().enumerate() {
        cov[i][i] += s * s;
    }
    symmetrize(cov);
}

/// Cholesky factor `L` (lower, `S = L Lᵀ`) of a 4×4 matrix, or `None` if it is not
/// (numerically) positive definite.
#[allow(clippy::needless_range_loop)] // Textbook triangular loops over l[i][k], l[j][k].
fn cholesky4(s: &[[f32; 4]; 4]) -> Option<[[f32; 4]; 4]> {
    let mut l = [[0.0f32; 4]; 4];
    for i in 0..4 {
        for j in 0..=i {
            let mut sum = s[i][j];
            for k in 0..j {
                sum -= l[i][k] * l[j][k];
            }
            if i == j {
                // Relative floor: a pivot this small means S is singular to f32 precision.
                if !(sum.is_finite() && sum > s[i][i].abs() * 1e-6 && sum > 0.0) {
                    return None;
                }
                l[i][i] = sum.sqrt();
            } else {
                l[i][j] = sum / l[j][j];
            }
        }
    }
    Some(l)
}

/// Solves `L Lᵀ x = b` in place.
fn cholesky_solve4(l: &[[f32; 4]; 4], b: &mut [f32; 4]) {
    for i in 0..4 {
        let mut sum = b[i];
        for k in 0..i {
            sum -= l[i][k] * b[k];
        }
        b[i] = sum / l[i][i];
    }
    for i in (0..4).rev() {
        let mut sum = b[i];
        for k in i + 1..4 {
            sum -= l[k][i] * b[k];
        }
        b[i] = sum / l[i][i];
    }
}

/// Corrects the state with a measurement. Returns `false`, state unchanged, if the innovation
/// covariance is not positive definite or the result is not finite (see the module docs).
#[must_use]
pub fn update(mean: &mut Mean, cov: &mut Cov, z: Measurement) -> bool {
    let h = noise_height(mean[3]);
    let p = STD_WEIGHT_POSITION * h;
    let r = [p * p, p * p, 1e-2, p * p];
    // S = H P Hᵀ + R.
    let mut s = [[0.0f32; 4]; 4];
    for i in 0..4 {
        s[i][..4].copy_from_slice(&cov[i][..4]);
        s[i][i] += r[i];
    }
    let Some(l) = cholesky4(&s) else {
        return false;
    };
    // X = S⁻¹ (H P), a 4×8 matrix, column by column; then K = Xᵀ (P is symmetric).
    let mut x = [[0.0f32; 8]; 4];
    for j in 0..8 {
        let mut col = [cov[0][j], cov[1][j], cov[2][j], cov[3][j]];
        cholesky_solve4(&l, &mut col);
        for (k, c) in col.iter().enumerate() {
            x[k][j] = *c;
        }
    }
    let mut y = [0.0f32; 4];
    for k in 0..4 {
        y[k] = z[k] - mean[k];
    }
    let mut new_mean = *mean;
    for (i, m) in new_mean.iter_mut().enumerate() {
        for k in 0..4 {
            *m += x[k][i] * y[k];
        }
    }
    // P − K S Kᵀ = P − (H P)ᵀ S⁻¹ (H P) = P − (H P)ᵀ X.
    let mut new_cov = *cov;
    for (i, row) in new_cov.iter_mut().enumerate() {
        for (j, c) in row.iter_mut().enumerate() {
            let mut sum = 0.0;
            for k in 0..4 {
                sum += cov[k][i] * x[k][j];
            }
            *c -= sum;
        }
    }
    symmetrize(&mut new_cov);
    let finite = new_mean.iter().all(|v| v.is_finite())
        && new_cov.iter().all(|row| row.iter().all(|v| v.is_finite()));
    if !finite {
        return false;
    }
    *mean = new_mean;
    *cov = new_cov;
    true
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // Per-coordinate blocks i and i + 4: indices are clearest.
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{RngExt, SeedableRng};

    /// The same filter as four independent scalar 2-state filters, in f64 (the block
    /// structure described in the module docs).
    #[derive(Clone, Copy)]
    struct Ref {
        x: [[f64; 2]; 4],
        p: [[[f64; 2]; 2]; 4],
    }

    const CONST_STD: [(f64, f64); 4] = [(0.0, 0.0), (0.0, 0.0), (1e-2, 1e-5), (0.0, 0.0)];

    fn is_scaled(i: usize) -> bool {
        i != 2
    }

    impl Ref {
        fn initiate(z: [f64; 4]) -> Ref {
            let h = z[3].abs().max(MIN_NOISE_HEIGHT as f64);
            let (wp, wv) = (STD_WEIGHT_POSITION as f64, STD_WEIGHT_VELOCITY as f64);
            let mut r = Ref {
                x: [[0.0; 2]; 4],
                p: [[[0.0; 2]; 2]; 4],
            };
            for i in 0..4 {
                let (sp, sv) = if is_scaled(i) {
                    (2.0 * wp * h, 10.0 * wv * h)
                } else {
                    CONST_STD[i]
                };
                r.x[i] = [z[i], 0.0];
                r.p[i] = [[sp * sp, 0.0], [0.0, sv * sv]];
            }
            r
        }

        fn predict(&mut self) {
            let h = self.x[3][0].abs().max(MIN_NOISE_HEIGHT as f64);
            let (wp, wv) = (STD_WEIGHT_POSITION as f64, STD_WEIGHT_VELOCITY as f64);
            for i in 0..4 {
                let (sp, sv) = if is_scaled(i) {
                    (wp * h, wv * h)
                } else {
                    CONST_STD[i]
                };
                let [x, v] = self.x[i];
                self.x[i] = [x + v, v];
                let [[a, b], [_, d]] = self.p[i];
                self.p[i] = [[a + 2.0 * b + d + sp * sp, b + d], [b + d, d + sv * sv]];
            }
        }

        fn update(&mut self, z: [f64; 4]) {
            let h = self.x[3][0].abs().max(MIN_NOISE_HEIGHT as f64);
            let wp = STD_WEIGHT_POSITION as f64;
            for i in 0..4 {
                let r = if is_scaled(i) { (wp * h).powi(2) } else { 1e-2 };
                let [[a, b], [_, d]] = self.p[i];
                let s = a + r;
                let (k0, k1) = (a / s, b / s);
                let y = z[i] - self.x[i][0];
                self.x[i][0] += k0 * y;
                self.x[i][1] += k1 * y;
                self.p[i] = [[a - k0 * a, b - k0 * b], [b - k0 * b, d - k1 * b]];
            }
        }
    }

    fn close(a: f32, b: f64, scale: f64, tol: f64) -> bool {
        ((a as f64) - b).abs() <= tol * scale.max(b.abs())
    }

    /// The f32 filter follows the f64 reference over long random runs with gaps of up to 30
    /// frames, and its covariance stays symmetric, block-structured and non-negative.
    #[test]
    fn f32_matches_f64_reference_over_long_runs() {
        let mut rng = SmallRng::seed_from_u64(7);
        for _run in 0..20 {
            let (mut cx, mut cy) = (rng.random_range(0.1f64..0.9), rng.random_range(0.1f64..0.9));
            let (vx, vy) = (
                rng.random_range(-0.01f64..0.01),
                rng.random_range(-0.01f64..0.01),
            );
            let h0 = rng.random_range(0.02f64..0.5);
            let a0 = rng.random_range(0.3f64..3.0);
            let z0 = [cx, cy, a0, h0];
            let (mut mean, mut cov) = initiate(z0.map(|v| v as f32));
            let mut r = Ref::initiate(z0);
            let mut gap = 0;
            for _frame in 0..500 {
                predict(&mut mean, &mut cov);
                r.predict();
                cx += vx;
                cy += vy;
                if gap == 0 && rng.random_range(0..40) == 0 {
                    gap = rng.random_range(1..=30);
                }
                if gap > 0 {
                    gap -= 1;
                } else {
                    let j = |s: f64, rng: &mut SmallRng| s * rng.random_range(-0.02f64..0.02);
                    let z = [
                        cx + j(h0, &mut rng),
                        cy + j(h0, &mut rng),
                        a0 + j(a0, &mut rng),
                        h0 + j(h0, &mut rng),
                    ];
                    assert!(update(&mut mean, &mut cov, z.map(|v| v as f32)));
                    r.update(z);
                }
                for i in 0..4 {
                    let scale = if is_scaled(i) { h0 } else { a0 };
                    assert!(close(mean[i], r.x[i][0], scale, 1e-4), "{i}: {mean:?}");
                    assert!(
                        close(mean[i + 4], r.x[i][1], scale * 0.01, 1e-2),
                        "{i}: {mean:?}"
                    );
                    let pa = r.p[i][0][0];
                    assert!(close(cov[i][i], pa, pa, 1e-3), "{i}: {} vs {pa}", cov[i][i]);
                    let pd = r.p[i][1][1];
                    assert!(close(cov[i + 4][i + 4], pd, pd, 1e-3));
                }
                for i in 0..8 {
                    assert!(cov[i][i] >= 0.0);
                    for j in 0..8 {
                        assert_eq!(cov[i][j], cov[j][i]);
                        if i % 4 != j % 4 {
                            assert_eq!(cov[i][j], 0.0, "off-block ({i},{j})");
                        }
                    }
                }
            }
        }
    }

    /// A constant-velocity box is followed exactly after a few frames: position and velocity.
    #[test]
    fn converges_on_constant_velocity() {
        let b0 = [0.1f32, 0.2, 0.2, 0.4];
        let (mut mean, mut cov) = initiate(xyxy_to_xyah(b0));
        for t in 1..60 {
            predict(&mut mean, &mut cov);
            let d = 0.005 * t as f32;
            let b = [b0[0] + d, b0[1] + d / 2.0, b0[2] + d, b0[3] + d / 2.0];
            assert!(update(&mut mean, &mut cov, xyxy_to_xyah(b)));
        }
        assert!((mean[4] - 0.005).abs() < 1e-4, "{mean:?}");
        assert!((mean[5] - 0.0025).abs() < 1e-4, "{mean:?}");
        predict(&mut mean, &mut cov);
        let b = xyah_to_xyxy(&mean);
        let d = 0.005 * 60.0;
        let want = [b0[0] + d, b0[1] + d / 2.0, b0[2] + d, b0[3] + d / 2.0];
        for k in 0..4 {
            assert!((b[k] - want[k]).abs() < 1e-3, "{b:?} vs {want:?}");
        }
    }

    /// Non-finite input or a corrupted covariance: `update` refuses and changes nothing.
    #[test]
    fn update_refuses_bad_input() {
        let (mut mean, mut cov) = initiate([0.5, 0.5, 1.0, 0.2]);
        predict(&mut mean, &mut cov);
        let (m0, c0) = (mean, cov);
        assert!(!update(&mut mean, &mut cov, [f32::NAN, 0.5, 1.0, 0.2]));
        assert!(!update(&mut mean, &mut cov, [0.5, f32::INFINITY, 1.0, 0.2]));
        assert_eq!((mean, cov), (m0, c0));
        cov[0][0] = -1.0;
        let c1 = cov;
        assert!(!update(&mut mean, &mut cov, [0.5, 0.5, 1.0, 0.2]));
        assert_eq!(cov, c1);
        cov[1][1] = f32::NAN;
        assert!(!update(&mut mean, &mut cov, [0.5, 0.5, 1.0, 0.2]));
    }

    #[test]
    fn box_conversions_round_trip() {
        let b = [0.1f32, 0.2, 0.4, 0.8];
        let z = xyxy_to_xyah(b);
        assert!((z[2] - 0.5).abs() < 1e-6 && (z[3] - 0.6).abs() < 1e-6);
        let back = xyah_to_xyxy(&z);
        for k in 0..4 {
            assert!((back[k] - b[k]).abs() < 1e-6);
        }
    }
}
