//! The MBR partition table of an SD-card image: where the boot (FAT) and root (Linux)
//! partitions start and end, and growing the root entry when its filesystem grows.
//!
//! Raspberry Pi OS images carry a classic MBR: partition 1 is FAT32 (type `0x0c`), partition
//! 2 is Linux (`0x83`). Only the LBA fields are read and written; the CHS fields are legacy
//! and ignored by the Pi's firmware and by Linux.

/// Bytes per sector in the table's LBA fields.
pub const SECTOR: u64 = 512;

/// Why a first sector is not a usable partition table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MbrError {
    /// No `55 AA` boot signature: not a disk image.
    #[error("no MBR partition table (no 55 AA signature in the first sector)")]
    NoSignature,
    /// A protective MBR in front of a GPT.
    #[error("a GPT disk (protective MBR); Raspberry Pi OS images use an MBR")]
    Gpt,
    /// The partitions the image needs are not there.
    #[error("no {0} partition (partitions: {1})")]
    Missing(&'static str, String),
}

/// One primary partition entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// 0-based slot in the table (partition number − 1).
    pub slot: usize,
    /// The type byte (`0x0c` FAT32 LBA, `0x83` Linux).
    pub kind: u8,
    /// First sector.
    pub start: u32,
    /// Length in sectors.
    pub sectors: u32,
}

impl Partition {
    /// Byte offset of the partition in the image.
    pub fn offset(&self) -> u64 {
        u64::from(self.start) * SECTOR
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        u64::from(self.sectors) * SECTOR
    }

    /// Byte offset just past the partition.
    pub fn end(&self) -> u64 {
        self.offset() + self.len()
    }

    /// Whether the type byte is one of the FAT types.
    pub fn is_fat(&self) -> bool {
        matches!(self.kind, 0x01 | 0x04 | 0x06 | 0x0b | 0x0c | 0x0e)
    }

    /// Whether the type byte is Linux native.
    pub fn is_linux(&self) -> bool {
        self.kind == 0x83
    }
}

/// Byte offset of slot `slot`'s 16-byte entry in the first sector.
fn entry_at(slot: usize) -> usize {
    446 + 16 * slot
}

/// The non-empty primary partitions of a first sector.
pub fn parse(sector0: &[u8; 512]) -> Result<Vec<Partition>, MbrError> {
    if sector0[510..512] != [0x55, 0xaa] {
        return Err(MbrError::NoSignature);
    }
    let mut parts = Vec::new();
    for slot in 0..4 {
        let e = &sector0[entry_at(slot)..entry_at(slot) + 16];
        let kind = e[4];
        let start = u32::from_le_bytes([e[8], e[9], e[10], e[11]]);
        let sectors = u32::from_le_bytes([e[12], e[13], e[14], e[15]]);
        if kind == 0xee {
            return Err(MbrError::Gpt);
        }
        if kind != 0 && sectors != 0 {
            parts.push(Partition {
                slot,
                kind,
                start,
                sectors,
            });
        }
    }
    Ok(parts)
}

/// The boot (first FAT) and root (first Linux) partitions.
pub fn boot_and_root(parts: &[Partition]) -> Result<(Partition, Partition), MbrError> {
    let listed = || {
        if parts.is_empty() {
            return "none".to_string();
        }
        parts
            .iter()
            .map(|p| format!("{} type 0x{:02x}", p.slot + 1, p.kind))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let boot = parts
        .iter()
        .find(|p| p.is_fat())
        .ok_or_else(|| MbrError::Missing("FAT boot", listed()))?;
    let root = parts
        .iter()
        .find(|p| p.is_linux())
        .ok_or_else(|| MbrError::Missing("Linux root", listed()))?;
    Ok((*boot, *root))
}

/// The first byte the partition in `slot` may not grow into: the start of the next
/// partition behind it, or the end of what an MBR can address.
pub fn growth_limit(parts: &[Partition], slot: usize) -> u64 {
    let Some(me) = parts.iter().find(|p| p.slot == slot) else {
        return 0;
    };
    parts
        .iter()
        .filter(|p| p.start > me.start)
        .map(Partition::offset)
        .min()
        .unwrap_or(u64::from(u32::MAX) * SECTOR)
}

/// Sets the length of the entry in `slot`.
pub fn set_sectors(sector0: &mut [u8; 512], slot: usize, sectors: u32) {
    let at = entry_at(slot) + 12;
    sector0[at..at + 4].copy_from_slice(&sectors.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[(u8, u32, u32)]) -> [u8; 512] {
        let mut s = [0u8; 512];
        for (slot, &(kind, start, sectors)) in entries.iter().enumerate() {
            let at = entry_at(slot);
            s[at + 4] = kind;
            s[at + 8..at + 12].copy_from_slice(&start.to_le_bytes());
            s[at + 12..at + 16].copy_from_slice(&sectors.to_le_bytes());
        }
        s[510] = 0x55;
        s[511] = 0xaa;
        s
    }

    #[test]
    fn a_pi_os_table_parses_and_grows() {
        let mut s = table(&[(0x0c, 8192, 1048576), (0x83, 1056768, 4194304)]);
        let parts = parse(&s).unwrap();
        let (boot, root) = boot_and_root(&parts).unwrap();
        assert_eq!((boot.slot, boot.offset()), (0, 8192 * 512));
        assert_eq!((root.slot, root.len()), (1, 4194304 * 512));
        assert_eq!(growth_limit(&parts, 1), u64::from(u32::MAX) * 512);
        assert_eq!(growth_limit(&parts, 0), root.offset());
        set_sectors(&mut s, 1, 5000000);
        assert_eq!(parse(&s).unwrap()[1].sectors, 5000000);
    }

    #[test]
    fn bad_tables_are_named() {
        assert_eq!(parse(&[0u8; 512]), Err(MbrError::NoSignature));
        assert_eq!(parse(&table(&[(0xee, 1, 100)])), Err(MbrError::Gpt));
        let parts = parse(&table(&[(0x83, 2048, 100)])).unwrap();
        let e = boot_and_root(&parts).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no FAT boot partition (partitions: 1 type 0x83)"
        );
    }
}
