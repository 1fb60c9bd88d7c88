//! The geometry of a sliding 2-D window (convolution, pooling): its output size, one formula
//! for every windowed op so that they agree on which inputs fit, and the checks the float
//! convolution ops share at load (strides, padding, bias).

use tract_nnef::internal::*;

/// Checks a float windowed op's geometry (`kestrel_depthwise`, `kestrel_conv`): strides 1 or
/// 2 and zero padding (top, left, bottom, right) smaller than the `[kh, kw]` kernel; errors
/// name `op`.
pub(crate) fn check_geometry(
    op: &str,
    [kh, kw]: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 4],
) -> TractResult<()> {
    ensure!(
        stride.iter().all(|s| (1..=2).contains(s)),
        "{op}: strides must be 1 or 2, got {stride:?}"
    );
    let [pt, pl, pb, pr] = padding;
    ensure!(
        pt < kh && pb < kh && pl < kw && pr < kw,
        "{op}: padding {padding:?} must be smaller than the kernel {kh}x{kw}"
    );
    Ok(())
}

/// Checks that `bias` is f32 `[len]`; errors name `op`.
pub(crate) fn check_bias(op: &str, bias: &Tensor, len: usize) -> TractResult<()> {
    ensure!(
        bias.datum_type() == f32::datum_type() && bias.shape() == [len],
        "{op}: bias must be f32 [{len}], got {:?} {:?}",
        bias.datum_type(),
        bias.shape()
    );
    Ok(())
}

/// Output height and width of a window spanning `span` input rows and columns (dilation
/// included) at `stride` (≥ 1) over an `h × w` input padded by `[top, left, bottom, right]`:
/// `(size + pads − span) / stride + 1` per axis, or `None` where the window does not fit.
pub(crate) fn output_hw(
    [h, w]: [usize; 2],
    [pt, pl, pb, pr]: [usize; 4],
    span: [usize; 2],
    stride: [usize; 2],
) -> Option<(usize, usize)> {
    let out = |size: usize, pad: usize, span: usize, s: usize| {
        (size + pad).checked_sub(span).map(|r| r / s + 1)
    };
    Some((
        out(h, pt + pb, span[0], stride[0])?,
        out(w, pl + pr, span[1], stride[1])?,
    ))
}

/// The `stride` (2 values) and `padding` (4: top, left, bottom, right) attributes of a
/// windowed op's NNEF invocation; errors name `op`.
pub(crate) fn read_window(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
    op: &str,
) -> TractResult<([usize; 2], [usize; 4])> {
    let stride: TVec<usize> = invocation.named_arg_as(builder, "stride")?;
    let padding: TVec<usize> = invocation.named_arg_as(builder, "padding")?;
    ensure!(
        stride.len() == 2 && padding.len() == 4,
        "{op}: stride takes 2 values and padding 4, got {stride:?} {padding:?}"
    );
    Ok((
        [stride[0], stride[1]],
        [padding[0], padding[1], padding[2], padding[3]],
    ))
}

/// [`output_hw`] of a `kernel` (dilation 1) as `[height, width]`, or an error naming `op` and
/// saying the kernel does not fit the plane.
pub(crate) fn fitted_hw(
    op: &str,
    hw: [usize; 2],
    padding: [usize; 4],
    kernel: [usize; 2],
    stride: [usize; 2],
) -> TractResult<[usize; 2]> {
    let (oh, ow) = output_hw(hw, padding, kernel, stride).with_context(|| {
        format!("{op}: a {kernel:?} kernel with padding {padding:?} does not fit a {hw:?} plane")
    })?;
    Ok([oh, ow])
}

#[cfg(test)]
mod tests {
    use super::output_hw;

    #[test]
    fn sizes_of_common_windows() {
        // 3×3, pad 1: same size at stride 1, halved (rounded up) at stride 2.
        assert_eq!(output_hw([7, 8], [1; 4], [3, 3], [1, 1]), Some((7, 8)));
        assert_eq!(output_hw([7, 8], [1; 4], [3, 3], [2, 2]), Some((4, 4)));
        // Asymmetric padding, a window exactly the padded size, one that does not fit.
        assert_eq!(
            output_hw([4, 4], [0, 1, 0, 0], [4, 5], [1, 1]),
            Some((1, 1))
        );
        assert_eq!(output_hw([2, 2], [0; 4], [3, 1], [1, 1]), None);
    }
}
