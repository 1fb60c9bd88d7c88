//! Bounds on what an untrusted model file may make the loader allocate.
//!
//! Model files come from users: a forged file must get a clear error, never a multi-gigabyte
//! allocation or a panic. tract's NNEF reader allocates a tensor from its `.dat` header
//! *before* reading its bytes, and its shape analysis trusts the sizes a graph declares, so
//! [`crate::Model`] checks, before tract sees the file:
//!
//! - every `.dat` tensor's declared data size against the bytes its archive entry (or file)
//!   really holds — a header claiming a huge shape over a few bytes is refused;
//! - every archive entry's declared size against the bytes that really follow it (a
//!   truncated archive);
//! - the unpacked size of a gzipped archive: at most [`MAX_EXPANSION`] × the file size plus
//!   [`EXPANSION_SLACK`] (a gzip bomb is refused; real weights compress by less than 2×);
//! - how deeply the graph text (`*.nnef`, `*.quant`) nests expressions: at most
//!   [`MAX_NESTING`] levels of brackets and prefix operators. tract-nnef's parser backtracks
//!   exponentially on both (measured, dev build: 16 nested `[` in 0.9 s, 22 in 59 s; 8 nested
//!   `-(` in 1.5 s, 10 in 21 s; a run of 14 `+` in 0.2 s, each more doubling it). Fuzzing
//!   found 130 nested `[` and a run of ~110 `+` that kept it busy for minutes. Graphs tract
//!   writes nest a handful of levels (a rank-6 constant inside a call is 8). The cost is per
//!   statement, so the sum of 2^depth over statements is bounded too ([`NESTING_BUDGET`] plus
//!   the text's length): the fuzzer's next slow input was 4 KB of statements each just
//!   under the depth limit;
//!
//! and, once tract has built the typed graph (before optimising it, which folds constants),
//! every tensor the graph would hold — inputs declared by `external(shape = ...)`, outputs of
//! every node including Kestrel's binary ops, whose shapes follow from their attributes —
//! against [`MAX_TENSOR_BYTES`].

use std::io::{self, Read};
use std::path::Path;

use tract_nnef::internal::*;

use crate::error::RuntimeError;

/// Largest tensor a graph may declare or compute, in bytes (1 GiB: a 1×64×1080×1920 f32
/// feature map is 530 MB).
pub const MAX_TENSOR_BYTES: u64 = 1 << 30;

/// How many times its file size a gzipped archive may unpack to.
pub const MAX_EXPANSION: u64 = 64;

/// Unpacked bytes allowed on top of [`MAX_EXPANSION`] × the file size (small files, and
/// graphs of zero-initialised tensors).
pub const EXPANSION_SLACK: u64 = 16 << 20;

/// Deepest expression nesting a graph's text may have: open brackets (`(`, `[`, `{`) plus
/// prefix operators, outside strings and comments. 16 costs tract's parser up to ~1.5 s.
pub const MAX_NESTING: usize = 16;

/// Σ 2^depth over a graph text's statements may be at most this plus the text's length in
/// bytes (see [`MAX_NESTING`]; 2^16 units ≈ 2 s of tract's parser).
pub const NESTING_BUDGET: u64 = 1 << 16;

/// Size of the header of a tract NNEF `.dat` tensor file.
const DAT_HEADER: usize = 128;

fn refuse(label: &str, reason: String) -> RuntimeError {
    RuntimeError::ModelLimit {
        path: label.into(),
        reason,
    }
}

