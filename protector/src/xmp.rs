//! No-train XMP metadata (IPTC `plus:DataMining`) inserted into JPEG, PNG
//! and WebP files without re-encoding: only segments / chunks are added or
//! replaced; the compressed pixel data is copied byte for byte.
//!
//! An existing XMP packet is merged, not replaced: our `rdf:Description`
//! is added to it, and an existing `plus:DataMining` value is kept.

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
    } else if data.len() >= 12 && &data[0..4] == b"RIFF" && &data[8..12] == b"WEBP" {
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
    let mut s = String::with_capacity(existing.len() + 200);
    s.push_str(&existing[..end]);
    s.push_str(&description(value));
    s.push_str(&existing[end..]);
    Some(s)
}

/// Inserts (or merges) the packet; returns the new file.
pub fn insert(data: &[u8], value: &str) -> Result<Vec<u8>, XmpError> {
    match detect(data) {
        Some(Format::Jpeg) => jpeg(data, value),
        Some(Format::Png) => png(data, value),
        Some(Format::Webp) => webp(data, value),
        None => Err(XmpError::UnknownFormat),
    }
}

fn be16(b: &[u8], i: usize) -> Option<usize> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]) as usize)
}

fn jpeg(data: &[u8], value: &str) -> Result<Vec<u8>, XmpError> {
    const E: &str = "JPEG";
    let mut i = 2; // after SOI
    let mut insert_at = 2;
    let mut existing: Option<(usize, usize)> = None; // segment start, end
    loop {
        if data.get(i) != Some(&0xFF) {
            return Err(XmpError::Malformed(E, "expected a marker"));
        }
        let marker = *data.get(i + 1).ok_or(XmpError::Malformed(E, "truncated"))?;
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
        let len = be16(data, i + 2).ok_or(XmpError::Malformed(E, "truncated segment"))?;
        if len < 2 || i + 2 + len > data.len() {
            return Err(XmpError::Malformed(E, "segment runs past the end"));
        }
        let payload = &data[i + 4..i + 2 + len];
        if marker == 0xE1 && payload.starts_with(XMP_NS_JPEG) {
            existing = Some((i, i + 2 + len));
        }
        if (0xE0..=0xEF).contains(&marker) {
            insert_at = i + 2 + len; // after leading APPn (JFIF, EXIF…)
        }
        i += 2 + len;
    }
    let (packet, start, end) = match existing {
        Some((s, e)) => {
            let old = String::from_utf8_lossy(&data[s + 4 + XMP_NS_JPEG.len()..e]);
            match merge(&old, value) {
                Some(p) => (p, s, e),
                None => return Ok(data.to_vec()),
            }
        }
        None => (packet(value), insert_at, insert_at),
    };
    let seg_len = 2 + XMP_NS_JPEG.len() + packet.len();
    if seg_len > 0xFFFF {
        return Err(XmpError::TooLarge);
    }
    let mut out = Vec::with_capacity(data.len() + seg_len + 2);
    out.extend_from_slice(&data[..start]);
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&(seg_len as u16).to_be_bytes());
    out.extend_from_slice(XMP_NS_JPEG);
    out.extend_from_slice(packet.as_bytes());
    out.extend_from_slice(&data[end..]);
    Ok(out)
}

fn png_chunk(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(payload.len() + 12);
    c.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    c.extend_from_slice(kind);
    c.extend_from_slice(payload);
    let mut h = crc32fast::Hasher::new();
    h.update(kind);
    h.update(payload);
    c.extend_from_slice(&h.finalize().to_be_bytes());
    c
}

