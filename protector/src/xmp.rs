//! No-train XMP metadata (IPTC `plus:DataMining`) inserted into JPEG, PNG
//! and WebP files without re-encoding: only segments / chunks are added or
//! replaced; the compressed pixel data is copied byte for byte.
//!
//! An existing XMP packet is merged, not replaced: our `rdf:Description`
//! is added to it, and an existing `plus:DataMining` value is kept.

// Hostile files reach this parser from clients and origins: no indexing or
// unwrapping that could panic; every offset is checked.
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]
#![cfg_attr(test, allow(clippy::indexing_slicing, clippy::unwrap_used))]

use thiserror::Error;

/// The PLUS vocabulary prefix of `plus:DataMining` values.
pub const DMI_PREFIX: &str = "http://ns.useplus.org/ldf/vocab/";

/// Why metadata could not be inserted; the caller serves the original.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum XmpError {
    /// Not a JPEG, PNG or WebP file.
    #[error("unknown image format")]
    UnknownFormat,
    /// The container structure is broken.
    #[error("malformed {0}: {1}")]
    Malformed(&'static str, &'static str),
    /// The merged packet does not fit the container's segment limit.
    #[error("XMP packet too large for the container")]
    TooLarge,
}

/// Image containers this module handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JPEG (APP1 segment).
    Jpeg,
    /// PNG (`iTXt` chunk).
    Png,
    /// WebP (`XMP ` chunk, extended format).
    Webp,
}

/// Detects the format from magic bytes.
pub fn detect(data: &[u8]) -> Option<Format> {
    if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if data.starts_with(b"RIFF") && data.get(8..12) == Some(b"WEBP".as_slice()) {
        Some(Format::Webp)
    } else {
        None
    }
}

const XMP_NS_JPEG: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const PNG_XMP_KEYWORD: &[u8] = b"XML:com.adobe.xmp";

fn description(value: &str) -> String {
    format!(
        "<rdf:Description rdf:about=\"\" xmlns:plus=\"http://ns.useplus.org/ldf/xmp/1.0/\" plus:DataMining=\"{DMI_PREFIX}{value}\"/>"
    )
}

/// A complete XMP packet carrying `plus:DataMining`.
pub fn packet(value: &str) -> String {
    format!(
        "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\
<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">{}</rdf:RDF></x:xmpmeta>\
<?xpacket end=\"w\"?>",
        description(value)
    )
}

/// Merges our statement into an existing packet; `None` when the packet
/// already states `plus:DataMining` (kept as the artist set it) or has no
/// `</rdf:RDF>` to add to.
pub fn merge(existing: &str, value: &str) -> Option<String> {
    if existing.contains("DataMining") {
        return None;
    }
    let end = existing.rfind("</rdf:RDF>")?;
    let (head, tail) = existing.split_at_checked(end)?;
    let mut s = String::with_capacity(existing.len() + 200);
    s.push_str(head);
    s.push_str(&description(value));
    s.push_str(tail);
    Some(s)
}

/// The packet to write where `existing` was: `None` to keep the file as
/// it is (it already states `plus:DataMining`), our statement merged into
/// it, or our own packet when the old one has no RDF to add to.
fn replacement(existing: &[u8], value: &str) -> Option<String> {
    let old = String::from_utf8_lossy(existing);
    if old.contains("DataMining") {
        return None;
    }
    Some(merge(&old, value).unwrap_or_else(|| packet(value)))
}

/// Inserts (or merges) the packet; returns the new file.
pub fn insert(data: &[u8], value: &str) -> Result<Vec<u8>, XmpError> {
    match detect(data) {
        Some(Format::Jpeg) => jpeg(data, value),
        Some(Format::Png) => png(data, value, false),
        Some(Format::Webp) => webp(data, value),
        None => Err(XmpError::UnknownFormat),
    }
}

fn be16(b: &[u8], i: usize) -> Option<usize> {
    let x = b.get(i..i.checked_add(2)?)?;
    Some(usize::from(u16::from_be_bytes(x.try_into().ok()?)))
}

