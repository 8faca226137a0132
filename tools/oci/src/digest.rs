//! sha256 content digests.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

const PREFIX: &str = "sha256:";

/// A `sha256:<64 lowercase hex>` content digest. Other algorithms are refused:
/// every blob the tools write or read is addressed by sha256.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    // Invariant: exactly 64 lowercase hex characters.
    hex: String,
}

/// Why a string is not a valid digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected \"sha256:\" followed by 64 lowercase hex digits")]
    Malformed(String),
    #[error("unsupported digest algorithm in {0:?}: only sha256 is supported")]
    Algorithm(String),
}

impl Digest {
    /// The 64 lowercase hex digits, without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The algorithm, always `sha256`.
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }

    fn from_raw(raw: [u8; 32]) -> Digest {
        Digest {
            hex: hex::encode(raw),
        }
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((algo, hex)) = s.split_once(':') else {
            return Err(DigestError::Malformed(s.to_string()));
        };
        if algo != "sha256" {
            // Distinguish "well-formed but other algorithm" from garbage, so
            // that a sha512 base image gets a useful message.
            let looks_like_algo = !algo.is_empty()
                && algo
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b));
            return Err(if looks_like_algo {
                DigestError::Algorithm(s.to_string())
            } else {
                DigestError::Malformed(s.to_string())
            });
        }
        let valid = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(DigestError::Malformed(s.to_string()));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A running sha256 and byte count: the one hashing state behind
/// [`HashingWriter`], [`HashingReader`] and [`Verifier`].
#[derive(Clone, Default)]
pub struct Hasher {
    sha: Sha256,
    count: u64,
}

impl Hasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.count += bytes.len() as u64;
    }

    /// Bytes hashed so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The digest and the byte count.
    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_raw(self.sha.finalize().into()), self.count)
    }
}

