//! What a file needs in order to run: for an ELF executable or shared
//! object, its machine, class, byte order, program interpreter (PT_INTERP),
//! needed libraries (DT_NEEDED) and library search path (DT_RUNPATH, or
//! DT_RPATH); for a script, its `#!` interpreter. kiln-layer records these
//! facts in the layer listing and `kiln-image check-binaries` judges them
//! against the image's platform and file system.
//!
//! Hand-written over positioned reads rather than the `object` crate's
//! whole-file parse: only the header, the program headers, the interpreter
//! and the dynamic section's strings are read, a few KiB per binary, so a
//! layer of large binaries costs no extra pass over their bytes.

use std::io;

use serde::{Deserialize, Serialize};

/// ELF `e_type` values that can be run or loaded.
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// Bounds on what is read, so that a corrupt header cannot make the layer
/// action read (or allocate) much.
const MAX_PROGRAM_HEADERS: u64 = 1 << 20;
const MAX_DYNAMIC: u64 = 1 << 20;
const MAX_STRING: usize = 4096;
/// Linux reads this much of a script for its `#!` line (BINPRM_BUF_SIZE).
const SHEBANG_BUF: usize = 256;

/// Byte order of an ELF file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endian {
    Little,
    Big,
}

/// The facts of an ELF executable or shared object (`e_type` EXEC or DYN).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Elf {
    /// 32 or 64.
    pub class: u8,
    pub endian: Endian,
    /// `e_machine` (62: x86-64, 183: AArch64, …).
    pub machine: u16,
    /// PT_INTERP: the dynamic loader the kernel starts, e.g.
    /// `/lib64/ld-linux-x86-64.so.2`. None: static (or a shared library).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    /// DT_NEEDED, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needed: Vec<String>,
    /// DT_RUNPATH (or DT_RPATH when there is no RUNPATH, as ld.so does),
    /// split on `:`, `$ORIGIN` not expanded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runpath: Vec<String>,
    /// Why the program headers or dynamic section could not be read (the
    /// header could): the file cannot be judged beyond its machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A file that can be executed or loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    Elf(Elf),
    /// A `#!` script and its interpreter's path (empty when the line names none).
    Script(String),
}

