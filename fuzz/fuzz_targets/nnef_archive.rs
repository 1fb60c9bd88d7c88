//! The NNEF fuzz targets' input format: a sequence of entries
//! `[name length: u8][name][data length: u32 LE][data]` (a length past the end takes what is
//! left), packed into a tar here, so mutations reach `graph.nnef` and the `.dat` headers
//! instead of tar checksums. `fuzz/seeds.py` turns `.nnef.tgz` files into this format.

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = data.split_at(n.min(data.len()));
    *data = tail;
    head
}

pub fn archive(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    while !data.is_empty() {
        let name_len = take(&mut data, 1)[0] as usize;
        let name = String::from_utf8_lossy(take(&mut data, name_len)).into_owned();
        let len = take(&mut data, 4);
        let len = u32::from_le_bytes(len.try_into().unwrap_or([0xff; 4])) as usize;
        let body = take(&mut data, len);
        if name.is_empty() || name.contains('\0') {
            continue;
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        // A name the tar crate refuses (absolute, `..`) is not what this target tests.
        tar.append_data(&mut header, &name, body).ok()?;
    }
    tar.into_inner().ok()
}
