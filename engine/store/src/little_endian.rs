//! Fixed-width little-endian field readers shared by the WAL and B-tree formats (FORMAT.md).
//! Callers have already checked that `offset + width` lies inside `bytes`; an out-of-range read
//! is a bug in a format decoder and panics like any slice index.

pub(crate) fn read_u16(bytes: &[u8], offset: usize) -> u16 {
    let mut field = [0; 2];
    field.copy_from_slice(&bytes[offset..offset + 2]);
    u16::from_le_bytes(field)
}

pub(crate) fn read_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut field = [0; 4];
    field.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(field)
}

pub(crate) fn read_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut field = [0; 8];
    field.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(field)
}