fn be32(b: &[u8], i: usize) -> Option<usize> {
    let x = b.get(i..i.checked_add(4)?)?;
    usize::try_from(u32::from_be_bytes(x.try_into().ok()?)).ok()
}

fn le32(b: &[u8], i: usize) -> Option<u32> {
    let x = b.get(i..i.checked_add(4)?)?;
    Some(u32::from_le_bytes(x.try_into().ok()?))
}

/// `len` bytes of `b` from `start`, or `None` when they are not all there.
fn span(b: &[u8], start: usize, len: usize) -> Option<&[u8]> {
    b.get(start..start.checked_add(len)?)
}

/// Assembles `head + middle + tail` (the file with one segment replaced).
fn splice(data: &[u8], start: usize, end: usize, middle: &[u8]) -> Option<Vec<u8>> {
    let head = data.get(..start)?;
    let tail = data.get(end..)?;
    let mut out = Vec::with_capacity(head.len() + middle.len() + tail.len());
    out.extend_from_slice(head);
    out.extend_from_slice(middle);
    out.extend_from_slice(tail);
    Some(out)
}

fn jpeg(data: &[u8], value: &str) -> Result<Vec<u8>, XmpError> {
    const E: &str = "JPEG";
    let bad = |why| XmpError::Malformed(E, why);
    let mut i: usize = 2; // after SOI
    let mut insert_at = 2;
    let mut existing: Option<(usize, usize, &[u8])> = None; // segment start, end, packet
    loop {
        if data.get(i) != Some(&0xFF) {
            return Err(bad("expected a marker"));
        }
        let marker = *data.get(i + 1).ok_or(bad("truncated"))?;
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        // Standalone markers have no length.
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            i += 2;
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            break; // start of scan / end of image: headers are over
        }
        let len = be16(data, i + 2).ok_or(bad("truncated segment"))?;
        if len < 2 {
            return Err(bad("segment length below 2"));
        }
        let payload = span(data, i + 4, len - 2).ok_or(bad("segment runs past the end"))?;
        let end = i + 2 + len;
        if marker == 0xE1
            && let Some(old) = payload.strip_prefix(XMP_NS_JPEG)
        {
            existing = Some((i, end, old));
        }
        if (0xE0..=0xEF).contains(&marker) {
            insert_at = end; // after leading APPn (JFIF, EXIF…)
        }
        i = end;
    }
    let (packet, start, end) = match existing {
        Some((s, e, old)) => match replacement(old, value) {
            Some(p) => (p, s, e),
            None => return Ok(data.to_vec()),
        },
        None => (packet(value), insert_at, insert_at),
    };
    let seg_len = 2 + XMP_NS_JPEG.len() + packet.len();
    let seg_len16 = u16::try_from(seg_len).map_err(|_| XmpError::TooLarge)?;
    let mut segment = Vec::with_capacity(seg_len + 2);
    segment.extend_from_slice(&[0xFF, 0xE1]);
    segment.extend_from_slice(&seg_len16.to_be_bytes());
    segment.extend_from_slice(XMP_NS_JPEG);
    segment.extend_from_slice(packet.as_bytes());
    splice(data, start, end, &segment).ok_or(bad("segment bounds"))
}

/// How much of a file a streaming insertion must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Not all there yet.
    NeedMore,
    /// The head is the first `n` bytes: insert there, stream the rest.
    Ready(usize),
    /// Only the whole file will do (WebP; a PNG without IDAT).
    Whole,
    /// Not a file this module can change.
    Invalid,
}

/// JPEG: every segment before the first scan, up to and including the SOS
/// (or EOI) marker.
fn jpeg_head(data: &[u8]) -> Head {
    let mut i: usize = 2;
    loop {
        match data.get(i) {
            None => return Head::NeedMore,
            Some(0xFF) => {}
            Some(_) => return Head::Invalid,
        }
        let Some(&marker) = data.get(i + 1) else {
            return Head::NeedMore;
        };
        if marker == 0xFF {
            i += 1;
            continue;
        }
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            i += 2;
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            return Head::Ready(i + 2);
        }
        let Some(len) = be16(data, i + 2) else {
            return Head::NeedMore;
        };
        if len < 2 {
            return Head::Invalid;
        }
        i += 2 + len;
    }
}