/// Positioned reads of a file's bytes (a source file, a range of an
/// archive, or bytes in memory).
pub trait ReadAt {
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// The file's size in bytes.
    fn size(&self) -> u64;
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(<[u8]>::len(self));
        let n = buf.len().min(<[u8]>::len(self) - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
    fn size(&self) -> u64 {
        <[u8]>::len(self) as u64
    }
}

/// Reads exactly `len` bytes at `offset`; an error when the file is shorter.
fn read_exact<R: ReadAt + ?Sized>(r: &R, offset: u64, len: u64) -> Result<Vec<u8>, String> {
    let end = offset
        .checked_add(len)
        .filter(|&end| end <= r.size())
        .ok_or_else(|| format!("{len} bytes at offset {offset} are past the end of the file"))?;
    let mut buf = vec![0; (end - offset) as usize];
    let mut done = 0;
    while done < buf.len() {
        let n = r
            .read_at(&mut buf[done..], offset + done as u64)
            .map_err(|e| format!("reading at offset {}: {e}", offset + done as u64))?;
        if n == 0 {
            return Err(format!("the file ended at offset {}", offset + done as u64));
        }
        done += n;
    }
    Ok(buf)
}

struct Fields {
    endian: Endian,
}

impl Fields {
    fn u16(&self, b: &[u8], at: usize) -> u16 {
        let v = [b[at], b[at + 1]];
        match self.endian {
            Endian::Little => u16::from_le_bytes(v),
            Endian::Big => u16::from_be_bytes(v),
        }
    }
    fn u32(&self, b: &[u8], at: usize) -> u32 {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        match self.endian {
            Endian::Little => u32::from_le_bytes(v),
            Endian::Big => u32::from_be_bytes(v),
        }
    }
    fn u64(&self, b: &[u8], at: usize) -> u64 {
        let mut v = [0; 8];
        v.copy_from_slice(&b[at..at + 8]);
        match self.endian {
            Endian::Little => u64::from_le_bytes(v),
            Endian::Big => u64::from_be_bytes(v),
        }
    }
    /// A word: 4 bytes in a 32-bit file, 8 in a 64-bit one.
    fn word(&self, b: &[u8], at: usize, wide: bool) -> u64 {
        if wide {
            self.u64(b, at)
        } else {
            u64::from(self.u32(b, at))
        }
    }
}

struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// What `file` needs to run, or None when it is neither an ELF executable
/// or shared object nor a `#!` script. Errors are I/O errors reading it; a
/// malformed ELF file whose header reads is an [`Elf`] with `error` set.
pub fn probe<R: ReadAt + ?Sized>(file: &R) -> io::Result<Option<Program>> {
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < head.len() {
        let got = file.read_at(&mut head[n..], n as u64)?;
        if got == 0 {
            break;
        }
        n += got;
    }
    let head = &head[..n];
    if head.starts_with(b"#!") {
        return Ok(Some(Program::Script(shebang(file)?)));
    }
    if !head.starts_with(b"\x7fELF") || head.len() < 52 {
        return Ok(None);
    }
    let wide = match head[4] {
        1 => false,
        2 => true,
        _ => return Ok(None),
    };
    let endian = match head[5] {
        1 => Endian::Little,
        2 => Endian::Big,
        _ => return Ok(None),
    };
    if wide && head.len() < 64 {
        return Ok(None);
    }
    let f = Fields { endian };
    let e_type = f.u16(head, 16);
    if e_type != ET_EXEC && e_type != ET_DYN {
        // Relocatable objects, core dumps: not run or loaded as they are.
        return Ok(None);
    }
    let mut elf = Elf {
        class: if wide { 64 } else { 32 },
        endian,
        machine: f.u16(head, 18),
        interpreter: None,
        needed: Vec::new(),
        runpath: Vec::new(),
        error: None,
    };
    if let Err(e) = dynamic_facts(file, head, &f, wide, &mut elf) {
        elf.error = Some(e);
    }
    Ok(Some(Program::Elf(elf)))
}

fn dynamic_facts<R: ReadAt + ?Sized>(
    file: &R,
    head: &[u8],
    f: &Fields,
    wide: bool,
    elf: &mut Elf,
) -> Result<(), String> {
    let (phoff, phentsize, phnum) = if wide {
        (f.u64(head, 32), f.u16(head, 54), f.u16(head, 56))
    } else {
        (u64::from(f.u32(head, 28)), f.u16(head, 42), f.u16(head, 44))
    };
    let min_entsize = if wide { 56 } else { 32 };
    if phnum == 0 {
        return Ok(());
    }
    if usize::from(phentsize) < min_entsize {
        return Err(format!("program header size {phentsize} is too small"));
    }
    let table_len = u64::from(phentsize) * u64::from(phnum);
    if table_len > MAX_PROGRAM_HEADERS {
        return Err(format!("{phnum} program headers are too many"));
    }
    let table = read_exact(file, phoff, table_len).map_err(|e| format!("program headers: {e}"))?;
    let segments: Vec<Segment> = table
        .chunks_exact(usize::from(phentsize))
        .map(|p| {
            if wide {
                Segment {
                    kind: f.u32(p, 0),
                    offset: f.u64(p, 8),
                    vaddr: f.u64(p, 16),
                    filesz: f.u64(p, 32),
                }
            } else {
                Segment {
                    kind: f.u32(p, 0),
                    offset: u64::from(f.u32(p, 4)),
                    vaddr: u64::from(f.u32(p, 8)),
                    filesz: u64::from(f.u32(p, 16)),
                }
            }
        })
        .collect();
    if let Some(interp) = segments.iter().find(|s| s.kind == PT_INTERP) {
        let len = interp.filesz.min(MAX_STRING as u64);
        let bytes = read_exact(file, interp.offset, len).map_err(|e| format!("PT_INTERP: {e}"))?;
        elf.interpreter = Some(c_string(&bytes));
    }
    let Some(dynamic) = segments.iter().find(|s| s.kind == PT_DYNAMIC) else {
        return Ok(());
    };
    let len = dynamic.filesz.min(MAX_DYNAMIC);
    let bytes = read_exact(file, dynamic.offset, len).map_err(|e| format!("PT_DYNAMIC: {e}"))?;
    let entry = if wide { 16 } else { 8 };
    let mut strtab = None;
    let mut needed = Vec::new();
    let mut rpath = None;
    let mut runpath = None;
    for d in bytes.chunks_exact(entry) {
        let tag = f.word(d, 0, wide);
        let val = f.word(d, entry / 2, wide);
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed.push(val),
            DT_STRTAB => strtab = Some(val),
            DT_RPATH => rpath = Some(val),
            DT_RUNPATH => runpath = Some(val),
            _ => {}
        }
    }
    if needed.is_empty() && rpath.is_none() && runpath.is_none() {
        return Ok(());
    }
    let strtab = strtab.ok_or("the dynamic section has no DT_STRTAB")?;
    // DT_STRTAB is an address: the loaded segment holding it gives its offset.
    let base = segments
        .iter()
        .filter(|s| s.kind == PT_LOAD)
        .find(|s| strtab >= s.vaddr && strtab - s.vaddr < s.filesz)
        .map(|s| s.offset + (strtab - s.vaddr))
        .ok_or_else(|| format!("DT_STRTAB {strtab:#x} is in no loaded segment"))?;
    let string = |at: u64| -> Result<String, String> {
        let offset = base.checked_add(at).ok_or("string offset overflows")?;
        let len = (MAX_STRING as u64).min(file.size().saturating_sub(offset));
        let bytes = read_exact(file, offset, len).map_err(|e| format!("dynamic string: {e}"))?;
        Ok(c_string(&bytes))
    };
    for at in needed {
        elf.needed.push(string(at)?);
    }
    if let Some(at) = runpath.or(rpath) {
        elf.runpath = string(at)?
            .split(':')
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .collect();
    }
    Ok(())
}