/// A writer that hashes and counts every byte that passes through it, so a
/// digest can be taken in the same pass that writes the data.
pub struct HashingWriter<W: Write> {
    inner: W,
    hash: Hasher,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: Hasher::new(),
        }
    }

    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.hash.count()
    }

    /// Returns the inner writer (not flushed), the digest and the byte count.
    pub fn finish(self) -> (W, Digest, u64) {
        let (digest, count) = self.hash.finish();
        (self.inner, digest, count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Only hash what the inner writer accepted, so short writes stay exact.
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts every byte read through it.
pub struct HashingReader<R: Read> {
    inner: R,
    hash: Hasher,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hash: Hasher::new(),
        }
    }

    /// The inner reader, the digest and the count of the bytes read so far.
    pub fn finish(self) -> (R, Digest, u64) {
        let (digest, count) = self.hash.finish();
        (self.inner, digest, count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// Bytes that are not the blob their descriptor names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("blob {digest} is corrupt: {why}")]
pub struct Corrupt {
    pub digest: Digest,
    pub why: String,
}

/// Checks bytes against an expected digest (and size, when known) as they
/// pass, for blobs that arrive in pieces (registry downloads).
pub struct Verifier {
    hash: Hasher,
    digest: Digest,
    size: Option<u64>,
}

impl Verifier {
    pub fn new(digest: &Digest, size: Option<u64>) -> Verifier {
        Verifier {
            hash: Hasher::new(),
            digest: digest.clone(),
            size,
        }
    }

    /// Bytes taken so far.
    pub fn count(&self) -> u64 {
        self.hash.count()
    }

    fn corrupt(&self, why: String) -> Corrupt {
        Corrupt {
            digest: self.digest.clone(),
            why,
        }
    }

    /// Takes the next piece; an error as soon as there is more than `size`.
    pub fn update(&mut self, bytes: &[u8]) -> Result<(), Corrupt> {
        let count = self.count() + bytes.len() as u64;
        if let Some(size) = self.size.filter(|&size| count > size) {
            return Err(self.corrupt(format!(
                "more than the {size} bytes of its descriptor arrived"
            )));
        }
        self.hash.update(bytes);
        Ok(())
    }

    /// Checks the total size and the digest; returns the size.
    pub fn finish(self) -> Result<u64, Corrupt> {
        let count = self.count();
        if let Some(size) = self.size.filter(|&size| count != size) {
            return Err(self.corrupt(format!("{count} bytes arrived, its descriptor says {size}")));
        }
        let (actual, _) = self.hash.clone().finish();
        if actual != self.digest {
            return Err(self.corrupt(format!("the bytes that arrived have digest {actual}")));
        }
        Ok(count)
    }
}

/// The sha256 digest of a byte slice.
pub fn sha256_bytes(bytes: &[u8]) -> Digest {
    Digest::from_raw(Sha256::digest(bytes).into())
}

/// The sha256 digest and size of a file, read in a streaming fashion.
pub fn sha256_file(path: &Path) -> anyhow::Result<(Digest, u64)> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = HashingWriter::new(io::sink());
    io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    let (_, digest, size) = hasher.finish();
    Ok((digest, size))
}

/// Reads everything from `reader`, returning its digest and size.
pub fn sha256_reader(mut reader: impl Read) -> io::Result<(Digest, u64)> {
    let mut hasher = HashingWriter::new(io::sink());
    io::copy(&mut reader, &mut hasher)?;
    let (_, digest, size) = hasher.finish();
    Ok((digest, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn verifier_checks_size_and_digest() {
        let d = sha256_bytes(b"hello");
        let mut v = Verifier::new(&d, Some(5));
        v.update(b"he").unwrap();
        v.update(b"llo").unwrap();
        assert_eq!(v.finish().unwrap(), 5);

        let mut v = Verifier::new(&d, Some(5));
        let e = v.update(b"hello!").unwrap_err().to_string();
        assert_eq!(
            e,
            format!("blob {d} is corrupt: more than the 5 bytes of its descriptor arrived")
        );
        let mut v = Verifier::new(&d, Some(5));
        v.update(b"hell").unwrap();
        assert!(v
            .finish()
            .unwrap_err()
            .to_string()
            .ends_with("4 bytes arrived, its descriptor says 5"));
        let mut v = Verifier::new(&d, None);
        v.update(b"hellO").unwrap();
        assert_eq!(
            v.finish().unwrap_err().why,
            format!(
                "the bytes that arrived have digest {}",
                sha256_bytes(b"hellO")
            )
        );
    }

    #[test]
    fn hashing_reader_and_writer_agree() {
        let mut r = HashingReader::new(&b"some bytes"[..]);
        let mut w = HashingWriter::new(Vec::new());
        io::copy(&mut r, &mut w).unwrap();
        let (_, read, n) = r.finish();
        let (bytes, written, m) = w.finish();
        assert_eq!((read.clone(), n), (written, m));
        assert_eq!((read, n), (sha256_bytes(&bytes), 10));
    }

    #[test]
    fn digest_of_empty_input() {
        assert_eq!(sha256_bytes(b"").to_string(), EMPTY);
    }

    #[test]
    fn parse_round_trips() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.hex(), &EMPTY[7..]);
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{EMPTY}\""));
        let back: Digest = serde_json::from_str(&format!("\"{EMPTY}\"")).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn parse_errors() {
        let upper = EMPTY.to_uppercase().replace("SHA256", "sha256");
        let cases = [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            &upper,
            &format!("{EMPTY}0"),
            &EMPTY.replace("sha256:", "sha256:g")[..71],
            &EMPTY.replace("sha256:", "SHA256:"),
            &EMPTY[7..],
        ];
        for case in cases {
            let err = case.parse::<Digest>().unwrap_err();
            assert!(
                matches!(err, DigestError::Malformed(_)),
                "{case:?}: {err:?}"
            );
            assert!(err.to_string().contains("64 lowercase hex"), "{err}");
        }
        let err = "sha512:abcd".parse::<Digest>().unwrap_err();
        assert_eq!(err, DigestError::Algorithm("sha512:abcd".into()));
        assert!(err.to_string().contains("only sha256"));
        assert!(serde_json::from_str::<Digest>("\"sha256:00\"").is_err());
    }

    #[test]
    fn hashing_writer_counts_and_hashes() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (inner, digest, n) = w.finish();
        assert_eq!(inner, b"hello world");
        assert_eq!(n, 11);
        assert_eq!(digest, sha256_bytes(b"hello world"));
    }

    #[test]
    fn file_digest_matches_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data = vec![7u8; 200_000];
        std::fs::write(&p, &data).unwrap();
        let (d, n) = sha256_file(&p).unwrap();
        assert_eq!(d, sha256_bytes(&data));
        assert_eq!(n, 200_000);
        let err = sha256_file(&dir.path().join("missing")).unwrap_err();
        assert!(format!("{err:#}").contains("missing"));
    }
}
