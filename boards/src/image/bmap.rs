//! The `.bmap` beside an image: which 4096-byte blocks hold data, with a SHA-256 per range,
//! so `bmaptool copy` writes only those blocks to the card and checks what it wrote.
//!
//! Format 2.0 of bmap-tools: `ImageSize`, `BlockSize`, `BlocksCount`, `MappedBlocksCount`,
//! `ChecksumType` (sha256), `BmapFileChecksum` (the SHA-256 of the file itself with that field
//! set to 64 zeros), and `BlockMap` of `<Range chksum="…"> first-last </Range>`. A block is
//! mapped when it holds a non-zero byte: an SD card's unmapped blocks may hold anything, and
//! nothing in the image needs them zero (the filesystems track their free space).

use std::fs;
use std::io::{self, Read};
use std::path::Path;

use ring::digest::{Context, SHA256};

/// The block size bmaptool copies in.
pub const BLOCK: u64 = 4096;

/// A run of mapped blocks, `first..=last`, and the SHA-256 of their bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// First block.
    pub first: u64,
    /// Last block (inclusive).
    pub last: u64,
    /// Lower-case hex SHA-256 of the range's bytes.
    pub sha256: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The mapped ranges of the image read from `reader`, and its size in bytes.
pub fn ranges(mut reader: impl Read) -> io::Result<(Vec<Range>, u64)> {
    let mut ranges = Vec::new();
    let mut open: Option<(u64, Context)> = None;
    let mut buf = vec![0u8; BLOCK as usize];
    let mut block = 0u64;
    let mut size = 0u64;
    loop {
        let mut n = 0;
        while n < buf.len() {
            match reader.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        if n == 0 {
            break;
        }
        size += n as u64;
        let data = &buf[..n];
        if data.iter().any(|&b| b != 0) {
            open.get_or_insert_with(|| (block, Context::new(&SHA256)))
                .1
                .update(data);
        } else if let Some((first, ctx)) = open.take() {
            ranges.push(Range {
                first,
                last: block - 1,
                sha256: hex(ctx.finish().as_ref()),
            });
        }
        block += 1;
        if n < buf.len() {
            break;
        }
    }
    if let Some((first, ctx)) = open {
        ranges.push(Range {
            first,
            last: block - 1,
            sha256: hex(ctx.finish().as_ref()),
        });
    }
    Ok((ranges, size))
}

const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The bmap XML for an image of `size` bytes with `ranges` mapped.
pub fn render(ranges: &[Range], size: u64) -> String {
    let blocks = size.div_ceil(BLOCK);
    let mapped: u64 = ranges.iter().map(|r| r.last - r.first + 1).sum();
    let mut map = String::new();
    for r in ranges {
        let span = if r.first == r.last {
            r.first.to_string()
        } else {
            format!("{}-{}", r.first, r.last)
        };
        map.push_str(&format!(
            "        <Range chksum=\"{}\"> {span} </Range>\n",
            r.sha256
        ));
    }
    let with = |checksum: &str| {
        format!(
            "<?xml version=\"1.0\" ?>\n\
             <!-- Written by `cargo boards image`: the blocks of the image that hold data.\n     \
             Flash with: bmaptool copy IMAGE /dev/sdX -->\n\
             <bmap version=\"2.0\">\n    \
             <ImageSize> {size} </ImageSize>\n    \
             <BlockSize> {BLOCK} </BlockSize>\n    \
             <BlocksCount> {blocks} </BlocksCount>\n    \
             <MappedBlocksCount> {mapped} </MappedBlocksCount>\n    \
             <ChecksumType> sha256 </ChecksumType>\n    \
             <BmapFileChecksum> {checksum} </BmapFileChecksum>\n    \
             <BlockMap>\n{map}    </BlockMap>\n</bmap>\n"
        )
    };
    let unsigned = with(ZEROS);
    with(&hex(
        ring::digest::digest(&SHA256, unsigned.as_bytes()).as_ref()
    ))
}

/// The bmap of the image file `image`.
pub fn of_file(image: &Path) -> io::Result<String> {
    let file = fs::File::open(image)?;
    let (ranges, size) = ranges(io::BufReader::with_capacity(1 << 20, file))?;
    Ok(render(&ranges, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ranges_skip_zero_blocks() {
        let mut img = vec![0u8; 5 * BLOCK as usize + 100];
        img[10] = 1;
        img[BLOCK as usize + 5] = 2;
        img[4 * BLOCK as usize] = 3;
        img[5 * BLOCK as usize + 99] = 4;
        let (r, size) = ranges(img.as_slice()).unwrap();
        assert_eq!(size, img.len() as u64);
        let spans: Vec<_> = r.iter().map(|r| (r.first, r.last)).collect();
        assert_eq!(spans, [(0, 1), (4, 5)]);
        let first = hex(ring::digest::digest(&SHA256, &img[..2 * BLOCK as usize]).as_ref());
        assert_eq!(r[0].sha256, first);
        let last = hex(ring::digest::digest(&SHA256, &img[4 * BLOCK as usize..]).as_ref());
        assert_eq!(r[1].sha256, last);
        let xml = render(&r, size);
        assert!(xml.contains("<BlocksCount> 6 </BlocksCount>"), "{xml}");
        assert!(xml.contains("<MappedBlocksCount> 4 </MappedBlocksCount>"));
        assert!(xml.contains("> 0-1 </Range>"));
    }
}
