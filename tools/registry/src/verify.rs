//! Checking streamed bytes against a digest and size as they pass.

use kiln_oci::Digest;
use sha2::{Digest as _, Sha256};

/// Hashes and counts bytes; `finish` compares with what was expected.
pub(crate) struct Verifier {
    hasher: Sha256,
    count: u64,
    digest: Digest,
    size: Option<u64>,
}

impl Verifier {
    pub(crate) fn new(digest: &Digest, size: Option<u64>) -> Verifier {
        Verifier {
            hasher: Sha256::new(),
            count: 0,
            digest: digest.clone(),
            size,
        }
    }

    /// Bytes taken so far.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Takes the next piece; an error as soon as there is more than `size`.
    pub(crate) fn update(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.count += bytes.len() as u64;
        if let Some(size) = self.size {
            if self.count > size {
                return Err(format!(
                    "blob {} is corrupt: the registry sent more than the {size} bytes \
                     of its descriptor",
                    self.digest
                ));
            }
        }
        self.hasher.update(bytes);
        Ok(())
    }

    /// Checks the total size and the digest; returns the size.
    pub(crate) fn finish(self) -> Result<u64, String> {
        if let Some(size) = self.size {
            if self.count != size {
                return Err(format!(
                    "blob {} is corrupt: the registry sent {} bytes, its descriptor says {size}",
                    self.digest, self.count
                ));
            }
        }
        let actual = format!("sha256:{}", hex::encode(self.hasher.finalize()));
        if actual != self.digest.to_string() {
            return Err(format!(
                "blob {} is corrupt: the bytes the registry sent have digest {actual}",
                self.digest
            ));
        }
        Ok(self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_size_and_digest() {
        let d = kiln_oci::sha256_bytes(b"hello");
        let mut v = Verifier::new(&d, Some(5));
        v.update(b"he").unwrap();
        v.update(b"llo").unwrap();
        assert_eq!(v.finish().unwrap(), 5);

        let mut v = Verifier::new(&d, Some(5));
        assert!(v
            .update(b"hello!")
            .unwrap_err()
            .contains("more than the 5 bytes"));
        let mut v = Verifier::new(&d, Some(5));
        v.update(b"hell").unwrap();
        assert!(v.finish().unwrap_err().contains("sent 4 bytes"));
        let mut v = Verifier::new(&d, None);
        v.update(b"hellO").unwrap();
        assert!(v.finish().unwrap_err().contains("have digest sha256:"));
    }
}