/// Checks an NNEF archive (tar, or gzipped tar) of `file_size` bytes read from `reader`.
/// `label` names the file in errors.
pub fn check_archive(
    label: &str,
    mut reader: impl Read,
    file_size: u64,
) -> Result<(), RuntimeError> {
    let corrupt = |e: io::Error| RuntimeError::ModelLoad {
        path: label.into(),
        stage: "read archive",
        source: e.into(),
    };
    let truncated = |name: &str, declared: u64, there: u64| RuntimeError::ModelLoad {
        path: label.into(),
        stage: "read archive",
        source: format!("truncated: entry {name} declares {declared} bytes, {there} are there")
            .into(),
    };
    let mut magic = [0u8; 2];
    let got = read_up_to(&mut reader, &mut magic).map_err(corrupt)?;
    let stream = io::Cursor::new(magic[..got].to_vec()).chain(reader);
    let gzipped = magic == [0x1f, 0x8b];
    let budget = if gzipped {
        file_size
            .saturating_mul(MAX_EXPANSION)
            .saturating_add(EXPANSION_SLACK)
    } else {
        file_size
    };
    let unpacked: Box<dyn Read> = if gzipped {
        Box::new(flate2::read::GzDecoder::new(stream))
    } else {
        Box::new(stream)
    };
    // One byte more than the budget: reaching it means the budget is exceeded.
    let mut limited = unpacked.take(budget.saturating_add(1));
    let mut archive = tar::Archive::new(&mut limited);
    let over_budget = || {
        refuse(
            label,
            format!(
                "the archive unpacks to more than {budget} bytes ({}): refusing it as a \
                 decompression bomb",
                budget_rule(gzipped, file_size)
            ),
        )
    };
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let name = entry
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "<bad name>".into());
        let declared = entry.header().size().map_err(corrupt)?;
        if declared > budget && !gzipped {
            return Err(truncated(&name, declared, file_size));
        }
        if declared > budget {
            return Err(refuse(
                label,
                format!(
                    "entry {name} declares {declared} bytes, more than the archive may hold \
                     ({budget} bytes: {})",
                    budget_rule(gzipped, file_size)
                ),
            ));
        }
        let mut header = [0u8; DAT_HEADER];
        let mut read = 0;
        if name.ends_with(".dat") {
            read = read_up_to(&mut entry, &mut header).map_err(corrupt)?;
        }
        if is_graph_text(&name) {
            let mut nesting = Nesting::default();
            read += io::copy(&mut entry, &mut nesting).map_err(corrupt)? as usize;
            nesting
                .check(&name)
                .map_err(|reason| refuse(label, reason))?;
        } else {
            read += io::copy(&mut entry, &mut io::sink()).map_err(corrupt)? as usize;
        }
        if read as u64 != declared {
            if limited.limit() == 0 {
                return Err(over_budget());
            }
            return Err(truncated(&name, declared, read as u64));
        }
        if name.ends_with(".dat") {
            check_dat_header(&header[..read.min(DAT_HEADER)], read as u64)
                .map_err(|reason| refuse(label, format!("tensor {name}: {reason}")))?;
        }
    }
    if limited.limit() == 0 {
        return Err(over_budget());
    }
    Ok(())
}

fn budget_rule(gzipped: bool, file_size: u64) -> String {
    if gzipped {
        format!(
            "{MAX_EXPANSION}x the file's {file_size} bytes + {} MiB",
            EXPANSION_SLACK >> 20
        )
    } else {
        "the file's size".to_string()
    }
}

/// Checks every `.dat` file under an NNEF directory against its size on disk.
pub fn check_directory(label: &str, dir: &Path) -> Result<(), RuntimeError> {
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RuntimeError::Io { path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.is_dir() {
            check_directory(label, &path)?;
        } else if is_graph_text(&path.to_string_lossy()) {
            let mut file = std::fs::File::open(&path).map_err(io_err(&path))?;
            let mut nesting = Nesting::default();
            io::copy(&mut file, &mut nesting).map_err(io_err(&path))?;
            nesting
                .check(&path.display().to_string())
                .map_err(|reason| refuse(label, reason))?;
        } else if path.extension().is_some_and(|e| e == "dat") {
            let mut file = std::fs::File::open(&path).map_err(io_err(&path))?;
            let size = file.metadata().map_err(io_err(&path))?.len();
            let mut header = [0u8; DAT_HEADER];
            let got = read_up_to(&mut file, &mut header).map_err(io_err(&path))?;
            check_dat_header(&header[..got], size)
                .map_err(|reason| refuse(label, format!("tensor {}: {reason}", path.display())))?;
        }
    }
    Ok(())
}

/// The graph's text files: `graph.nnef` and `graph.quant` (or any `.nnef` / `.quant`).
fn is_graph_text(name: &str) -> bool {
    name.ends_with(".nnef") || name.ends_with(".quant")
}

