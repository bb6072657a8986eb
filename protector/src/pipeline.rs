//! Decode with limits → transform → encode in the same format → metadata.
//!
//! Honest about effect: `degrade` irreversibly removes resolution;
//! `watermark` makes copies traceable (see [`crate::watermark`]); the XMP
//! packet states the no-train reservation. None of these is an adversarial
//! cloak: serving a cloak the artist computed beforehand (Glaze, Mist…) is
//! the proxy's `variant` step, which needs no pixel work here.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, RgbImage, imageops::FilterType};
use thiserror::Error;

use crate::{watermark, xmp};

/// Decoding limits; a decompression bomb fails here, cheaply.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest input file.
    pub max_bytes: usize,
    /// Largest width and height.
    pub max_side: u32,
    /// Largest pixel count.
    pub max_pixels: u64,
    /// Largest decoder allocation.
    pub max_alloc: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 32 * 1024 * 1024,
            max_side: 12_000,
            max_pixels: 50_000_000,
            max_alloc: 256 * 1024 * 1024,
        }
    }
}

/// Why an image was not transformed; the caller applies its fallback.
#[derive(Debug, Error)]
pub enum ProtectError {
    /// Over a limit (size, dimensions, pixels, allocation).
    #[error("over limit: {0}")]
    Limit(String),
    /// Not an image this pipeline handles, or broken.
    #[error("cannot decode: {0}")]
    Decode(String),
    /// Encoding failed.
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// What to do to the image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    /// Downscale so the long side is at most this (None: full size).
    pub max_side: Option<u32>,
    /// Draw a visible mark in the corner of degraded images.
    pub visible_mark: bool,
    /// Watermark strength in grey levels (None: no watermark).
    pub watermark: Option<f32>,
}

impl Transform {
    /// `watermark` profile: full size, watermark (+ metadata).
    pub fn watermark() -> Transform {
        Transform {
            max_side: None,
            visible_mark: false,
            watermark: Some(watermark::DEFAULT_STRENGTH),
        }
    }

    /// `preview` profile: degrade to `max_side`, watermark (+ metadata).
    pub fn preview(max_side: u32) -> Transform {
        Transform {
            max_side: Some(max_side),
            visible_mark: false,
            watermark: Some(watermark::DEFAULT_STRENGTH),
        }
    }
}

/// One protection job.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// The original file.
    pub data: &'a [u8],
    /// The transform.
    pub transform: Transform,
    /// Watermark payload.
    pub payload: u64,
    /// Watermark key (a site secret).
    pub key: u64,
    /// `plus:DataMining` term.
    pub data_mining: &'a str,
    /// JPEG quality for JPEG output.
    pub jpeg_quality: u8,
    /// Decoding limits.
    pub limits: Limits,
}

/// A protected image.
#[derive(Debug, Clone)]
pub struct Output {
    /// The encoded file.
    pub bytes: Vec<u8>,
    /// Its MIME type.
    pub content_type: &'static str,
    /// Width after the transform.
    pub width: u32,
    /// Height after the transform.
    pub height: u32,
}

/// Decodes within limits: the header is read first, so a 60000×60000 bomb
/// is refused before any pixel is allocated.
pub fn decode(data: &[u8], limits: &Limits) -> Result<(DynamicImage, ImageFormat), ProtectError> {
    if data.len() > limits.max_bytes {
        return Err(ProtectError::Limit(format!("{} bytes", data.len())));
    }
    let reader = ImageReader::new(Cursor::new(data))
        .with_guessed_format()
        .map_err(|e| ProtectError::Decode(e.to_string()))?;
    let format = reader
        .format()
        .ok_or_else(|| ProtectError::Decode("unknown format".into()))?;
    if !matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP
    ) {
        return Err(ProtectError::Decode(format!("{format:?} is not handled")));
    }
    let (w, h) = ImageReader::with_format(Cursor::new(data), format)
        .into_dimensions()
        .map_err(|e| ProtectError::Decode(e.to_string()))?;
    if w > limits.max_side || h > limits.max_side || u64::from(w) * u64::from(h) > limits.max_pixels
    {
        return Err(ProtectError::Limit(format!("{w}×{h}")));
    }
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_side);
    l.max_image_height = Some(limits.max_side);
    l.max_alloc = Some(limits.max_alloc);
    let mut reader = ImageReader::with_format(Cursor::new(data), format);
    reader.limits(l);
    let img = reader
        .decode()
        .map_err(|e| ProtectError::Decode(e.to_string()))?;
    Ok((img, format))
}

