//! Deterministic parallel gzip and zstd encoders for layer blobs.
//!
//! The input is cut into fixed-size chunks by position ([`GZIP_CHUNK`],
//! [`ZSTD_CHUNK`]); workers compress chunks independently and a writer
//! thread puts the results back in order, hashes them (sha256: the blob's
//! digest) and writes them out. What a chunk becomes depends only on its
//! bytes, its position and the settings, never on the number of workers or
//! on timing, so the blob is the same on every machine.
//!
//! - gzip: as pigz does, one gzip member whose deflate stream is the
//!   concatenation of the chunks' raw deflate streams. Every chunk is
//!   primed with the previous 32 KiB of input (so matches reach back across
//!   the cut) and ends with a sync flush (an empty stored block, byte
//!   aligned) except the last one, which ends the stream. A chunk whose
//!   deflate output is not smaller than storing it is written as stored
//!   blocks instead (already-compressed content costs 5 bytes per 64 KiB).
//!   The CRC-32 of the trailer is combined from the chunks' CRCs.
//! - zstd: one frame per chunk, concatenated (the format allows any number
//!   of frames; every decoder reads them as one stream). zstd itself writes
//!   raw blocks where compression gains nothing.
//!
//! Hand-written on top of flate2's raw deflate (`Compress` with
//! `set_dictionary`) and zstd's bulk compressor because neither crate has a
//! parallel encoder with output independent of the thread count (pigz's
//! format is not available as a crate; zstd's own multithreading needs the
//! `zstdmt` build and adds one more thing whose determinism must be kept).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, FlushCompress, Status};

use crate::digest::{Digest, HashingWriter};

/// gzip chunk size (as pigz's default block size).
pub const GZIP_CHUNK: usize = 128 * 1024;
/// zstd chunk size: each chunk is an independent frame, so chunks are
/// larger than gzip's to keep matches within a frame.
pub const ZSTD_CHUNK: usize = 4 * 1024 * 1024;
/// The deflate window: how much earlier input primes a gzip chunk.
const DICTIONARY: usize = 32 * 1024;
/// Largest stored deflate block.
const STORED_MAX: usize = 65_535;

/// gzip's default and highest level. The defaults are part of the contract:
/// changing one changes every layer digest.
pub const GZIP_LEVELS: Levels = Levels { default: 6, max: 9 };
/// zstd's default and highest level (levels start at 1).
pub const ZSTD_LEVELS: Levels = Levels {
    default: 3,
    max: 19,
};

/// A compressor's levels: 1 to `max`, `default` when none is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Levels {
    pub default: u32,
    pub max: u32,
}

/// At most this many compressing threads per layer (the KilnLayer action
/// declares as many CPUs in its `resource_set`).
pub const MAX_WORKERS: usize = 4;

/// The compressed format and its level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// gzip level 1 to 9.
    Gzip(u32),
    /// zstd level 1 to 19.
    Zstd(u32),
}

impl Codec {
    /// The chunk size of this codec.
    pub fn chunk_size(self) -> usize {
        match self {
            Codec::Gzip(_) => GZIP_CHUNK,
            Codec::Zstd(_) => ZSTD_CHUNK,
        }
    }
}

/// The number of workers to use: this process's CPUs (its affinity mask,
/// so `taskset` is honoured), at most `max`, at least 1.
pub fn default_workers(max: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, max.max(1))
}

/// What the writer thread returns: the output, the digest and size of what
/// was written to it.
pub struct Encoded<W> {
    pub out: W,
    pub digest: Digest,
    pub size: u64,
}

struct Job {
    index: u64,
    /// The previous chunk's last 32 KiB (gzip only).
    dictionary: Vec<u8>,
    data: Vec<u8>,
    last: bool,
}

struct Done {
    index: u64,
    bytes: Vec<u8>,
    /// CRC-32 of the chunk's input (gzip only).
    crc: crc32fast::Hasher,
    input_len: u64,
}