/// A sink that measures how deeply NNEF text nests expressions, skipping quoted strings (with
/// `\\` escapes) and `#` comments: each open bracket is a level, and so is each operator in
/// prefix position (after an open bracket, a comma, `=` or another operator), which tract's
/// parser also explores by backtracking (`-(` nested 8 times: 1.5 s; `x ++…+ x` with 14 `+`:
/// 0.2 s, each one more doubling it).
///
/// tract's cost is exponential *per statement*: measured (release build, a graph of 200
/// statements `y = add(x, [[…1.0…]])` on a loaded 2-core machine), about 0.25 ms × 2^(d − 3)
/// per statement of depth d (0.4 ms at 4, 2 ms at 6, 10 ms at 8, 110 ms at 12, ~1 s at 16).
/// So besides the deepest level ([`MAX_NESTING`]) the sink sums `2^d` over statements (`;`)
/// and [`Nesting::check`] bounds the sum by [`NESTING_BUDGET`] plus the text's length: a
/// statement tract writes (depth 4–5, 16–32 units, 40+ bytes) fits any number of times, 64
/// statements at depth 10 fill the budget (~1.5 s), and the slow input the fuzzer found next
/// (dozens of statements at depth 13–15, 1 s for 4 KB) is refused.
#[derive(Default)]
struct Nesting {
    /// Prefix operators of each enclosing bracket level, then the current level's.
    levels: Vec<usize>,
    prefix: usize,
    /// The enclosing levels' depth: `levels.len()` + Σ `levels` (kept as a sum, so a byte
    /// costs O(1) however deep the text nests).
    outer: usize,
    max: usize,
    /// Deepest level of the current statement, and Σ 2^depth over the finished ones.
    statement: usize,
    cost: u64,
    bytes: u64,
    /// The last byte outside strings, comments and whitespace.
    last: u8,
    quote: Option<u8>,
    escaped: bool,
    comment: bool,
}

impl Nesting {
    fn depth(&self) -> usize {
        self.outer + self.prefix
    }

    fn check(&self, name: &str) -> Result<(), String> {
        if self.max > MAX_NESTING {
            return Err(format!(
                "{name} nests expressions {} deep (at most {MAX_NESTING}): refusing it, tract's \
                 parser would take exponential time",
                self.max
            ));
        }
        let cost = self.cost.saturating_add(Self::units(self.statement));
        let budget = NESTING_BUDGET.saturating_add(self.bytes);
        if cost > budget {
            return Err(format!(
                "{name} has too many deeply nested statements (sum of 2^depth over statements \
                 {cost}, at most {budget} for its size; deepest {}): refusing it, tract's parser \
                 would take exponential time",
                self.max
            ));
        }
        Ok(())
    }

    /// What a statement of depth `d` costs tract's parser, in units of 2^d.
    fn units(d: usize) -> u64 {
        1u64 << d.min(62)
    }
}

impl io::Write for Nesting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        const OPERATORS: &[u8] = b"+-*/^<>=!&|";
        self.bytes += buf.len() as u64;
        for &b in buf {
            if self.comment {
                self.comment = b != b'\n';
                continue;
            }
            if let Some(q) = self.quote {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == q {
                    self.quote = None;
                }
                continue;
            }
            match b {
                b'"' | b'\'' => self.quote = Some(b),
                b'#' => self.comment = true,
                b'(' | b'[' | b'{' => {
                    self.levels.push(self.prefix);
                    self.outer += 1 + self.prefix;
                    self.prefix = 0;
                }
                b')' | b']' | b'}' => {
                    self.prefix = self.levels.pop().map_or(0, |p| {
                        self.outer -= 1 + p;
                        p
                    })
                }
                b',' | b';' => self.prefix = 0,
                // NNEF's prefix operators, where no operand precedes them.
                b'+' | b'-' | b'!' if self.last == 0 || b"([{,=".contains(&self.last) => {
                    self.prefix += 1
                }
                b'+' | b'-' | b'!' if OPERATORS.contains(&self.last) => self.prefix += 1,
                // A binary operator after an operand ends the prefix chain before it.
                _ if OPERATORS.contains(&b) && !OPERATORS.contains(&self.last) => self.prefix = 0,
                _ => {}
            }
            let depth = self.depth();
            self.max = self.max.max(depth);
            self.statement = self.statement.max(depth);
            if b == b';' {
                self.cost = self.cost.saturating_add(Self::units(self.statement));
                self.statement = depth;
            }
            if !b.is_ascii_whitespace() && self.quote.is_none() && !self.comment {
                self.last = b;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Checks a tract `.dat` header (`header`, up to 128 bytes) of a file of `size` bytes: the
/// data it declares must be there.
pub fn check_dat_header(header: &[u8], size: u64) -> Result<(), String> {
    if header.len() < DAT_HEADER {
        return Err(format!(
            "{size} bytes, shorter than the {DAT_HEADER}-byte tensor header"
        ));
    }
    let u32_at = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().unwrap());
    let data_size = u64::from(u32_at(4));
    let rank = u32_at(8) as usize;
    if rank > 8 {
        return Err(format!("header says rank {rank} (at most 8)"));
    }
    let dims: Vec<u64> = (0..rank).map(|i| u64::from(u32_at(12 + 4 * i))).collect();
    let available = size
        .checked_sub(DAT_HEADER as u64)
        .ok_or_else(|| format!("{size} bytes, shorter than the {DAT_HEADER}-byte tensor header"))?;
    if data_size > available {
        return Err(format!(
            "header says shape {dims:?} in {data_size} bytes, but the file holds {available} \
             bytes of data"
        ));
    }
    let elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| format!("header's shape {dims:?} overflows"))?;
    let bits = u64::from(u32_at(44));
    // Each element takes at least one bit (bit-packed booleans); most take bits_per_item.
    if elements.div_ceil(8) > available
        || (bits != u64::from(u32::MAX)
            && elements.checked_mul(bits).is_none_or(|b| b / 8 > available))
    {
        return Err(format!(
            "header says shape {dims:?} of {bits}-bit items, but the file holds {available} \
             bytes of data"
        ));
    }
    Ok(())
}