/// PNG: every chunk before the first IDAT.
fn png_head(data: &[u8]) -> Head {
    let mut i: usize = 8;
    loop {
        let (Some(len), Some(kind)) = (be32(data, i), span(data, i + 4, 4)) else {
            return Head::NeedMore;
        };
        if kind == b"IDAT" {
            return Head::Ready(i);
        }
        if kind == b"IEND" {
            return Head::Whole;
        }
        match i.checked_add(12).and_then(|x| x.checked_add(len)) {
            Some(end) => i = end,
            None => return Head::Invalid,
        }
    }
}

/// What a streaming insertion hands back for a chunk.
#[derive(Debug, PartialEq, Eq)]
pub enum Out {
    /// Send the chunk as it came.
    Pass,
    /// Send these bytes instead.
    Bytes(Vec<u8>),
    /// Send nothing yet.
    Hold,
}

/// How a streamed file came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Metadata inserted (or the file already stated `plus:DataMining`).
    Inserted,
    /// Passed through unchanged: not an image this module handles, broken,
    /// or a head (or a whole WebP) over the cap.
    Unchanged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Collecting,
    /// Done inserting (or given up): everything else passes.
    Passing,
}

/// XMP insertion while a response streams: JPEG and PNG hold only their
/// head (the segments before the first scan, the chunks before the first
/// IDAT), so memory per file is bounded by its metadata, not its size;
/// the compressed data then passes chunk by chunk, untouched. WebP is held
/// whole (its RIFF size and VP8X flags at the start depend on an XMP
/// chunk at the end), up to `cap` like a head. Past `cap`, what was held
/// is sent as it came and the file passes unchanged.
pub struct XmpStream {
    value: String,
    cap: usize,
    buf: Vec<u8>,
    phase: Phase,
    outcome: Option<Outcome>,
}

impl XmpStream {
    /// A stream inserting `plus:DataMining = value`, holding at most `cap`
    /// bytes.
    pub fn new(value: &str, cap: usize) -> XmpStream {
        XmpStream {
            value: value.to_string(),
            cap,
            buf: Vec::new(),
            phase: Phase::Collecting,
            outcome: None,
        }
    }

    /// How the file came out, once known.
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }

    /// Bytes held now (for tests of the memory bound).
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    fn give_up(&mut self) -> Out {
        self.phase = Phase::Passing;
        self.outcome = Some(Outcome::Unchanged);
        Out::Bytes(std::mem::take(&mut self.buf))
    }

    /// Takes the next chunk of the file (`eos`: it is the last).
    pub fn push(&mut self, chunk: &[u8], eos: bool) -> Out {
        if self.phase == Phase::Passing {
            return Out::Pass;
        }
        self.buf.extend_from_slice(chunk);
        let format = if self.buf.len() >= 12 || eos {
            detect(&self.buf)
        } else {
            return Out::Hold;
        };
        let head = match format {
            None => return self.give_up(),
            Some(Format::Jpeg) => jpeg_head(&self.buf),
            Some(Format::Png) => png_head(&self.buf),
            Some(Format::Webp) => Head::Whole,
        };
        match head {
            Head::Invalid => self.give_up(),
            Head::Ready(n) if n > self.cap => self.give_up(),
            Head::Ready(n) => {
                let (h, rest) = self.buf.split_at_checked(n).unwrap_or((&self.buf, &[]));
                let with = match format {
                    Some(Format::Jpeg) => jpeg(h, &self.value),
                    _ => png(h, &self.value, true),
                };
                match with {
                    Ok(mut out) => {
                        out.extend_from_slice(rest);
                        self.buf = Vec::new();
                        self.phase = Phase::Passing;
                        self.outcome = Some(Outcome::Inserted);
                        Out::Bytes(out)
                    }
                    Err(_) => self.give_up(),
                }
            }
            Head::NeedMore | Head::Whole if eos => match insert(&self.buf, &self.value) {
                Ok(out) => {
                    self.buf = Vec::new();
                    self.phase = Phase::Passing;
                    self.outcome = Some(Outcome::Inserted);
                    Out::Bytes(out)
                }
                Err(_) => self.give_up(),
            },
            Head::NeedMore | Head::Whole => {
                if self.buf.len() > self.cap {
                    self.give_up()
                } else {
                    Out::Hold
                }
            }
        }
    }
}