/// A [`Write`] that compresses on worker threads; [`ParallelEncoder::finish`]
/// ends the stream and returns the output with its digest and size.
pub struct ParallelEncoder<W: Write + Send + 'static> {
    codec: Codec,
    chunk: usize,
    buffer: Vec<u8>,
    /// The last 32 KiB of the chunk sent before `buffer`.
    tail: Vec<u8>,
    next_index: u64,
    jobs: Option<SyncSender<Job>>,
    /// One token per chunk allowed in flight (sent, not yet written out):
    /// bounds memory whatever the workers' speed.
    tokens: Receiver<()>,
    workers: Vec<JoinHandle<()>>,
    writer: Option<JoinHandle<io::Result<Encoded<W>>>>,
}

impl<W: Write + Send + 'static> ParallelEncoder<W> {
    /// Starts `workers` compressing threads (at least 1) and the writer
    /// thread, which writes into `out`.
    pub fn new(codec: Codec, workers: usize, out: W) -> io::Result<ParallelEncoder<W>> {
        Self::with_chunk_size(codec, codec.chunk_size(), workers, out)
    }

    /// As [`ParallelEncoder::new`] with another chunk size (tests use small
    /// chunks; the chunk size is part of what decides the bytes).
    pub fn with_chunk_size(
        codec: Codec,
        chunk: usize,
        workers: usize,
        out: W,
    ) -> io::Result<ParallelEncoder<W>> {
        let workers = workers.max(1);
        let in_flight = 2 * workers + 2;
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(workers);
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let (done_tx, done_rx) = mpsc::channel::<io::Result<Done>>();
        let (token_tx, token_rx) = mpsc::sync_channel::<()>(in_flight);
        for _ in 0..in_flight {
            token_tx
                .send(())
                .map_err(|_| io::Error::other("the encoder's token channel closed"))?;
        }
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let jobs_rx = jobs_rx.clone();
            let done_tx = done_tx.clone();
            handles.push(std::thread::spawn(move || {
                let mut state = ChunkCompressor::new(codec);
                loop {
                    // The lock is held only while waiting for one job.
                    let job = match jobs_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok(job) = job else { return };
                    let result = state.compress(&job).map(|(bytes, crc)| Done {
                        index: job.index,
                        bytes,
                        crc,
                        input_len: job.data.len() as u64,
                    });
                    if done_tx.send(result).is_err() {
                        return;
                    }
                }
            }));
        }
        drop(done_tx);
        let writer = std::thread::spawn(move || write_in_order(codec, out, done_rx, token_tx));
        Ok(ParallelEncoder {
            codec,
            chunk: chunk.max(1),
            buffer: Vec::with_capacity(chunk),
            tail: Vec::new(),
            next_index: 0,
            jobs: Some(jobs_tx),
            tokens: token_rx,
            workers: handles,
            writer: Some(writer),
        })
    }

    fn send(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.chunk));
        let dictionary = std::mem::take(&mut self.tail);
        if matches!(self.codec, Codec::Gzip(_)) {
            self.tail = data[data.len().saturating_sub(DICTIONARY)..].to_vec();
        }
        let job = Job {
            index: self.next_index,
            dictionary,
            data,
            last,
        };
        self.next_index += 1;
        let sent = self.tokens.recv().is_ok()
            && self
                .jobs
                .as_ref()
                .is_some_and(|jobs| jobs.send(job).is_ok());
        if sent {
            Ok(())
        } else {
            // The writer stopped: its error says why.
            Err(self.stop().err().unwrap_or_else(|| {
                io::Error::other("the compressing threads stopped unexpectedly")
            }))
        }
    }

    /// Closes the job queue, joins every thread and returns the writer's
    /// result.
    fn stop(&mut self) -> io::Result<Encoded<W>> {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        match self.writer.take() {
            Some(w) => w
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the blob writer thread panicked"))),
            None => Err(io::Error::other("the encoder was already stopped")),
        }
    }

    /// Compresses what is buffered as the last chunk, waits for every chunk
    /// to be written, and returns the output (not flushed), the digest and
    /// the size of the compressed stream.
    pub fn finish(mut self) -> io::Result<Encoded<W>> {
        self.send(true)?;
        self.stop()
    }
}