/// Checks every tensor `model` declares or computes against [`MAX_TENSOR_BYTES`].
pub fn check_graph(label: &str, model: &TypedModel) -> Result<(), RuntimeError> {
    for node in model.nodes() {
        for (slot, output) in node.outputs.iter().enumerate() {
            let fact = &output.fact;
            let Some(shape) = fact.shape.as_concrete() else {
                continue;
            };
            let bytes = shape
                .iter()
                .try_fold(fact.datum_type.size_of() as u64, |acc, &d| {
                    acc.checked_mul(d as u64)
                });
            if bytes.is_none_or(|b| b > MAX_TENSOR_BYTES) {
                let what = if model.inputs.contains(&OutletId::new(node.id, slot)) {
                    "input"
                } else {
                    "tensor"
                };
                return Err(refuse(
                    label,
                    format!(
                        "{what} '{}' would be {} ({}), over the limit of {} MiB",
                        node.name,
                        crate::error::describe(fact.datum_type, shape),
                        bytes.map_or("more than 2^64 bytes".into(), |b| format!("{b} bytes")),
                        MAX_TENSOR_BYTES >> 20
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dat_header(data_size: u32, dims: &[u32], bits: u32) -> Vec<u8> {
        let mut h = vec![0x4e, 0xef, 1, 0];
        h.extend(data_size.to_le_bytes());
        h.extend((dims.len() as u32).to_le_bytes());
        for i in 0..8 {
            h.extend(dims.get(i).copied().unwrap_or(0).to_le_bytes());
        }
        h.extend(bits.to_le_bytes());
        h.resize(DAT_HEADER, 0);
        h
    }

    #[test]
    fn dat_headers_must_fit_their_file() {
        let ok = dat_header(16, &[2, 2], 32);
        assert_eq!(check_dat_header(&ok, 128 + 16), Ok(()));
        // A shape of 2^32 x 2^32 f32 over 16 bytes, consistent in itself.
        let huge = dat_header(u32::MAX, &[65536, 16384], 32);
        let e = check_dat_header(&huge, 128 + 16).unwrap_err();
        assert!(
            e.contains("[65536, 16384]") && e.contains("holds 16 bytes"),
            "{e}"
        );
        let e = check_dat_header(&dat_header(16, &[1 << 20, 1 << 20], 32), 144).unwrap_err();
        assert!(e.contains("holds 16 bytes"), "{e}");
        let e = check_dat_header(&dat_header(0, &[u32::MAX; 8], 8), 128).unwrap_err();
        assert!(e.contains("overflows"), "{e}");
        assert!(check_dat_header(&ok[..100], 100)
            .unwrap_err()
            .contains("shorter"));
        // A whole header but a size below it (the caller's size disagrees): an error, not
        // an underflow.
        assert!(check_dat_header(&ok, 100).unwrap_err().contains("shorter"));
        let mut bad_rank = ok.clone();
        bad_rank[8] = 9;
        assert!(check_dat_header(&bad_rank, 144)
            .unwrap_err()
            .contains("rank 9"));
    }

    fn tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn archives_with_lying_entries_are_refused() {
        let mut dat = dat_header(16, &[4], 32);
        dat.extend([0u8; 16]);
        let good = tar(&[("graph.nnef", b"version 1.0;"), ("w.dat", &dat)]);
        check_archive("m", &good[..], good.len() as u64).unwrap();

        let mut forged = dat_header(u32::MAX, &[1 << 30], 32);
        forged.extend([0u8; 16]);
        let bad = tar(&[("w.dat", &forged)]);
        let e = check_archive("m.nnef.tar", &bad[..], bad.len() as u64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.nnef.tar") && e.contains("w.dat"), "{e}");

        // Cut inside the tensor's data: the entry says more than follows (a corrupt file,
        // not a limit).
        let cut = &good[..512 + 512 + 512 + 64];
        let e = check_archive("m", cut, cut.len() as u64).unwrap_err();
        assert!(matches!(e, RuntimeError::ModelLoad { .. }), "{e}");
        let text = crate::error::Chain(&e).to_string();
        assert!(text.contains("entry w.dat declares 144 bytes"), "{text}");
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    #[test]
    fn deeply_nested_graph_text_is_refused_before_tract_parses_it() {
        let graph = |depth: usize| {
            format!(
                "version 1.0;\n# ((((((((((((((((((((( in a comment\ngraph g(x) -> (y) {{\n  \
                 x = external(shape = [1, 8]);\n  s = \"[[[[[[[[[[[[[[[[[[[[ in a string\";\n  \
                 y = add(x, {}1.0{});\n}}\n",
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        // Depth counts the graph's braces and the call's parentheses: 2 + depth.
        let ok = graph(MAX_NESTING - 2);
        check_archive("ok", &tar(&[("graph.nnef", ok.as_bytes())])[..], 1 << 20).unwrap();
        let deep = graph(130);
        let err = check_archive(
            "deep.nnef.tar",
            &tar(&[("graph.nnef", deep.as_bytes())])[..],
            1 << 20,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("deep.nnef.tar") && err.contains("graph.nnef nests expressions 132 deep"),
            "{err}"
        );
        // Prefix operators count too: a run of `+`, and `-(` nested.
        for body in [
            "add(x, x ++++++++++++++++++ x)",
            "add(x, -(-(-(-(-(-(-(-(-(x))))))))))",
        ] {
            let text = format!("version 1.0;\ngraph g(x) -> (y) {{\n  y = {body};\n}}\n");
            let err = check_archive("ops", &tar(&[("graph.nnef", text.as_bytes())])[..], 1 << 20)
                .unwrap_err()
                .to_string();
            assert!(err.contains("nests expressions"), "{body}: {err}");
        }
        // What tract itself writes stays well inside the limit.
        let written = "version 1.0;\ngraph g(x) -> (y) {\n  x = external(shape = [1, 3]);\n  \
                       c = [[[[-1.0, 2.0, -3.0]]]];\n  y = tract_core_cast(pad(x, padding = \
                       [(0, 0), (-1, 1)], border = \"constant\"), to = \"f32\") * -1.0 + -c;\n}\n";
        check_archive(
            "w",
            &tar(&[("graph.nnef", written.as_bytes())])[..],
            1 << 20,
        )
        .unwrap();
    }

    #[test]
    fn many_deep_statements_are_refused_by_the_budget() {
        let graph = |expr: &str, n: usize| {
            let lines: String = (0..n)
                .map(|i| format!("  y{i} = add(x, {expr});\n"))
                .collect();
            format!(
                "version 1.0;\ngraph g(x) -> (y0) {{\n  x = external(shape = [1, 8]);\n{lines}}}\n"
            )
        };
        let check = |text: &str| {
            check_archive(
                "g.nnef.tar",
                &tar(&[("graph.nnef", text.as_bytes())])[..],
                1 << 24,
            )
        };
        // Each statement at depth 10 is allowed alone; 100 of them are ~2.5 s of parsing.
        let deep = "[[[[[[[[1.0]]]]]]]]";
        check(&graph(deep, 1)).unwrap();
        let err = check(&graph(deep, 100)).unwrap_err().to_string();
        assert!(
            err.contains("g.nnef.tar") && err.contains("too many deeply nested statements"),
            "{err}"
        );
        // Runs of prefix operators in many statements (what the fuzzer found next).
        let err = check(&graph("x -------------- x", 40))
            .unwrap_err()
            .to_string();
        assert!(err.contains("too many deeply nested statements"), "{err}");
        // What tract writes, many times over: a conv with its attributes (depth 4).
        let conv = "conv(x, w, b, dilation = [1, 1], stride = [1, 1], border = \"constant\", \
                    groups = 1, padding = [(1, 1), (1, 1)])";
        check(&graph(conv, 5000)).unwrap();
    }

    #[test]
    fn gzip_bombs_are_refused() {
        // One entry larger than the budget (~16.5 MiB here): refused from its header.
        let zeros = vec![0u8; 32 << 20];
        let gz = gzip(&tar(&[("w.dat", &zeros)]));
        let e = check_archive("bomb.nnef.tgz", &gz[..], gz.len() as u64)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bomb.nnef.tgz") && e.contains("64x the file's"),
            "{e}"
        );
        // Entries each under the budget, together over it: refused while unpacking.
        let zeros = vec![0u8; 10 << 20];
        let gz = gzip(&tar(&[("a.bin", &zeros), ("b.bin", &zeros)]));
        let e = check_archive("bomb.nnef.tgz", &gz[..], gz.len() as u64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("decompression bomb"), "{e}");
    }
}