fn png_chunk(kind: &[u8; 4], payload: &[u8]) -> Result<Vec<u8>, XmpError> {
    let len = u32::try_from(payload.len()).map_err(|_| XmpError::TooLarge)?;
    let mut c = Vec::with_capacity(payload.len() + 12);
    c.extend_from_slice(&len.to_be_bytes());
    c.extend_from_slice(kind);
    c.extend_from_slice(payload);
    let mut h = crc32fast::Hasher::new();
    h.update(kind);
    h.update(payload);
    c.extend_from_slice(&h.finalize().to_be_bytes());
    Ok(c)
}

/// The text of an uncompressed XMP `iTXt` payload, `None` for any other
/// `iTXt` (another keyword, compressed, or cut short).
///
/// Layout: keyword NUL, compression flag, compression method, language
/// tag NUL, translated keyword NUL, text.
fn png_xmp_text(payload: &[u8]) -> Option<&[u8]> {
    let rest = payload.strip_prefix(PNG_XMP_KEYWORD)?.strip_prefix(&[0])?;
    let (&flag, rest) = rest.split_first()?;
    if flag != 0 {
        return None; // compressed: left alone, ours is added beside it
    }
    let (_method, mut rest) = rest.split_first()?;
    for _ in 0..2 {
        let nul = rest.iter().position(|b| *b == 0)?;
        rest = rest.get(nul + 1..)?;
    }
    Some(rest)
}

fn png(data: &[u8], value: &str, head_only: bool) -> Result<Vec<u8>, XmpError> {
    const E: &str = "PNG";
    let bad = |why| XmpError::Malformed(E, why);
    let mut i: usize = 8;
    let mut first_idat = None;
    let mut existing: Option<(usize, usize, &[u8])> = None; // chunk start, end, text
    while let (Some(len), Some(kind)) = (be32(data, i), span(data, i + 4, 4)) {
        let end = i
            .checked_add(12)
            .and_then(|x| x.checked_add(len))
            .ok_or(bad("chunk length overflows"))?;
        let payload = span(data, i + 8, len)
            .filter(|_| end <= data.len())
            .ok_or(bad("chunk runs past the end"))?;
        if kind == b"IDAT" && first_idat.is_none() {
            first_idat = Some(i);
        }
        if kind == b"iTXt"
            && existing.is_none()
            && let Some(text) = png_xmp_text(payload)
        {
            existing = Some((i, end, text));
        }
        if kind == b"IEND" {
            break;
        }
        i = end;
    }
    // A head cut at the first IDAT (streaming): the data ends there.
    let first_idat = first_idat
        .or_else(|| head_only.then_some(data.len()))
        .ok_or(bad("no IDAT"))?;
    let (packet, start, end) = match existing {
        Some((s, e, old)) => match replacement(old, value) {
            Some(p) => (p, s, e),
            None => return Ok(data.to_vec()),
        },
        None => (packet(value), first_idat, first_idat),
    };
    let mut payload = Vec::with_capacity(packet.len() + 24);
    payload.extend_from_slice(PNG_XMP_KEYWORD);
    payload.extend_from_slice(&[0, 0, 0, 0, 0]); // NUL, uncompressed, method, empty language, empty translated
    payload.extend_from_slice(packet.as_bytes());
    let chunk = png_chunk(b"iTXt", &payload)?;
    splice(data, start, end, &chunk).ok_or(bad("chunk bounds"))
}

