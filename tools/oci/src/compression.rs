//! The compression of a stream, told from its first bytes (never from a file
//! name or a media type, which tools and registries sometimes get wrong).

use std::io::{self, BufRead, Read};

/// A stream's compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
}

/// How many leading bytes `Compression::detect` needs to tell every format.
pub const MAGIC_LEN: usize = 6;

impl Compression {
    /// The compression whose magic bytes `head` starts with; `None` otherwise.
    pub fn detect(head: &[u8]) -> Compression {
        match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            // A zstd skippable frame (pzstd and seekable zstd start with one).
            [0x50..=0x5f, 0x2a, 0x4d, 0x18, ..] => Compression::Zstd,
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Compression::Xz,
            [b'B', b'Z', b'h', ..] => Compression::Bzip2,
            _ => Compression::None,
        }
    }

    /// The name used in messages: `gzip`, `zstd`, `xz`, `bzip2` or `none`.
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Xz => "xz",
            Compression::Bzip2 => "bzip2",
        }
    }
}

/// log2 of the largest zstd window accepted (see [`decoder`]).
pub const ZSTD_WINDOW_LOG_MAX: u32 = 29;

/// The one decompressor factory of the tools: `input`'s content, streamed,
/// for a stream compressed with `format`.
/// - gzip: every member (several members one after the other are one
///   stream, as Go's reader, which registries' images are written for,
///   reads them);
/// - zstd: windows up to 512 MiB (`zstd --long=29`); a frame that asks for
///   more is an error before anything is allocated for it;
/// - xz: every stream of a multi-stream file;
/// - none: `input` as it is.
///
/// bzip2 is recognised (for messages) but not decompressed.
pub fn decoder<'a, R: BufRead + Send + 'a>(
    format: Compression,
    input: R,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    Ok(match format {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => {
            let mut z = zstd::stream::read::Decoder::with_buffer(input)?;
            // The decoder allocates the window a frame header asks for, so an
            // 85-byte frame could make us reserve 2 GiB (found by fuzzing).
            // 512 MiB is what Docker's and containerd's zstd decoder
            // (klauspost/compress) accept by default: a layer with a larger
            // window would not pull anywhere anyway.
            z.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(z)
        }
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(input)),
        Compression::Bzip2 => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "bzip2-compressed data is not supported (only gzip, zstd and xz)",
            ))
        }
    })
}

/// Reads until `buf` is full or the input ends; returns the count.
pub fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats_from_bytes() {
        assert_eq!(
            Compression::detect(&[0x1f, 0x8b, 8, 0, 0, 0]),
            Compression::Gzip
        );
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0]),
            Compression::Zstd
        );
        assert_eq!(
            Compression::detect(&[0x50, 0x2a, 0x4d, 0x18, 0, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"\xfd7zXZ\0"), Compression::Xz);
        assert_eq!(Compression::detect(b"BZh91A"), Compression::Bzip2);
        assert_eq!(Compression::detect(b"hello/"), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
    }

    #[test]
    fn decoders_round_trip_and_bound_zstd_windows() {
        use std::io::Write;
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let read = |format, bytes: &[u8]| {
            let mut out = Vec::new();
            decoder(format, bytes)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            out
        };
        let mut gz = Vec::new();
        for half in data.chunks(data.len() / 2) {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(half).unwrap();
            gz.extend(e.finish().unwrap());
        }
        assert_eq!(read(Compression::Gzip, &gz), data, "two gzip members");
        let long = |window_log| {
            let mut z = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
            z.long_distance_matching(true).unwrap();
            z.window_log(window_log).unwrap();
            z.write_all(&data).unwrap();
            z.finish().unwrap()
        };
        assert_eq!(read(Compression::Zstd, &long(29)), data, "zstd --long=29");
        // A frame asking for a 1 GiB window is refused, not allocated.
        let mut out = Vec::new();
        let refused = decoder(Compression::Zstd, &long(30)[..])
            .unwrap()
            .read_to_end(&mut out);
        assert!(refused.is_err(), "zstd --long=30 was decoded");
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&data).unwrap();
        assert_eq!(read(Compression::Xz, &xz.finish().unwrap()), data);
        assert_eq!(read(Compression::None, &data), data);
        assert!(decoder(Compression::Bzip2, &b"BZh9"[..]).is_err());
    }

    #[test]
    fn read_up_to_stops_at_the_end() {
        let mut buf = [0u8; 6];
        assert_eq!(read_up_to(&mut &b"abc"[..], &mut buf).unwrap(), 3);
        assert_eq!(&buf[..3], b"abc");
        assert_eq!(read_up_to(&mut &b"abcdefgh"[..], &mut buf).unwrap(), 6);
    }
}
