//! Reading a layer blob as its uncompressed tar stream (gzip, zstd or plain),
//! for the legacy docker-save layout whose `layer.tar` files are uncompressed.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use anyhow::{bail, Context};
use kiln_oci::compression::{read_up_to, Compression as Detected, MAGIC_LEN};
use kiln_oci::{Digest, HashingWriter};

/// How a layer blob is compressed, told by its first bytes (not its media
/// type, which registries and old tools sometimes get wrong).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Reads the first bytes of `path` to tell its compression.
pub fn detect(path: &Path) -> anyhow::Result<Compression> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut head = [0u8; MAGIC_LEN];
    let n =
        read_up_to(&mut file, &mut head).with_context(|| format!("reading {}", path.display()))?;
    match Detected::detect(&head[..n]) {
        Detected::Gzip => Ok(Compression::Gzip),
        Detected::Zstd => Ok(Compression::Zstd),
        Detected::Xz | Detected::Bzip2 => bail!(
            "{} is xz or bzip2 compressed; only gzip, zstd and uncompressed layers can be loaded",
            path.display()
        ),
        Detected::None => Ok(Compression::None),
    }
}

/// The uncompressed content of the layer blob at `path`, streamed.
pub fn open(path: &Path, compression: Compression) -> anyhow::Result<Box<dyn Read + Send>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let file = BufReader::with_capacity(256 * 1024, file);
    let format = match compression {
        Compression::None => Detected::None,
        Compression::Gzip => Detected::Gzip,
        Compression::Zstd => Detected::Zstd,
    };
    kiln_oci::compression::decoder(format, file)
        .with_context(|| format!("starting to decompress {}", path.display()))
}

/// The sha256 and size of the uncompressed content of the layer at `path`,
/// in one streaming pass (nothing is kept).
pub fn measure(path: &Path, compression: Compression) -> anyhow::Result<(Digest, u64)> {
    let mut reader = open(path, compression)?;
    let mut hash = HashingWriter::new(io::sink());
    io::copy(&mut reader, &mut hash)
        .with_context(|| format!("decompressing {}", path.display()))?;
    let (_, digest, size) = hash.finish();
    Ok((digest, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use kiln_oci::sha256_bytes;

    fn content() -> Vec<u8> {
        (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn detects_and_decompresses_every_kind() {
        let dir = tempfile::tempdir().unwrap();
        let data = content();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, &data).unwrap();
        let gz = dir.path().join("gz");
        // Two gzip members: one stream.
        let mut bytes = Vec::new();
        for half in [&data[..1000], &data[1000..]] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(half).unwrap();
            bytes.extend(e.finish().unwrap());
        }
        std::fs::write(&gz, bytes).unwrap();
        let zst = dir.path().join("zst");
        std::fs::write(&zst, zstd::stream::encode_all(&data[..], 3).unwrap()).unwrap();

        for (path, kind) in [
            (&plain, Compression::None),
            (&gz, Compression::Gzip),
            (&zst, Compression::Zstd),
        ] {
            assert_eq!(detect(path).unwrap(), kind, "{}", path.display());
            assert_eq!(
                measure(path, kind).unwrap(),
                (sha256_bytes(&data), data.len() as u64)
            );
            let mut out = Vec::new();
            open(path, kind).unwrap().read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
        }

        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(detect(&empty).unwrap(), Compression::None);

        let xz = dir.path().join("xz");
        std::fs::write(&xz, [0xfd, b'7', b'z', b'X', b'Z', 0, 1, 2]).unwrap();
        let err = format!("{:#}", detect(&xz).unwrap_err());
        assert!(err.contains("xz or bzip2"), "{err}");
    }

    #[test]
    fn corrupt_gzip_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.gz");
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&content()).unwrap();
        let mut bytes = e.finish().unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&path, bytes).unwrap();
        let err = format!("{:#}", measure(&path, Compression::Gzip).unwrap_err());
        assert!(err.contains("broken.gz"), "{err}");
    }
}