fn png(data: &[u8], value: &str) -> Result<Vec<u8>, XmpError> {
    const E: &str = "PNG";
    let mut i = 8;
    let mut first_idat = None;
    let mut existing: Option<(usize, usize, usize)> = None; // start, text start, end
    while i + 8 <= data.len() {
        let len = u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]) as usize;
        let kind = &data[i + 4..i + 8];
        let end = i
            .checked_add(12)
            .and_then(|x| x.checked_add(len))
            .ok_or(XmpError::Malformed(E, "chunk length overflows"))?;
        if end > data.len() {
            return Err(XmpError::Malformed(E, "chunk runs past the end"));
        }
        let payload = &data[i + 8..i + 8 + len];
        if kind == b"IDAT" && first_idat.is_none() {
            first_idat = Some(i);
        }
        if kind == b"iTXt"
            && payload.starts_with(PNG_XMP_KEYWORD)
            && payload.get(PNG_XMP_KEYWORD.len()) == Some(&0)
        {
            // keyword \0 compression-flag compression-method language \0 translated \0 text
            let rest = &payload[PNG_XMP_KEYWORD.len() + 1..];
            if rest.first() == Some(&0) {
                let mut k = 2; // flag, method
                for _ in 0..2 {
                    let nul = rest[k..]
                        .iter()
                        .position(|b| *b == 0)
                        .ok_or(XmpError::Malformed(E, "iTXt"))?;
                    k += nul + 1;
                }
                existing = Some((i, i + 8 + PNG_XMP_KEYWORD.len() + 1 + k, end));
            }
        }
        if kind == b"IEND" {
            break;
        }
        i = end;
    }
    let first_idat = first_idat.ok_or(XmpError::Malformed(E, "no IDAT"))?;
    let (packet, start, end) = match existing {
        Some((s, text, e)) => {
            let old = String::from_utf8_lossy(&data[text..e - 4]);
            match merge(&old, value) {
                Some(p) => (p, s, e),
                None => return Ok(data.to_vec()),
            }
        }
        None => (packet(value), first_idat, first_idat),
    };
    let mut payload = Vec::with_capacity(packet.len() + 24);
    payload.extend_from_slice(PNG_XMP_KEYWORD);
    payload.extend_from_slice(&[0, 0, 0, 0, 0]); // NUL, uncompressed, method, empty language, empty translated
    payload.extend_from_slice(packet.as_bytes());
    let chunk = png_chunk(b"iTXt", &payload);
    let mut out = Vec::with_capacity(data.len() + chunk.len());
    out.extend_from_slice(&data[..start]);
    out.extend_from_slice(&chunk);
    out.extend_from_slice(&data[end..]);
    Ok(out)
}

fn le32(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(i)?,
        *b.get(i + 1)?,
        *b.get(i + 2)?,
        *b.get(i + 3)?,
    ]))
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

fn webp(data: &[u8], value: &str) -> Result<Vec<u8>, XmpError> {
    const E: &str = "WebP";
    let riff_len = le32(data, 4).ok_or(XmpError::Malformed(E, "truncated"))? as usize;
    let total = riff_len
        .checked_add(8)
        .ok_or(XmpError::Malformed(E, "size"))?;
    if total > data.len() || total < 12 {
        return Err(XmpError::Malformed(E, "RIFF size"));
    }
    let data = &data[..total];
    let mut chunks: Vec<(&[u8], &[u8])> = Vec::new();
    let mut i = 12;
    while i + 8 <= data.len() {
        let kind = &data[i..i + 4];
        let len = le32(data, i + 4).ok_or(XmpError::Malformed(E, "chunk"))? as usize;
        let end = i + 8 + len;
        if end > data.len() {
            return Err(XmpError::Malformed(E, "chunk runs past the end"));
        }
        chunks.push((kind, &data[i + 8..end]));
        i = end + (len & 1); // chunks are padded to even sizes
    }
    let first = chunks.first().ok_or(XmpError::Malformed(E, "no chunks"))?;
    let mut vp8x: Vec<u8> = if first.0 == b"VP8X" {
        first.1.to_vec()
    } else {
        let (w, h) =
            webp_canvas(first.0, first.1).ok_or(XmpError::Malformed(E, "bitstream header"))?;
        let mut v = vec![0u8; 10];
        let (w1, h1) = (w - 1, h - 1);
        v[4..7].copy_from_slice(&w1.to_le_bytes()[..3]);
        v[7..10].copy_from_slice(&h1.to_le_bytes()[..3]);
        if first.0 == b"VP8L" {
            // VP8L may carry alpha: declare it so decoders keep it.
            v[0] |= 0x10;
        }
        v
    };
    if vp8x.len() < 10 {
        return Err(XmpError::Malformed(E, "VP8X"));
    }
    let existing = chunks.iter().find(|(k, _)| *k == b"XMP ").map(|(_, p)| *p);
    let packet = match existing {
        Some(old) => match merge(&String::from_utf8_lossy(old), value) {
            Some(p) => p,
            None => return Ok(data.to_vec()),
        },
        None => packet(value),
    };
    vp8x[0] |= 0x04; // XMP present
    let mut body = Vec::with_capacity(data.len() + packet.len() + 32);
    body.extend_from_slice(b"WEBP");
    let mut push = |kind: &[u8], payload: &[u8]| {
        body.extend_from_slice(kind);
        body.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        body.extend_from_slice(payload);
        if payload.len() & 1 == 1 {
            body.push(0);
        }
    };
    push(b"VP8X", &vp8x);
    for (kind, payload) in &chunks {
        if *kind == b"VP8X" || *kind == b"XMP " {
            continue;
        }
        push(kind, payload);
    }
    push(b"XMP ", packet.as_bytes());
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
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

    #[test]
    fn merges_an_existing_packet() {
        let existing = "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\"><rdf:Description rdf:about=\"\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\"><dc:creator>Mara</dc:creator></rdf:Description></rdf:RDF></x:xmpmeta>";
        let m = merge(existing, "DMI-PROHIBITED").unwrap();
        assert!(
            m.contains("<dc:creator>Mara</dc:creator>")
                && m.contains("DMI-PROHIBITED\"/></rdf:RDF>")
        );
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