/// Bytes up to the first NUL, as text (lossy: a path in a message).
fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The interpreter of a `#!` line, as the kernel reads it: after `#!` and
/// blanks, up to the next blank or the end of the line.
fn shebang<R: ReadAt + ?Sized>(file: &R) -> io::Result<String> {
    let mut buf = [0u8; SHEBANG_BUF];
    let n = file.read_at(&mut buf, 0)?;
    let line = &buf[2..n.max(2)];
    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len())];
    let text = String::from_utf8_lossy(line);
    Ok(text
        .trim_start_matches([' ', '\t'])
        .split([' ', '\t', '\r'])
        .next()
        .unwrap_or("")
        .to_string())
}

/// The name of an `e_machine`, for messages (`unknown` for others).
pub fn machine_name(machine: u16) -> &'static str {
    match machine {
        3 => "x86 (i386)",
        8 => "MIPS",
        20 => "PowerPC",
        21 => "PowerPC64",
        22 => "S/390",
        40 => "ARM",
        62 => "x86-64",
        183 => "AArch64",
        243 => "RISC-V",
        258 => "LoongArch",
        _ => "unknown",
    }
}

/// What an image of architecture `arch` (OCI names) runs:
/// `(e_machine, class, byte order)`. None: an architecture this check does
/// not know, which it then skips.
pub fn platform_elf(arch: &str) -> Option<(u16, u8, Endian)> {
    crate::platform::architecture(arch).map(|a| a.elf)
}

/// How an ELF file is described in messages: `x86-64 (64-bit, little-endian)`.
pub fn describe(machine: u16, class: u8, endian: Endian) -> String {
    let name = machine_name(machine);
    let name = if name == "unknown" {
        format!("machine {machine}")
    } else {
        name.to_string()
    };
    let order = match endian {
        Endian::Little => "little-endian",
        Endian::Big => "big-endian",
    };
    format!("{name} ({class}-bit, {order})")
}

#[cfg(test)]
pub mod fixtures {
    //! Minimal ELF files written field by field, for tests of every tool.

    use super::Endian;

