use super::*;

/// Channels-last values whose bits name their pixel and channel.
fn image(hw: usize, c: usize) -> Vec<f32> {
    (0..hw * c).map(|i| i as f32 * 0.5 - 3.0).collect()
}

#[test]
fn portable_puts_each_channel_in_its_plane() {
    let src = image(5, 3);
    let mut dst = vec![f32::NAN; 15];
    portable(&src, 5, 3, &mut dst);
    for p in 0..5 {
        for ch in 0..3 {
            assert_eq!(dst[ch * 5 + p], src[p * 3 + ch]);
        }
    }
}

#[test]
fn the_fast_kernel_writes_the_portable_bits() {
    for c in 1..=6 {
        for hw in [0, 1, 3, 4, 5, 8, 13, 90_000 + 3] {
            let src = image(hw, c);
            let (mut want, mut got) = (vec![f32::NAN; hw * c], vec![f32::NAN; hw * c]);
            portable(&src, hw, c, &mut want);
            to_channels_first(&src, hw, c, &mut got);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "c = {c}, hw = {hw}");
        }
    }
}

#[test]
#[should_panic(expected = "to_channels_first")]
fn wrong_lengths_panic() {
    to_channels_first(&[0.0; 6], 2, 3, &mut [0.0; 5]);
}
