//! numpy arrays in and out: `.npy` (one array) and `.npz` (a zip of `.npy` files, as
//! `np.savez` writes them), to and from tract [`Tensor`]s.
//!
//! Element types read: f32, f64, u8, i8, i32, i64, bool, in either byte order; C order only.
//! Files from users are untrusted: the header's shape is checked against the bytes the file
//! actually holds before anything is allocated, so a forged header cannot ask for gigabytes.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::Path;

use npyz::{AutoSerialize, Deserialize, NpyFile, Order, TypeChar, WriterBuilder};
use tract_nnef::internal::*;

use crate::error::RuntimeError;
use crate::io::atomic::AtomicFile;

/// The longest `.npy` header read (numpy writes a few hundred bytes).
const MAX_HEADER_BYTES: u64 = 1 << 16;

/// The deepest bracket nesting accepted in a `.npy` header (numpy's own nest 2 deep; simple
/// record dtypes, which are refused later anyway, 3–4).
const MAX_HEADER_NESTING: usize = 8;

/// The deepest nesting of `(`, `[` and `{` in `text` (unbalanced closers are ignored).
fn max_nesting(text: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for &c in text {
        match c {
            b'(' | b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// A named array, as read from or written to a file.
pub type NamedTensor = (String, Tensor);

fn bad(path: &Path, reason: impl Into<String>) -> RuntimeError {
    RuntimeError::Array {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads a `.npy` (one array, named after the file stem) or a `.npz` (every array, in the
/// archive's order, named by its key).
pub fn read_arrays(path: &Path) -> Result<Vec<NamedTensor>, RuntimeError> {
    let io = |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut reader = BufReader::new(file);
    let mut magic = [0u8; 4];
    reader
        .read_exact(&mut magic)
        .map_err(|_| bad(path, "too short to be a .npy or .npz file"))?;
    reader.rewind().map_err(io)?;
    if &magic == b"PK\x03\x04" || &magic == b"PK\x05\x06" {
        read_npz(path, reader)
    } else if &magic == b"\x93NUM" {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().trim_end_matches(".npy").to_string())
            .unwrap_or_default();
        let tensor = read_npy(reader, size).map_err(|e| bad(path, e))?;
        Ok(vec![(name, tensor)])
    } else {
        Err(bad(
            path,
            "not a numpy file (neither .npy nor .npz magic bytes)",
        ))
    }
}

fn read_npz<R: Read + Seek>(path: &Path, reader: R) -> Result<Vec<NamedTensor>, RuntimeError> {
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| bad(path, format!("bad npz: {e}")))?;
    let mut arrays = Vec::with_capacity(zip.len());
    for index in 0..zip.len() {
        let entry = zip
            .by_index(index)
            .map_err(|e| bad(path, format!("bad npz: {e}")))?;
        let entry_name = entry.name().to_string();
        let Some(key) = entry_name.strip_suffix(".npy") else {
            log::warn!("{}: skipping non-array entry {entry_name}", path.display());
            continue;
        };
        let size = entry.size();
        let tensor = read_npy(entry, size).map_err(|e| bad(path, format!("array '{key}': {e}")))?;
        arrays.push((key.to_string(), tensor));
    }
    if arrays.is_empty() {
        return Err(bad(path, "npz archive holds no array"));
    }
    Ok(arrays)
}

/// Reads one `.npy` stream of `available` bytes into a tensor.
fn read_npy<R: Read>(mut reader: R, available: u64) -> Result<Tensor, String> {
    // The preamble says how long the header is; npyz allocates that much before reading it
    // (a forged 4-byte length asked for 1.9 GB, found by fuzz/npy_read): check it first.
    let mut preamble = [0u8; 12];
    let mut got = 0;
    while got < preamble.len() {
        match reader.read(&mut preamble[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(format!("cannot read: {e}")),
        }
    }
    let header_len = match (got, preamble[6]) {
        (10.., 1) => u64::from(u16::from_le_bytes([preamble[8], preamble[9]])),
        (12, 2 | 3) => u64::from(u32::from_le_bytes(preamble[8..12].try_into().unwrap())),
        _ => 0,
    };
    if header_len > MAX_HEADER_BYTES || header_len > available {
        return Err(format!(
            "bad npy header: says it is {header_len} bytes long (the file holds {available}, a \
             header is at most {MAX_HEADER_BYTES})"
        ));
    }
    // The header text is a Python literal that npyz parses with a backtracking grammar:
    // 120 unclosed `[` took it over 20 s (found by fuzz/npy_read). A numpy header nests two
    // levels deep (a dict holding the shape tuple); refuse deep nesting before parsing.
    let header_start = if preamble[6] == 1 { 10 } else { 12 };
    let mut head = preamble[..got].to_vec();
    let wanted = (header_start + header_len as usize).saturating_sub(got);
    (&mut reader)
        .take(wanted as u64)
        .read_to_end(&mut head)
        .map_err(|e| format!("cannot read: {e}"))?;
    let depth = max_nesting(head.get(header_start..).unwrap_or_default());
    if depth > MAX_HEADER_NESTING {
        return Err(format!(
            "bad npy header: brackets nested {depth} deep (a numpy header nests at most \
             {MAX_HEADER_NESTING})"
        ));
    }
    let reader = std::io::Cursor::new(head).chain(reader);
    let npy = NpyFile::new(reader).map_err(|e| format!("bad npy header: {e}"))?;
    if npy.order() == Order::Fortran && npy.shape().len() > 1 {
        return Err("Fortran-ordered array (save it with np.ascontiguousarray)".into());
    }
    let npyz::DType::Plain(ts) = npy.dtype() else {
        return Err(format!(
            "unsupported structured dtype {}",
            npy.dtype().descr()
        ));
    };
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let elements = npy
        .shape()
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("shape {shape:?} overflows"))?;
    let bytes = elements
        .checked_mul(ts.size_field())
        .ok_or("array size overflows")?;
    if bytes > available {
        return Err(format!(
            "header says shape {shape:?} of {ts} ({bytes} bytes) but the file holds {available}"
        ));
    }
    match (ts.type_char(), ts.size_field()) {
        (TypeChar::Float, 4) => tensor::<f32, _>(npy, &shape),
        (TypeChar::Float, 8) => tensor::<f64, _>(npy, &shape),
        (TypeChar::Uint, 1) => tensor::<u8, _>(npy, &shape),
        (TypeChar::Int, 1) => tensor::<i8, _>(npy, &shape),
        (TypeChar::Int, 4) => tensor::<i32, _>(npy, &shape),
        (TypeChar::Int, 8) => tensor::<i64, _>(npy, &shape),
        (TypeChar::Bool, 1) => tensor::<bool, _>(npy, &shape),
        _ => Err(format!("unsupported element type {ts}")),
    }
}

fn tensor<T: Deserialize + Datum + Copy, R: Read>(
    npy: NpyFile<R>,
    shape: &[usize],
) -> Result<Tensor, String> {
    let data: Vec<T> = npy.into_vec().map_err(|e| format!("bad array data: {e}"))?;
    Tensor::from_shape(shape, &data).map_err(|e| format!("{e:#}"))
}

/// Writes `arrays` to `path`: a `.npz` with one entry per array, or, for a path ending in
/// `.npy`, the single array given. The file appears only once it is complete.
pub fn write_arrays(path: &Path, arrays: &[(&str, &Tensor)]) -> Result<(), RuntimeError> {
    let is_npy = path.extension().is_some_and(|e| e == "npy");
    if is_npy && arrays.len() != 1 {
        return Err(bad(
            path,
            format!(
                "a .npy holds one array, {} to write: use .npz",
                arrays.len()
            ),
        ));
    }
    let mut out = AtomicFile::create(path)?;
    let result = if is_npy {
        let mut w = BufWriter::new(out.file_mut());
        write_npy(&mut w, arrays[0].1).and_then(|_| Ok(w.flush()?))
    } else {
        write_npz(out.file_mut(), arrays)
    };
    result.map_err(|e| bad(path, format!("cannot write: {e:#}")))?;
    out.commit()
}

fn write_npz<W: Write + Seek>(w: W, arrays: &[(&str, &Tensor)]) -> anyhow::Result<()> {
    let mut zip = zip::ZipWriter::new(w);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(true);
    for (name, tensor) in arrays {
        zip.start_file(format!("{name}.npy"), options)?;
        write_npy(&mut zip, tensor)?;
    }
    zip.finish()?.flush()?;
    Ok(())
}

/// Writes one tensor as a `.npy` stream.
pub fn write_npy<W: Write>(w: W, tensor: &Tensor) -> anyhow::Result<()> {
    match tensor.datum_type() {
        DatumType::F32 => write_typed::<f32, W>(w, tensor),
        DatumType::F64 => write_typed::<f64, W>(w, tensor),
        DatumType::U8 => write_typed::<u8, W>(w, tensor),
        DatumType::I8 => write_typed::<i8, W>(w, tensor),
        DatumType::I32 => write_typed::<i32, W>(w, tensor),
        DatumType::I64 => write_typed::<i64, W>(w, tensor),
        DatumType::Bool => write_typed::<bool, W>(w, tensor),
        DatumType::F16 => write_typed::<f32, W>(w, &*tensor.cast_to::<f32>()?),
        dt => anyhow::bail!("no numpy form for {dt:?} tensors"),
    }
}

fn write_typed<T: AutoSerialize + Datum + Copy, W: Write>(w: W, t: &Tensor) -> anyhow::Result<()> {
    let view = t.try_as_plain_ram()?;
    let data = view.as_slice::<T>()?;
    let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
    let mut writer = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(&shape)
        .writer(w)
        .begin_nd()?;
    writer.extend(data.iter().copied())?;
    writer.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forged_header_length_is_refused_before_allocating() {
        // fuzz/npy_read's find: version 3, header length "vfor" = 1.9 GB.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("forged.npy");
        let mut bytes = b"\x93NUMPY\x03\x00vfortran_order': False, 'shape': (2, 2), }".to_vec();
        bytes.extend([b' '; 64]);
        std::fs::write(&path, &bytes).unwrap();
        let e = read_arrays(&path).unwrap_err().to_string();
        assert!(
            e.contains("forged.npy") && e.contains("1919903350 bytes long"),
            "{e}"
        );
    }

    #[test]
    fn npz_round_trip_keeps_names_types_and_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npz");
        let a = Tensor::from_shape(&[2, 3], &[1f32, 2., 3., 4., 5., -6.]).unwrap();
        let b = Tensor::from_shape(&[4], &[0u8, 7, 255, 9]).unwrap();
        let c = Tensor::from_shape(&[1, 2], &[-3i8, 4]).unwrap();
        write_arrays(&path, &[("out/a", &a), ("b", &b), ("c", &c)]).unwrap();
        let back = read_arrays(&path).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[0].0, "out/a");
        assert_eq!(back[0].1, a);
        assert_eq!(back[1], ("b".to_string(), b));
        assert_eq!(back[2], ("c".to_string(), c));
    }

    #[test]
    fn npy_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.npy");
        let a = Tensor::from_shape(&[1, 2, 2], &[0.5f32, -1., 2., 3.]).unwrap();
        write_arrays(&path, &[("x", &a)]).unwrap();
        assert_eq!(read_arrays(&path).unwrap(), vec![("x".to_string(), a)]);
    }

    #[test]
    fn forged_header_is_refused_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.npy");
        let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000, 100), }";
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let pad = 64 - (10 + header.len() + 1) % 64;
        let full = format!("{header}{}\n", " ".repeat(pad));
        bytes.extend_from_slice(&(full.len() as u16).to_le_bytes());
        bytes.extend_from_slice(full.as_bytes());
        bytes.extend_from_slice(&[0u8; 16]);
        std::fs::write(&path, bytes).unwrap();
        let err = read_arrays(&path).unwrap_err().to_string();
        assert!(
            err.contains("big.npy") && err.contains("file holds"),
            "{err}"
        );
    }

    #[test]
    fn garbage_and_truncation_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.npz");
        std::fs::write(&garbage, b"definitely not numpy").unwrap();
        let err = read_arrays(&garbage).unwrap_err().to_string();
        assert!(
            err.contains("garbage.npz") && err.contains("not a numpy file"),
            "{err}"
        );

        let good = dir.path().join("good.npz");
        let a = Tensor::from_shape(&[64], &[1f32; 64]).unwrap();
        write_arrays(&good, &[("a", &a)]).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let cut = dir.path().join("cut.npz");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_arrays(&cut).unwrap_err().to_string();
        assert!(err.contains("cut.npz"), "{err}");

        let missing = read_arrays(&dir.path().join("missing.npy"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("missing.npy"), "{missing}");
    }

    #[test]
    fn deeply_nested_header_is_refused_quickly() {
        // fuzz/npy_read: a header whose shape opens 120 brackets made npyz's parser backtrack
        // for more than 20 s.
        let mut file =
            b"\x93NUMPY\x01\x00\x76\x00{'descr': '>i8', 'fortran_order': False, 'shape':".to_vec();
        file.extend(std::iter::repeat_n(b'[', 120 - 52));
        file.resize(10 + 0x76 - 1, b' ');
        file.push(b'\n');
        file.extend([0u8; 32]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deep.npy");
        std::fs::write(&path, &file).unwrap();
        let err = read_arrays(&path).unwrap_err().to_string();
        assert!(err.contains("deep.npy") && err.contains("nested"), "{err}");
        assert_eq!(max_nesting(b"{'shape': (1, 3), }"), 2);
    }

    #[test]
    fn single_npy_refuses_several_arrays() {
        let dir = tempfile::tempdir().unwrap();
        let a = Tensor::from_shape(&[1], &[1f32]).unwrap();
        let err = write_arrays(&dir.path().join("o.npy"), &[("a", &a), ("b", &a)]).unwrap_err();
        assert!(err.to_string().contains("use .npz"));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