    /// One ELF file: header, program headers (PT_LOAD of the whole file,
    /// PT_INTERP, PT_DYNAMIC) and the interpreter, dynamic section and
    /// string table after them.
    pub struct ElfSpec<'a> {
        pub wide: bool,
        pub endian: Endian,
        pub machine: u16,
        pub interpreter: Option<&'a str>,
        pub needed: &'a [&'a str],
        pub runpath: Option<&'a str>,
        /// DT_RPATH instead of DT_RUNPATH.
        pub rpath: bool,
    }

    impl Default for ElfSpec<'_> {
        fn default() -> Self {
            ElfSpec {
                wide: true,
                endian: Endian::Little,
                machine: 62,
                interpreter: None,
                needed: &[],
                runpath: None,
                rpath: false,
            }
        }
    }

    struct W {
        out: Vec<u8>,
        endian: Endian,
        wide: bool,
    }

    impl W {
        fn n(&mut self, v: u64, size: usize) {
            let bytes = match self.endian {
                Endian::Little => v.to_le_bytes()[..size].to_vec(),
                Endian::Big => v.to_be_bytes()[8 - size..].to_vec(),
            };
            self.out.extend(bytes);
        }
        fn word(&mut self, v: u64) {
            self.n(v, if self.wide { 8 } else { 4 });
        }
    }

    pub fn elf(spec: &ElfSpec) -> Vec<u8> {
        let (ehsize, phentsize) = if spec.wide { (64, 56) } else { (52, 32) };
        let dynamic = !spec.needed.is_empty() || spec.runpath.is_some();
        let phnum = 1 + usize::from(spec.interpreter.is_some()) + usize::from(dynamic);
        // Layout after the headers: interpreter, string table, dynamic.
        let interp_off = ehsize + phentsize * phnum;
        let interp = spec
            .interpreter
            .map(|i| format!("{i}\0").into_bytes())
            .unwrap_or_default();
        let mut strtab = vec![0u8];
        let mut needed_at = Vec::new();
        for n in spec.needed {
            needed_at.push(strtab.len() as u64);
            strtab.extend(n.as_bytes());
            strtab.push(0);
        }
        let runpath_at = spec.runpath.map(|r| {
            let at = strtab.len() as u64;
            strtab.extend(r.as_bytes());
            strtab.push(0);
            at
        });
        let strtab_off = interp_off + interp.len();
        let dyn_off = strtab_off + strtab.len();
        let entry = if spec.wide { 16 } else { 8 };
        let dyn_count = spec.needed.len() + usize::from(runpath_at.is_some()) + 2;
        let dyn_len = if dynamic { dyn_count * entry } else { 0 };
        let total = dyn_off + dyn_len;
        let vaddr = 0x400000u64;

        let mut w = W {
            out: Vec::new(),
            endian: spec.endian,
            wide: spec.wide,
        };
        w.out.extend(b"\x7fELF");
        w.out.push(if spec.wide { 2 } else { 1 });
        w.out
            .push(if spec.endian == Endian::Little { 1 } else { 2 });
        w.out.push(1);
        w.out.extend([0; 9]);
        w.n(if spec.interpreter.is_some() { 3 } else { 2 }, 2); // e_type
        w.n(u64::from(spec.machine), 2);
        w.n(1, 4); // e_version
        w.word(vaddr); // e_entry
        w.word(ehsize as u64); // e_phoff
        w.word(0); // e_shoff
        w.n(0, 4); // e_flags
        w.n(ehsize as u64, 2);
        w.n(phentsize as u64, 2);
        w.n(phnum as u64, 2);
        w.n(0, 2); // e_shentsize
        w.n(0, 2); // e_shnum
        w.n(0, 2); // e_shstrndx
        assert_eq!(w.out.len(), ehsize);
        let phdr = |w: &mut W, kind: u64, off: u64, len: u64| {
            if w.wide {
                w.n(kind, 4);
                w.n(4, 4); // p_flags
                w.word(off);
                w.word(vaddr + off);
                w.word(vaddr + off);
                w.word(len);
                w.word(len);
                w.word(8);
            } else {
                w.n(kind, 4);
                w.word(off);
                w.word(vaddr + off);
                w.word(vaddr + off);
                w.word(len);
                w.word(len);
                w.n(4, 4);
                w.word(8);
            }
        };
        phdr(&mut w, 1, 0, total as u64);
        if spec.interpreter.is_some() {
            phdr(&mut w, 3, interp_off as u64, interp.len() as u64);
        }
        if dynamic {
            phdr(&mut w, 2, dyn_off as u64, dyn_len as u64);
        }
        w.out.extend(&interp);
        w.out.extend(&strtab);
        if dynamic {
            for at in needed_at {
                w.word(1);
                w.word(at);
            }
            if let Some(at) = runpath_at {
                w.word(if spec.rpath { 15 } else { 29 });
                w.word(at);
            }
            w.word(5);
            w.word(vaddr + strtab_off as u64);
            w.word(0);
            w.word(0);
        }
        assert_eq!(w.out.len(), total);
        w.out
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{elf, ElfSpec};
    use super::*;

    fn facts(bytes: &[u8]) -> Elf {
        match probe(bytes).unwrap() {
            Some(Program::Elf(e)) => e,
            other => panic!("not an ELF: {other:?}"),
        }
    }

    #[test]
    fn static_binary_has_no_interpreter() {
        let e = facts(&elf(&ElfSpec::default()));
        assert_eq!((e.class, e.endian, e.machine), (64, Endian::Little, 62));
        assert_eq!(e.interpreter, None);
        assert!(e.needed.is_empty() && e.runpath.is_empty() && e.error.is_none());
    }

    #[test]
    fn dynamic_binary_names_interpreter_and_libraries() {
        let e = facts(&elf(&ElfSpec {
            interpreter: Some("/lib64/ld-linux-x86-64.so.2"),
            needed: &["libc.so.6", "libm.so.6"],
            runpath: Some("$ORIGIN/../lib:/opt/lib"),
            ..ElfSpec::default()
        }));
        assert_eq!(
            e.interpreter.as_deref(),
            Some("/lib64/ld-linux-x86-64.so.2")
        );
        assert_eq!(e.needed, ["libc.so.6", "libm.so.6"]);
        assert_eq!(e.runpath, ["$ORIGIN/../lib", "/opt/lib"]);
        assert_eq!(e.error, None);
    }

    #[test]
    fn rpath_is_read_without_runpath() {
        let e = facts(&elf(&ElfSpec {
            interpreter: Some("/lib/ld-linux-aarch64.so.1"),
            machine: 183,
            needed: &["libz.so.1"],
            runpath: Some("$ORIGIN"),
            rpath: true,
            ..ElfSpec::default()
        }));
        assert_eq!(e.machine, 183);
        assert_eq!(e.runpath, ["$ORIGIN"]);
    }

    #[test]
    fn class_and_byte_order() {
        let e = facts(&elf(&ElfSpec {
            wide: false,
            machine: 3,
            interpreter: Some("/lib/ld-linux.so.2"),
            needed: &["libc.so.6"],
            ..ElfSpec::default()
        }));
        assert_eq!((e.class, e.endian, e.machine), (32, Endian::Little, 3));
        assert_eq!(e.needed, ["libc.so.6"]);
        let e = facts(&elf(&ElfSpec {
            endian: Endian::Big,
            machine: 22,
            interpreter: Some("/lib/ld64.so.1"),
            needed: &["libc.so.6"],
            ..ElfSpec::default()
        }));
        assert_eq!((e.class, e.endian, e.machine), (64, Endian::Big, 22));
        assert_eq!(e.interpreter.as_deref(), Some("/lib/ld64.so.1"));
        assert_eq!(e.needed, ["libc.so.6"]);
    }

    #[test]
    fn truncated_elf_keeps_its_header_facts() {
        let mut bytes = elf(&ElfSpec {
            interpreter: Some("/lib64/ld-linux-x86-64.so.2"),
            needed: &["libc.so.6"],
            ..ElfSpec::default()
        });
        bytes.truncate(100);
        let e = facts(&bytes);
        assert_eq!(e.machine, 62);
        assert!(e.error.unwrap().contains("program headers"));
    }

    #[test]
    fn scripts_and_other_files() {
        let script = |s: &[u8]| match probe(s).unwrap() {
            Some(Program::Script(i)) => i,
            other => panic!("{other:?}"),
        };
        assert_eq!(script(b"#!/bin/sh\necho"), "/bin/sh");
        assert_eq!(script(b"#! /usr/bin/env python3 -u\n"), "/usr/bin/env");
        assert_eq!(script(b"#!/bin/bash\r\n"), "/bin/bash");
        assert_eq!(script(b"#!\n"), "");
        assert_eq!(probe(&b"hello"[..]).unwrap(), None);
        assert_eq!(probe(&b""[..]).unwrap(), None);
        assert_eq!(probe(&b"\x7fELF"[..]).unwrap(), None);
        // A relocatable object is not run.
        let mut obj = elf(&ElfSpec::default());
        obj[16] = 1;
        assert_eq!(probe(&obj[..]).unwrap(), None);
    }

    #[test]
    fn platforms_and_descriptions() {
        assert_eq!(platform_elf("arm64"), Some((183, 64, Endian::Little)));
        assert_eq!(platform_elf("s390x"), Some((22, 64, Endian::Big)));
        assert_eq!(platform_elf("wasm"), None);
        assert_eq!(
            describe(62, 64, Endian::Little),
            "x86-64 (64-bit, little-endian)"
        );
        assert_eq!(
            describe(9999, 32, Endian::Big),
            "machine 9999 (32-bit, big-endian)"
        );
    }
}