/// The luminance quantization table of Annex K of the JPEG standard,
/// which libjpeg (and most encoders) scale by quality.
const STD_LUMA: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];

/// The quality (1–100, libjpeg's scale) a JPEG was saved at, estimated
/// from its first luminance quantization table (`DQT`, table 0): the
/// table's sum against the standard table's gives libjpeg's scale factor.
/// `None` for a file without one (or not a JPEG). Tables of other
/// encoders give the libjpeg quality of equal overall coarseness.
pub fn jpeg_quality(data: &[u8]) -> Option<u8> {
    if data.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2usize;
    loop {
        if *data.get(i)? != 0xFF {
            return None;
        }
        let marker = *data.get(i + 1)?;
        if marker == 0xFF {
            i += 1;
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            return None; // no table before the first scan
        }
        let len = usize::from(u16::from_be_bytes([*data.get(i + 2)?, *data.get(i + 3)?]));
        let payload = data.get(i + 4..(i + 2).checked_add(len)?)?;
        if marker == 0xDB {
            let mut t = payload;
            while let Some((&pq_tq, rest)) = t.split_first() {
                let wide = pq_tq >> 4 == 1;
                let n = if wide { 128 } else { 64 };
                let table = rest.get(..n)?;
                if pq_tq & 0x0F == 0 {
                    let sum: u32 = if wide {
                        table
                            .chunks_exact(2)
                            .map(|b| u32::from(u16::from_be_bytes([b[0], b[1]])))
                            .sum()
                    } else {
                        table.iter().map(|b| u32::from(*b)).sum()
                    };
                    let std: u32 = STD_LUMA.iter().map(|v| u32::from(*v)).sum();
                    let scale = f64::from(sum) * 100.0 / f64::from(std);
                    let q = if scale <= 100.0 {
                        (200.0 - scale) / 2.0
                    } else {
                        5000.0 / scale
                    };
                    return Some(q.round().clamp(1.0, 100.0) as u8);
                }
                t = rest.get(n..)?;
            }
        }
        i += 2 + len;
    }
}

/// Encodes in `format` (JPEG at `quality`, PNG, lossless WebP). A
/// grayscale image stays grayscale.
pub fn encode(
    img: &DynamicImage,
    format: ImageFormat,
    quality: u8,
) -> Result<Vec<u8>, ProtectError> {
    let mut out = Cursor::new(Vec::new());
    match format {
        ImageFormat::Jpeg => {
            let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
            let written = match img {
                DynamicImage::ImageLuma8(g) => g.write_with_encoder(enc),
                _ => img.to_rgb8().write_with_encoder(enc),
            };
            written.map_err(|e| ProtectError::Encode(e.to_string()))?;
        }
        ImageFormat::Png | ImageFormat::WebP => {
            img.write_to(&mut out, format)
                .map_err(|e| ProtectError::Encode(e.to_string()))?;
        }
        other => return Err(ProtectError::Encode(format!("{other:?}"))),
    }
    Ok(out.into_inner())
}

fn mime(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Png => "image/png",
        ImageFormat::WebP => "image/webp",
        _ => "image/jpeg",
    }
}

/// Downscales so the long side is at most `max_side` (never upscales).
pub fn degrade(img: &DynamicImage, max_side: u32) -> DynamicImage {
    if img.width().max(img.height()) <= max_side {
        return img.clone();
    }
    img.resize(max_side, max_side, FilterType::Triangle)
}

fn visible_mark(img: &mut RgbImage) {
    // A hatched corner badge: "this is a reduced copy".
    let (w, h) = img.dimensions();
    let size = (w.min(h) / 8).max(8);
    for y in h.saturating_sub(size)..h {
        for x in w.saturating_sub(size)..w {
            if (x + y) % 6 < 2 {
                let p = img.get_pixel_mut(x, y);
                for c in p.0.iter_mut() {
                    *c = ((u16::from(*c) + 255 * 2) / 3) as u8;
                }
            }
        }
    }
}

