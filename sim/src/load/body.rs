//! Body decompression: `compression`/`Content-Encoding` (gzip, lz4_frame, deflate) and the
//! compressed-CSV formats (`format: gzip|lz4|deflate`) (reference §2).
//!
//! Owns turning received bytes into plain bytes, bounded by the body size limit so a small
//! compressed body cannot expand without bound. bzip2 and zstd are recognised but not implemented:
//! they fail the load with a message saying so rather than being mistaken for plain bytes.

use std::borrow::Cow;
use std::io::Read;

use super::options::Compression;

/// Decompresses `body` with `compression` (if any), refusing output larger than `max_bytes`.
/// Without compression the body is borrowed as it is.
pub(crate) fn decompress(
    body: &[u8],
    compression: Option<Compression>,
    max_bytes: u64,
) -> Result<Cow<'_, [u8]>, String> {
    let Some(compression) = compression else {
        return Ok(Cow::Borrowed(body));
    };
    let mut out = Vec::new();
    let limit = max_bytes.saturating_add(1);
    let result = match compression {
        Compression::Gzip => flate2::read::MultiGzDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out),
        Compression::Deflate => {
            // zlib-wrapped first; raw deflate if the zlib header is absent.
            let zlib = flate2::read::ZlibDecoder::new(body)
                .take(limit)
                .read_to_end(&mut out);
            if zlib.is_err() {
                out.clear();
                flate2::read::DeflateDecoder::new(body)
                    .take(limit)
                    .read_to_end(&mut out)
            } else {
                zlib
            }
        }
        Compression::Lz4Frame => lz4_flex::frame::FrameDecoder::new(body)
            .take(limit)
            .read_to_end(&mut out),
        Compression::Bzip2 | Compression::Zstd => {
            return Err(format!(
                "starrocks-sim does not implement {} decompression",
                name(compression)
            ))
        }
    };
    if let Err(e) = result {
        return Err(format!(
            "Failed to decompress the body as {}: {e}",
            name(compression)
        ));
    }
    if out.len() as u64 > max_bytes {
        return Err(format!(
            "decompressed body exceeds the limit of {max_bytes} bytes. You can increase the limit by setting streaming_load_max_mb in be.conf."
        ));
    }
    Ok(Cow::Owned(out))
}

fn name(c: Compression) -> &'static str {
    match c {
        Compression::Gzip => "gzip",
        Compression::Deflate => "deflate",
        Compression::Lz4Frame => "lz4_frame",
        Compression::Bzip2 => "bzip2",
        Compression::Zstd => "zstd",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_lz4_and_deflate_round_trip() {
        let plain = b"{\"id\":1}\n{\"id\":2}".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            decompress(&gz, Some(Compression::Gzip), 1000).unwrap(),
            plain
        );

        let mut lz = lz4_flex::frame::FrameEncoder::new(Vec::new());
        lz.write_all(&plain).unwrap();
        let lz = lz.finish().unwrap();
        assert_eq!(
            decompress(&lz, Some(Compression::Lz4Frame), 1000).unwrap(),
            plain
        );

        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&plain).unwrap();
        let z = z.finish().unwrap();
        assert_eq!(
            decompress(&z, Some(Compression::Deflate), 1000).unwrap(),
            plain
        );
    }

    #[test]
    fn garbage_and_bombs_are_errors() {
        assert!(decompress(b"not gzip", Some(Compression::Gzip), 1000).is_err());
        assert!(decompress(b"not lz4", Some(Compression::Lz4Frame), 1000).is_err());
        assert!(decompress(b"x", Some(Compression::Zstd), 1000).is_err());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b'a'; 100_000]).unwrap();
        let gz = gz.finish().unwrap();
        assert!(decompress(&gz, Some(Compression::Gzip), 1000).is_err());
    }
}