/// Canvas size of a simple (VP8 / VP8L) WebP, for the VP8X header.
fn webp_canvas(kind: &[u8], payload: &[u8]) -> Option<(u32, u32)> {
    match kind {
        b"VP8 " => {
            // 3-byte frame tag, start code 9d 01 2a, then 14-bit sizes.
            if payload.get(3..6)? != [0x9d, 0x01, 0x2a] {
                return None;
            }
            let w = u16::from_le_bytes([*payload.get(6)?, *payload.get(7)?]) & 0x3fff;
            let h = u16::from_le_bytes([*payload.get(8)?, *payload.get(9)?]) & 0x3fff;
            if w == 0 || h == 0 {
                return None;
            }
            Some((u32::from(w), u32::from(h)))
        }
        b"VP8L" => {
            if *payload.first()? != 0x2f {
                return None;
            }
            let b = le32(payload, 1)?;
            Some(((b & 0x3fff) + 1, ((b >> 14) & 0x3fff) + 1))
        }
        _ => None,
    }
}

/// A VP8X header (10 bytes) for a simple file's canvas.
fn vp8x_for(kind: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
    let (w, h) = webp_canvas(kind, payload)?;
    let w1 = w.checked_sub(1)?.to_le_bytes();
    let h1 = h.checked_sub(1)?.to_le_bytes();
    // VP8L may carry alpha: declare it so decoders keep it.
    let flags = if kind == b"VP8L" { 0x10 } else { 0 };
    Some(vec![
        flags, 0, 0, 0, w1[0], w1[1], w1[2], h1[0], h1[1], h1[2],
    ])
}