/// Runs a job: decode (limited), transform, encode in the same format,
/// insert the no-train XMP packet.
pub fn protect(job: &Job<'_>) -> Result<Output, ProtectError> {
    let (img, format) = decode(job.data, &job.limits)?;
    let img = match job.transform.max_side {
        Some(s) => degrade(&img, s),
        None => img,
    };
    let has_alpha = img.color().has_alpha();
    let gray = !img.color().has_color();
    let mut rgb = img.to_rgb8();
    if let Some(strength) = job.transform.watermark {
        watermark::embed(&mut rgb, job.payload, job.key, strength);
    }
    if job.transform.visible_mark && job.transform.max_side.is_some() {
        visible_mark(&mut rgb);
    }
    let (width, height) = rgb.dimensions();
    let out_img = if gray {
        // The watermark adds the same offset to every channel: the gray
        // levels carry it whole.
        let luma = DynamicImage::ImageRgb8(rgb).to_luma8();
        if has_alpha && format != ImageFormat::Jpeg {
            let alpha = img.to_luma_alpha8();
            let mut la = image::GrayAlphaImage::new(width, height);
            for (x, y, p) in la.enumerate_pixels_mut() {
                *p = image::LumaA([luma.get_pixel(x, y).0[0], alpha.get_pixel(x, y).0[1]]);
            }
            DynamicImage::ImageLumaA8(la)
        } else {
            DynamicImage::ImageLuma8(luma)
        }
    } else if has_alpha && format != ImageFormat::Jpeg {
        // Keep the original alpha channel.
        let alpha = img.to_rgba8();
        let mut rgba = image::RgbaImage::new(width, height);
        for (x, y, p) in rgba.enumerate_pixels_mut() {
            let c = rgb.get_pixel(x, y).0;
            *p = image::Rgba([c[0], c[1], c[2], alpha.get_pixel(x, y).0[3]]);
        }
        DynamicImage::ImageRgba8(rgba)
    } else {
        DynamicImage::ImageRgb8(rgb)
    };
    // Never below the source's own quality: a finer original keeps its
    // grain (re-encoding a quality-97 photograph at 90 smooths it).
    let quality = match format {
        ImageFormat::Jpeg => jpeg_quality(job.data)
            .map_or(job.jpeg_quality, |q| q.max(job.jpeg_quality))
            .min(100),
        _ => job.jpeg_quality,
    };
    let encoded = encode(&out_img, format, quality)?;
    let bytes = xmp::insert(&encoded, job.data_mining).unwrap_or(encoded);
    Ok(Output {
        bytes,
        content_type: mime(format),
        width,
        height,
    })
}