impl<W: Write + Send + 'static> Write for ParallelEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // A full chunk is sent only once more input arrives, so the last
        // chunk (which ends the stream) is known at `finish`.
        if self.buffer.len() == self.chunk {
            self.send(false)?;
        }
        let n = buf.len().min(self.chunk - self.buffer.len());
        self.buffer.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write + Send + 'static> Drop for ParallelEncoder<W> {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = self.stop();
        }
    }
}

/// Receives compressed chunks in any order and writes them in order,
/// framed for `codec`, into `out`.
fn write_in_order<W: Write>(
    codec: Codec,
    out: W,
    done: Receiver<io::Result<Done>>,
    tokens: SyncSender<()>,
) -> io::Result<Encoded<W>> {
    let mut out = HashingWriter::new(out);
    if let Codec::Gzip(level) = codec {
        out.write_all(&gzip_header(level))?;
    }
    let mut crc = crc32fast::Hasher::new();
    let mut input_len: u64 = 0;
    let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
    let mut next = 0u64;
    for result in done {
        let chunk = result?;
        pending.insert(chunk.index, chunk);
        while let Some(chunk) = pending.remove(&next) {
            out.write_all(&chunk.bytes)?;
            input_len += chunk.input_len;
            crc.combine(&chunk.crc);
            next += 1;
            // The encoder may have stopped sending; a closed channel is fine.
            let _ = tokens.send(());
        }
    }
    if !pending.is_empty() {
        return Err(io::Error::other("a compressed chunk went missing"));
    }
    if let Codec::Gzip(_) = codec {
        out.write_all(&crc.finalize().to_le_bytes())?;
        // ISIZE: the input length modulo 2^32, as the format defines it.
        out.write_all(&((input_len & 0xffff_ffff) as u32).to_le_bytes())?;
    }
    let (out, digest, size) = out.finish();
    Ok(Encoded { out, digest, size })
}