fn webp(data: &[u8], value: &str) -> Result<Vec<u8>, XmpError> {
    const E: &str = "WebP";
    let bad = |why| XmpError::Malformed(E, why);
    let riff_len =
        usize::try_from(le32(data, 4).ok_or(bad("truncated"))?).map_err(|_| bad("size"))?;
    let total = riff_len.checked_add(8).ok_or(bad("size"))?;
    if total < 12 {
        return Err(bad("RIFF size"));
    }
    let data = data
        .get(..total)
        .ok_or(bad("RIFF size runs past the end"))?;
    let mut chunks: Vec<(&[u8], &[u8])> = Vec::new();
    let mut i: usize = 12;
    while let Some(kind) = span(data, i, 4) {
        let len =
            usize::try_from(le32(data, i + 4).ok_or(bad("chunk"))?).map_err(|_| bad("chunk"))?;
        let payload = span(data, i + 8, len).ok_or(bad("chunk runs past the end"))?;
        chunks.push((kind, payload));
        // Chunks are padded to even sizes.
        i = (i + 8 + len).checked_add(len & 1).ok_or(bad("chunk"))?;
    }
    let (first_kind, first_payload) = *chunks.first().ok_or(bad("no chunks"))?;
    let mut vp8x: Vec<u8> = if first_kind == b"VP8X" {
        first_payload.to_vec()
    } else {
        vp8x_for(first_kind, first_payload).ok_or(bad("bitstream header"))?
    };
    if vp8x.len() < 10 {
        return Err(bad("VP8X"));
    }
    if let Some(flags) = vp8x.first_mut() {
        *flags |= 0x04; // XMP present
    }
    let existing = chunks.iter().find(|(k, _)| *k == b"XMP ").map(|(_, p)| *p);
    let packet = match existing {
        Some(old) => match replacement(old, value) {
            Some(p) => p,
            None => return Ok(data.to_vec()),
        },
        None => packet(value),
    };
    let mut body = Vec::with_capacity(data.len() + packet.len() + 32);
    body.extend_from_slice(b"WEBP");
    let mut push = |kind: &[u8], payload: &[u8]| -> Result<(), XmpError> {
        let len = u32::try_from(payload.len()).map_err(|_| XmpError::TooLarge)?;
        body.extend_from_slice(kind);
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(payload);
        if payload.len() & 1 == 1 {
            body.push(0);
        }
        Ok(())
    };
    push(b"VP8X", &vp8x)?;
    for (kind, payload) in &chunks {
        if *kind == b"VP8X" || *kind == b"XMP " {
            continue;
        }
        push(kind, payload)?;
    }
    push(b"XMP ", packet.as_bytes())?;
    let riff = u32::try_from(body.len()).map_err(|_| XmpError::TooLarge)?;
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&riff.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageFormat;

    fn sample(format: ImageFormat) -> Vec<u8> {
        let img = image::RgbImage::from_fn(37, 23, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 11) as u8, 99])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut out, format)
            .unwrap();
        out.into_inner()
    }

    fn pixels(data: &[u8]) -> Vec<u8> {
        image::load_from_memory(data).unwrap().to_rgba8().into_raw()
    }

    #[test]
    fn inserts_into_each_format_without_touching_pixels() {
        for f in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP] {
            let orig = sample(f);
            let out = insert(&orig, "DMI-PROHIBITED-AIMLTRAINING").unwrap();
            assert_ne!(out, orig, "{f:?}");
            assert_eq!(pixels(&out), pixels(&orig), "{f:?}");
            let s = String::from_utf8_lossy(&out);
            assert!(s.contains("plus:DataMining=\"http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED-AIMLTRAINING\""), "{f:?}");
            // Idempotent: a second pass finds the statement and keeps it.
            assert_eq!(insert(&out, "DMI-PROHIBITED").unwrap(), out, "{f:?}");
        }
    }

    /// Streaming gives the same file as inserting into the whole file,
    /// however the file is cut into chunks, and holds only the head.
    #[test]
    fn streaming_matches_whole_file_insertion() {
        for f in [ImageFormat::Jpeg, ImageFormat::Png, ImageFormat::WebP] {
            let orig = sample(f);
            let whole = insert(&orig, "DMI-PROHIBITED").unwrap();
            for size in [1, 2, 7, 64, 1000, orig.len()] {
                let mut s = XmpStream::new("DMI-PROHIBITED", 1 << 20);
                let mut out = Vec::new();
                let chunks: Vec<&[u8]> = orig.chunks(size).collect();
                for (i, c) in chunks.iter().enumerate() {
                    match s.push(c, i + 1 == chunks.len()) {
                        Out::Pass => out.extend_from_slice(c),
                        Out::Bytes(b) => out.extend_from_slice(&b),
                        Out::Hold => {}
                    }
                }
                assert_eq!(out, whole, "{f:?} in chunks of {size}");
                assert_eq!(s.outcome(), Some(Outcome::Inserted));
            }
        }
    }

    /// A 20 MB JPEG: the stream holds its head only.
    #[test]
    fn streaming_holds_the_head_not_the_file() {
        let orig = sample(ImageFormat::Jpeg);
        let sos = orig.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        let mut big = orig[..sos + 2].to_vec();
        big.extend(std::iter::repeat_n(0x55u8, 20 << 20));
        let mut s = XmpStream::new("DMI-PROHIBITED", 64 * 1024);
        let mut most = 0;
        let mut sent = 0;
        for c in big.chunks(16 * 1024) {
            match s.push(c, false) {
                Out::Pass => sent += c.len(),
                Out::Bytes(b) => sent += b.len(),
                Out::Hold => {}
            }
            most = most.max(s.held());
        }
        assert!(most <= 16 * 1024, "held {most}");
        assert_eq!(s.outcome(), Some(Outcome::Inserted));
        assert!(sent > big.len(), "the packet was added");
        // A head over the cap passes unchanged.
        let mut s = XmpStream::new("DMI-PROHIBITED", 1024);
        let mut exif = vec![0xFF, 0xD8];
        for _ in 0..4 {
            exif.extend_from_slice(&[0xFF, 0xE2, 0x01, 0x00]);
            exif.extend(std::iter::repeat_n(0u8, 254));
        }
        exif.extend_from_slice(&[0xFF, 0xDA, 0, 2]);
        let mut out = Vec::new();
        for c in exif.chunks(100) {
            match s.push(c, false) {
                Out::Pass => out.extend_from_slice(c),
                Out::Bytes(b) => out.extend_from_slice(&b),
                Out::Hold => {}
            }
        }
        assert_eq!(out, exif);
        assert_eq!(s.outcome(), Some(Outcome::Unchanged));
    }

    #[test]
    fn merges_an_existing_packet() {
        let existing = "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\"><rdf:Description rdf:about=\"\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\"><dc:creator>Mara</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>";
        let m = merge(existing, "DMI-PROHIBITED").unwrap();
        assert!(
            m.contains("<dc:creator>Mara</dc:creator>")
                && m.contains("DMI-PROHIBITED\"/></rdf:RDF>")
        );
    }

    fn hostile_fixtures() -> Vec<(String, Vec<u8>)> {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hostile");
        let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                (p.display().to_string(), std::fs::read(&p).unwrap())
            })
            .collect();
        out.sort();
        assert!(out.len() >= 12, "fixtures missing in {}", dir.display());
        out
    }

    /// The crafted files of the hardening issue: each gives an answer,
    /// never a panic. A PNG whose only flaw is a cut-short XMP `iTXt` gets
    /// our packet beside it and keeps its pixels.
    #[test]
    fn hostile_fixtures_never_panic() {
        for (name, data) in hostile_fixtures() {
            let r = std::panic::catch_unwind(|| insert(&data, "DMI-PROHIBITED-AIMLTRAINING"));
            let r = r.unwrap_or_else(|_| panic!("{name}: panicked"));
            if name.contains("png-itxt") || name.contains("empty-packet") {
                let out = r.unwrap_or_else(|e| panic!("{name}: {e}"));
                if name.contains("png") {
                    assert_eq!(pixels(&out), pixels(&data), "{name}");
                }
                assert!(String::from_utf8_lossy(&out).contains("DMI-PROHIBITED-AIMLTRAINING"));
            } else {
                assert!(r.is_err(), "{name}: malformed input accepted");
            }
        }
    }

    /// A payload exactly `XML:com.adobe.xmp\0\0` (the reported crash).
    #[test]
    fn png_itxt_cut_after_the_keyword() {
        for tail in [&b"\0"[..], b"\0\0", b"\0\0\0", b"\0\0\0\0", b"\0\0\0x\0"] {
            let mut payload = PNG_XMP_KEYWORD.to_vec();
            payload.extend_from_slice(tail);
            assert_eq!(png_xmp_text(&payload), None, "{tail:?}");
        }
        let mut full = PNG_XMP_KEYWORD.to_vec();
        full.extend_from_slice(b"\0\0\0\0\0<x/>");
        assert_eq!(png_xmp_text(&full), Some(&b"<x/>"[..]));
    }

    mod fuzz {
        //! Property tests over mutated real files. `./dev test` runs the
        //! default number of cases; set `PROPTEST_CASES=100000` to run
        //! longer.
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Mutation {
            Flip(usize, u8),
            Truncate(usize),
            Insert(usize, Vec<u8>),
            /// Overwrites 4 bytes: the usual place of a length field.
            Length(usize, u32),
        }

        fn mutation() -> impl Strategy<Value = Mutation> {
            prop_oneof![
                (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
                any::<usize>().prop_map(Mutation::Truncate),
                (
                    any::<usize>(),
                    proptest::collection::vec(any::<u8>(), 1..64)
                )
                    .prop_map(|(i, v)| Mutation::Insert(i, v)),
                (
                    any::<usize>(),
                    prop_oneof![
                        Just(0u32),
                        Just(1),
                        Just(2),
                        Just(0xFFFF),
                        Just(u32::MAX),
                        any::<u32>()
                    ]
                )
                    .prop_map(|(i, n)| Mutation::Length(i, n)),
            ]
        }

        fn apply(data: &mut Vec<u8>, m: &Mutation) {
            if data.is_empty() {
                return;
            }
            let at = |i: usize| i % data.len();
            match m {
                Mutation::Flip(i, b) => {
                    let i = at(*i);
                    data[i] ^= b | 1;
                }
                Mutation::Truncate(i) => data.truncate(at(*i)),
                Mutation::Insert(i, v) => {
                    let i = at(*i);
                    data.splice(i..i, v.iter().copied());
                }
                Mutation::Length(i, n) => {
                    let i = at(*i);
                    for (k, b) in n.to_be_bytes().iter().enumerate() {
                        if let Some(x) = data.get_mut(i + k) {
                            *x = *b;
                        }
                    }
                }
            }
        }

        fn seeds() -> Vec<Vec<u8>> {
            let mut v = vec![
                sample(ImageFormat::Jpeg),
                sample(ImageFormat::Png),
                sample(ImageFormat::WebP),
            ];
            // Files that already carry XMP exercise the merge paths.
            let with: Vec<Vec<u8>> = v
                .iter()
                .map(|d| insert(d, "DMI-PROHIBITED").unwrap())
                .collect();
            v.extend(with);
            v.extend(hostile_fixtures().into_iter().map(|(_, d)| d));
            v
        }

        proptest! {
            #[test]
            fn mutated_files_never_panic(seed in any::<prop::sample::Index>(),
                                         muts in proptest::collection::vec(mutation(), 1..6)) {
                let seeds = seeds();
                let mut data = seed.get(&seeds).clone();
                for m in &muts {
                    apply(&mut data, m);
                }
                if let Ok(out) = insert(&data, "DMI-PROHIBITED") {
                    // What we produce parses again (idempotent or a clean error).
                    let _ = insert(&out, "DMI-PROHIBITED");
                }
            }

            /// Streaming hostile files never panics; a file it does not
            /// change comes out byte for byte.
            #[test]
            fn streaming_mutated_files_never_panics(seed in any::<prop::sample::Index>(),
                                                    muts in proptest::collection::vec(mutation(), 1..6),
                                                    size in 1usize..400) {
                let seeds = seeds();
                let mut data = seed.get(&seeds).clone();
                for m in &muts {
                    apply(&mut data, m);
                }
                let mut s = XmpStream::new("DMI-PROHIBITED", 4096);
                let mut out = Vec::new();
                let chunks: Vec<&[u8]> = data.chunks(size).collect();
                for (i, c) in chunks.iter().enumerate() {
                    match s.push(c, i + 1 == chunks.len()) {
                        Out::Pass => out.extend_from_slice(c),
                        Out::Bytes(b) => out.extend_from_slice(&b),
                        Out::Hold => {}
                    }
                    prop_assert!(s.held() <= 4096 + size);
                }
                if s.outcome() != Some(Outcome::Inserted) {
                    prop_assert_eq!(out, data);
                }
            }

            #[test]
            fn random_bytes_with_magic_never_panic(magic in 0usize..3,
                                                   body in proptest::collection::vec(any::<u8>(), 0..512)) {
                let mut data = match magic {
                    0 => vec![0xFF, 0xD8, 0xFF],
                    1 => b"\x89PNG\r\n\x1a\n".to_vec(),
                    _ => b"RIFF\0\0\0\0WEBP".to_vec(),
                };
                if magic == 2 {
                    let n = (body.len() + 4) as u32;
                    data[4..8].copy_from_slice(&n.to_le_bytes());
                }
                data.extend_from_slice(&body);
                let _ = insert(&data, "DMI-PROHIBITED");
            }
        }
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let jpg = sample(ImageFormat::Jpeg);
        let png = sample(ImageFormat::Png);
        let webp = sample(ImageFormat::WebP);
        for data in [
            &jpg[..40],
            &png[..30],
            &webp[..20],
            b"RIFF\xff\xff\xff\xffWEBPVP8 ",
            b"\xff\xd8\xff\xe1\x00\x01",
            b"GIF89a",
        ] {
            assert!(insert(data, "DMI-PROHIBITED").is_err());
        }
        // Truncations at every length never panic.
        for cut in 0..jpg.len().min(400) {
            let _ = insert(&jpg[..cut], "DMI-PROHIBITED");
        }
        for cut in 0..png.len() {
            let _ = insert(&png[..cut], "DMI-PROHIBITED");
        }
        for cut in 0..webp.len() {
            let _ = insert(&webp[..cut], "DMI-PROHIBITED");
        }
    }
}