/// PSNR of `b` against `a` over RGB, in dB.
pub fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    let mut se = 0f64;
    for (pa, pb) in a.pixels().zip(b.pixels()) {
        for i in 0..3 {
            let d = f64::from(pa.0[i]) - f64::from(pb.0[i]);
            se += d * d;
        }
    }
    let mse = se / (f64::from(a.width() * a.height()) * 3.0).max(1.0);
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// Mean SSIM over 8×8 luma windows.
pub fn ssim(a: &DynamicImage, b: &DynamicImage) -> f64 {
    let (ga, gb) = (a.to_luma8(), b.to_luma8());
    let (w, h) = ga.dimensions();
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let (mut total, mut n) = (0f64, 0u32);
    for by in (0..h.saturating_sub(7)).step_by(8) {
        for bx in (0..w.saturating_sub(7)).step_by(8) {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0f64, 0f64, 0f64, 0f64, 0f64);
            for y in by..by + 8 {
                for x in bx..bx + 8 {
                    let va = f64::from(ga.get_pixel(x, y).0[0]);
                    let vb = f64::from(gb.get_pixel(x, y).0[0]);
                    sa += va;
                    sb += vb;
                    saa += va * va;
                    sbb += vb * vb;
                    sab += va * vb;
                }
            }
            let (ma, mb) = (sa / 64.0, sb / 64.0);
            let (va, vb) = (saa / 64.0 - ma * ma, sbb / 64.0 - mb * mb);
            let cov = sab / 64.0 - ma * mb;
            total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2))
                / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            n += 1;
        }
    }
    if n == 0 { 1.0 } else { total / f64::from(n) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A noisy "photograph": gradients plus grain.
    fn noisy(w: u32, h: u32) -> RgbImage {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        RgbImage::from_fn(w, h, |i, j| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 41) as i32 - 20;
            let base = [(i * 255 / w) as i32, (j * 255 / h) as i32, 128];
            image::Rgb(base.map(|c| (c + n).clamp(0, 255) as u8))
        })
    }

    fn jpeg_at(img: &DynamicImage, q: u8) -> Vec<u8> {
        encode(img, ImageFormat::Jpeg, q).unwrap()
    }

    #[test]
    fn the_source_quality_is_read_from_its_tables() {
        let img = DynamicImage::ImageRgb8(noisy(64, 48));
        for q in [30u8, 50, 75, 85, 90, 95, 98] {
            let est = jpeg_quality(&jpeg_at(&img, q)).unwrap();
            assert!(est.abs_diff(q) <= 1, "quality {q} read as {est}");
        }
        assert_eq!(jpeg_quality(b"\x89PNG\r\n\x1a\n"), None);
        assert_eq!(jpeg_quality(&[0xFF, 0xD8, 0xFF, 0xDB, 0x00]), None);
    }

    fn job<'a>(data: &'a [u8]) -> Job<'a> {
        Job {
            data,
            transform: Transform::watermark(),
            payload: 7,
            key: 11,
            data_mining: "DMI-PROHIBITED",
            jpeg_quality: 90,
            limits: Limits::default(),
        }
    }

    /// A fine JPEG is re-encoded at its own quality, not the configured
    /// floor; grayscale stays grayscale.
    #[test]
    fn fine_and_gray_jpegs_keep_their_quality_and_colour_model() {
        let img = DynamicImage::ImageRgb8(noisy(640, 480));
        let src = jpeg_at(&img, 97);
        let out = protect(&job(&src)).unwrap();
        assert_eq!(jpeg_quality(&out.bytes), Some(97));
        let before = image::load_from_memory(&src).unwrap().to_rgb8();
        let after = image::load_from_memory(&out.bytes).unwrap().to_rgb8();
        let at_source = psnr(&before, &after);
        // What the configured quality alone gave before: the same mark,
        // encoded once at 90.
        let mut marked = before.clone();
        watermark::embed(&mut marked, 7, 11, watermark::DEFAULT_STRENGTH);
        let floor = image::load_from_memory(&jpeg_at(&DynamicImage::ImageRgb8(marked), 90))
            .unwrap()
            .to_rgb8();
        eprintln!(
            "noisy q97 source: PSNR {at_source:.1} dB re-encoded at its quality, {:.1} dB at 90",
            psnr(&before, &floor)
        );
        assert!(at_source > psnr(&before, &floor) + 2.0);
        let gray = DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(noisy(320, 240)).to_luma8());
        let src = jpeg_at(&gray, 92);
        let out = protect(&job(&src)).unwrap();
        let back = image::load_from_memory(&out.bytes).unwrap();
        assert_eq!(back.color(), image::ColorType::L8);
        assert_eq!(jpeg_quality(&out.bytes), Some(92));
        // The mark is still read from the gray copy.
        let d = watermark::detect(&back, &gray, 11, watermark::DEFAULT_STRENGTH);
        assert!(
            d.valid && d.payload == 7,
            "watermark lost in grayscale: {d:?}"
        );
    }

    #[test]
    fn bombs_and_garbage_fail_fast() {
        // A PNG header declaring 60000×60000.
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(b"IHDR");
        ihdr.extend_from_slice(&60000u32.to_be_bytes());
        ihdr.extend_from_slice(&60000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d".to_vec();
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
        png.extend_from_slice(b"\x00\x00\x00\x00IDAT\x35\xaf\x06\x1e");
        let t = std::time::Instant::now();
        assert!(matches!(
            decode(&png, &Limits::default()),
            Err(ProtectError::Limit(_))
        ));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
        assert!(decode(b"\xff\xd8\xff\xe0garbage", &Limits::default()).is_err());
        assert!(decode(b"GIF89a", &Limits::default()).is_err());
    }
}