/// The 10-byte gzip header: no name, mtime 0, OS "unknown" (255), and the
/// XFL byte gzip writes for the level, so nothing of the host is recorded.
fn gzip_header(level: u32) -> [u8; 10] {
    let xfl = match level {
        9 => 2,
        1 => 4,
        _ => 0,
    };
    [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
}

/// A worker's compressor. A zstd context is reused from chunk to chunk
/// (each frame starts afresh); deflate gets a new one for every chunk,
/// because a reset one can remember the stream it was cut off in (a chunk
/// abandoned for stored blocks), and the bytes would then depend on which
/// worker took which chunk.
enum ChunkCompressor {
    Gzip(u32),
    Zstd(u32, Option<zstd::bulk::Compressor<'static>>),
}

impl ChunkCompressor {
    fn new(codec: Codec) -> ChunkCompressor {
        match codec {
            Codec::Gzip(level) => ChunkCompressor::Gzip(level),
            Codec::Zstd(level) => ChunkCompressor::Zstd(level, None),
        }
    }

    fn compress(&mut self, job: &Job) -> io::Result<(Vec<u8>, crc32fast::Hasher)> {
        let mut crc = crc32fast::Hasher::new();
        match self {
            ChunkCompressor::Gzip(level) => {
                crc.update(&job.data);
                Ok((deflate_chunk(*level, job)?, crc))
            }
            ChunkCompressor::Zstd(level, compressor) => {
                let c = match compressor {
                    Some(c) => c,
                    None => compressor.insert(zstd_compressor(*level)?),
                };
                Ok((c.compress(&job.data)?, crc))
            }
        }
    }
}

fn zstd_compressor(level: u32) -> io::Result<zstd::bulk::Compressor<'static>> {
    // The level is at most 19, so the cast is exact.
    let mut c = zstd::bulk::Compressor::new(level as i32)?;
    // A frame header with only what the data decides: no checksum,
    // dictionary id or content size.
    c.include_checksum(false)?;
    c.include_dictid(false)?;
    c.include_contentsize(false)?;
    Ok(c)
}

/// One gzip chunk: raw deflate primed with the dictionary, ending with a
/// sync flush (or the end of the stream for the last chunk); or stored
/// blocks when that is not larger.
fn deflate_chunk(level: u32, job: &Job) -> io::Result<Vec<u8>> {
    if looks_random(&job.data) {
        return Ok(stored_blocks(&job.data, job.last));
    }
    // Raw deflate (no zlib header): the gzip framing is ours.
    let mut deflate = Compress::new(flate2::Compression::new(level), false);
    if !job.dictionary.is_empty() {
        deflate
            .set_dictionary(&job.dictionary)
            .map_err(io::Error::other)?;
    }
    let stored = stored_len(job.data.len());
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    // Deflate never needs more than the stored size plus a little, but the
    // output grows as needed anyway.
    let mut out = Vec::with_capacity(stored + 64);
    let start_in = deflate.total_in();
    loop {
        let consumed = (deflate.total_in() - start_in) as usize;
        let status = deflate
            .compress_vec(&job.data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let consumed = (deflate.total_in() - start_in) as usize;
        let done = consumed == job.data.len()
            && match flush {
                FlushCompress::Finish => status == Status::StreamEnd,
                // Sync output is complete when it left room unused.
                _ => out.len() < out.capacity(),
            };
        if done {
            break;
        }
        if out.len() >= stored {
            // Not smaller than storing: stop early, the stored form wins.
            break;
        }
        out.reserve(out.capacity().max(64 * 1024));
    }
    if out.len() >= stored {
        return Ok(stored_blocks(&job.data, job.last));
    }
    Ok(out)
}

/// Whether `data` has byte frequencies so close to uniform that Huffman
/// coding could save at most about 0.25% (already-compressed content:
/// archives, images, media), so that deflating it is skipped: on such
/// chunks deflate costs more than on text and gains nothing, as repeats
/// would have to lie within its 32 KiB window. The test is Pearson's
/// chi-square against the uniform distribution, chi2 / len <= 1/36 (an
/// entropy deficit of about 0.02 bits a byte), in exact integer arithmetic
/// so that every machine decides alike. Chunks under 16 KiB are never
/// skipped (their statistic is too noisy).
fn looks_random(data: &[u8]) -> bool {
    let n = data.len() as u64;
    if n < 16 * 1024 {
        return false;
    }
    let mut counts = [0u64; 256];
    for &b in data {
        counts[usize::from(b)] += 1;
    }
    let squares: u64 = counts.iter().map(|c| c * c).sum();
    // chi2 = (256 * squares - n^2) / n; chi2 / n <= 1/36 without division.
    36 * (256 * squares - n * n) <= n * n
}

/// The size of `len` bytes as stored deflate blocks (at least one block).
fn stored_len(len: usize) -> usize {
    len + 5 * len.div_ceil(STORED_MAX).max(1)
}

/// `data` as stored deflate blocks, the final one marked BFINAL when
/// `last`; byte aligned, as the previous chunk ended with a sync flush.
fn stored_blocks(data: &[u8], last: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(stored_len(data.len()));
    let mut pieces: Vec<&[u8]> = data.chunks(STORED_MAX).collect();
    if pieces.is_empty() {
        pieces.push(&[]);
    }
    let count = pieces.len();
    for (i, piece) in pieces.into_iter().enumerate() {
        let len = piece.len() as u16;
        out.push(u8::from(last && i + 1 == count));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_bytes;
    use std::io::Read;

    /// Deterministic test input: text, random bytes and zeros, so that
    /// chunks are compressed, stored and highly compressible.
    fn sample(len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        while out.len() < len {
            // Regions of 50 KB, and every 7th one random but for a few
            // bytes of text (deflate then gains nothing and is abandoned).
            let region = (out.len() / 50_000) % 3;
            if (out.len() / 50_000) % 7 == 6 && out.len() % 50_000 < 100 {
                out.extend_from_slice(b"some text ");
                continue;
            }
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match region {
                0 => out.extend_from_slice(format!("line {} of some text\n", x % 97).as_bytes()),
                1 => out.extend_from_slice(&x.to_le_bytes()),
                _ => out.extend_from_slice(&[0u8; 64]),
            }
        }
        out.truncate(len);
        out
    }

    fn encode(codec: Codec, chunk: usize, workers: usize, data: &[u8], piece: usize) -> Vec<u8> {
        let mut e = ParallelEncoder::with_chunk_size(codec, chunk, workers, Vec::new()).unwrap();
        for p in data.chunks(piece.max(1)) {
            e.write_all(p).unwrap();
        }
        let done = e.finish().unwrap();
        assert_eq!(done.digest, sha256_bytes(&done.out));
        assert_eq!(done.size, done.out.len() as u64);
        done.out
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut d = flate2::read::GzDecoder::new(bytes);
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        // One member: nothing follows it.
        assert!(d.into_inner().is_empty());
        out
    }

    fn unzstd(bytes: &[u8]) -> Vec<u8> {
        zstd::stream::decode_all(bytes).unwrap()
    }

    #[test]
    fn same_bytes_with_1_2_and_7_workers() {
        let data = sample(3_000_000);
        for codec in [Codec::Gzip(6), Codec::Gzip(1), Codec::Zstd(3)] {
            let chunk = match codec {
                Codec::Gzip(_) => 100_000,
                Codec::Zstd(_) => 300_000,
            };
            let one = encode(codec, chunk, 1, &data, 65_536);
            for workers in [2, 7] {
                // Written in other piece sizes too: only positions count.
                assert_eq!(one, encode(codec, chunk, workers, &data, 4099), "{codec:?}");
            }
            let back = match codec {
                Codec::Gzip(_) => gunzip(&one),
                Codec::Zstd(_) => unzstd(&one),
            };
            assert!(back == data, "{codec:?} round trip");
            assert!(one.len() < data.len() / 2, "{codec:?} compresses");
        }
        // The default chunk sizes, several chunks.
        let big = sample(9 << 20);
        for codec in [Codec::Gzip(6), Codec::Zstd(3)] {
            let a = encode(codec, codec.chunk_size(), 1, &big, 1 << 20);
            assert_eq!(a, encode(codec, codec.chunk_size(), 2, &big, 1 << 20));
            assert_eq!(a, encode(codec, codec.chunk_size(), 7, &big, 1 << 20));
        }
    }

    #[test]
    fn gzip_framing_and_edges() {
        for len in [0, 1, 99_999, 100_000, 100_001, 200_000, 250_000] {
            let data = sample(len);
            let out = encode(Codec::Gzip(6), 100_000, 3, &data, 7777);
            assert!(gunzip(&out) == data, "len {len}");
            assert_eq!(&out[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
            let isize = u32::from_le_bytes(out[out.len() - 4..].try_into().unwrap());
            assert_eq!(isize as usize, len);
            let crc = u32::from_le_bytes(out[out.len() - 8..out.len() - 4].try_into().unwrap());
            assert_eq!(crc, crc32fast::hash(&data));
            let z = encode(Codec::Zstd(3), 100_000, 3, &data, 7777);
            assert!(unzstd(&z) == data, "zstd len {len}");
        }
        assert_eq!(encode(Codec::Gzip(9), 100, 1, b"x", 1)[8], 2);
        assert_eq!(encode(Codec::Gzip(1), 100, 1, b"x", 1)[8], 4);
    }

    #[test]
    fn incompressible_chunks_are_stored() {
        let mut x: u32 = 1;
        let random: Vec<u8> = (0..300_000)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 24) as u8
            })
            .collect();
        let out = encode(Codec::Gzip(6), 100_000, 2, &random, 50_000);
        assert!(gunzip(&out) == random);
        // Header, stored blocks (5 bytes per 64 KiB or less), trailer.
        assert_eq!(out.len(), 10 + 300_000 + 5 * 6 + 8);
        assert_eq!(stored_blocks(&[], true), [1, 0, 0, 0xff, 0xff]);
        assert!(looks_random(&random[..100_000]));
        let text = sample(100_000);
        assert!(!looks_random(&text));
        // A byte distribution a little off uniform is deflated.
        let mut skewed = random[..100_000].to_vec();
        skewed[..10_000].fill(0);
        assert!(!looks_random(&skewed));
    }

    #[test]
    fn output_errors_are_reported() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let data = sample(1_000_000);
        let mut e = ParallelEncoder::with_chunk_size(Codec::Gzip(1), 10_000, 2, Broken).unwrap();
        let err = e.write_all(&data).and_then(|_| e.finish().map(|_| ()));
        assert_eq!(err.unwrap_err().to_string(), "disk full");
    }
}
