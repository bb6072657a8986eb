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
    let format = probe(data, limits)?;
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

/// The format of a file this pipeline handles, once its size and its
/// header's dimensions are within the limits (no pixel is decoded).
pub fn probe(data: &[u8], limits: &Limits) -> Result<ImageFormat, ProtectError> {
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
    Ok(format)
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
    let mut found = None;
    jpeg_headers(data, |marker, payload| {
        if marker != 0xDB {
            return true;
        }
        let Some((_, table)) = dqt_tables(payload).into_iter().find(|(id, _)| *id == 0) else {
            return true;
        };
        let sum: u32 = table.iter().map(|v| u32::from(*v)).sum();
        let std: u32 = STD_LUMA.iter().map(|v| u32::from(*v)).sum();
        let scale = f64::from(sum) * 100.0 / f64::from(std);
        let q = if scale <= 100.0 {
            (200.0 - scale) / 2.0
        } else {
            5000.0 / scale
        };
        found = Some(q.round().clamp(1.0, 100.0) as u8);
        false
    });
    found
}

/// The quantization tables of one `DQT` segment's payload: (table id,
/// 64 steps in zigzag order), 8- or 16-bit; a truncated table ends it.
pub(crate) fn dqt_tables(payload: &[u8]) -> Vec<(u8, [u16; 64])> {
    let mut out = Vec::new();
    let mut t = payload;
    while let Some((&pq_tq, rest)) = t.split_first() {
        let wide = pq_tq >> 4 == 1;
        let n = if wide { 128 } else { 64 };
        let Some(raw) = rest.get(..n) else {
            break;
        };
        let mut table = [0u16; 64];
        if wide {
            for (v, b) in table.iter_mut().zip(raw.chunks_exact(2)) {
                *v = u16::from_be_bytes([b[0], b[1]]);
            }
        } else {
            for (v, b) in table.iter_mut().zip(raw) {
                *v = u16::from(*b);
            }
        }
        out.push((pq_tq & 0x0F, table));
        let Some(next) = rest.get(n..) else {
            break;
        };
        t = next;
    }
    out
}

/// The luma (first component's) sampling factors of a colour JPEG, from
/// its frame header: `(2, 2)` is 4:2:0, `(1, 1)` 4:4:4. `None` for a
/// grayscale file or one without a readable frame header.
pub fn jpeg_sampling(data: &[u8]) -> Option<(u8, u8)> {
    let mut found = None;
    jpeg_headers(data, |marker, payload| {
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            // P, Y, X, Nf, then Nf × (C, H<<4|V, Tq).
            if let (Some(&nf), Some(&hv)) = (payload.get(5), payload.get(7))
                && nf >= 3
            {
                found = Some((hv >> 4, hv & 0x0F));
            }
            return false;
        }
        true
    });
    found
}

/// Walks a JPEG's marker segments up to the first scan, calling
/// `f(marker, payload)` until it returns `false`. Bounded by the data:
/// every read is checked.
pub(crate) fn jpeg_headers(data: &[u8], mut f: impl FnMut(u8, &[u8]) -> bool) {
    if data.get(..2) != Some(&[0xFF, 0xD8][..]) {
        return;
    }
    let mut i = 2usize;
    loop {
        if data.get(i) != Some(&0xFF) {
            return;
        }
        let Some(&marker) = data.get(i + 1) else {
            return;
        };
        if marker == 0xFF {
            i += 1;
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            return;
        }
        let (Some(&a), Some(&b)) = (data.get(i + 2), data.get(i + 3)) else {
            return;
        };
        let len = usize::from(u16::from_be_bytes([a, b]));
        let Some(payload) = (i + 2)
            .checked_add(len)
            .and_then(|end| data.get(i + 4..end))
        else {
            return;
        };
        if !f(marker, payload) {
            return;
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
    encode_sampled(img, format, quality, None)
}

/// [`encode`], a JPEG with the given luma sampling factors (the source's:
/// 4:4:4 stays 4:4:4); without them the encoder's default (4:2:0 below
/// quality 90, else 4:4:4).
pub fn encode_sampled(
    img: &DynamicImage,
    format: ImageFormat,
    quality: u8,
    sampling: Option<(u8, u8)>,
) -> Result<Vec<u8>, ProtectError> {
    let mut out = Cursor::new(Vec::new());
    match format {
        ImageFormat::Jpeg => {
            let (w, h) = (
                u16::try_from(img.width()).map_err(|_| ProtectError::Encode("too wide".into()))?,
                u16::try_from(img.height()).map_err(|_| ProtectError::Encode("too tall".into()))?,
            );
            let mut enc = jpeg_encoder::Encoder::new(out.get_mut(), quality);
            if let Some(f) =
                sampling.and_then(|(h, v)| jpeg_encoder::SamplingFactor::from_factors(h, v))
            {
                enc.set_sampling_factor(f);
            }
            let written = match img {
                DynamicImage::ImageLuma8(g) => {
                    enc.encode(g.as_raw(), w, h, jpeg_encoder::ColorType::Luma)
                }
                DynamicImage::ImageRgb8(c) => {
                    enc.encode(c.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)
                }
                other => enc.encode(other.to_rgb8().as_raw(), w, h, jpeg_encoder::ColorType::Rgb),
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

/// Downscales so the long side is at most `max_side` (never upscales),
/// keeping the aspect ratio: a bilinear convolution (SIMD, with alpha
/// premultiplied while resampling).
pub fn degrade(img: &DynamicImage, max_side: u32) -> DynamicImage {
    let (w, h) = (img.width(), img.height());
    if w.max(h) <= max_side {
        return img.clone();
    }
    let (tw, th) = fit(w, h, max_side);
    resize(img, tw, th).unwrap_or_else(|| img.resize(max_side, max_side, FilterType::Triangle))
}

/// The size of `w`×`h` scaled so its long side is `max_side`.
pub(crate) fn fit(w: u32, h: u32, max_side: u32) -> (u32, u32) {
    let s = f64::from(max_side) / f64::from(w.max(h));
    (
        ((f64::from(w) * s).round() as u32).clamp(1, max_side),
        ((f64::from(h) * s).round() as u32).clamp(1, max_side),
    )
}

/// Resizes with fast_image_resize; `None` for a pixel layout it is not
/// given here (16-bit, float), which then takes the slower path.
fn resize(img: &DynamicImage, tw: u32, th: u32) -> Option<DynamicImage> {
    use fast_image_resize::images::{Image, ImageRef};
    use fast_image_resize::{FilterType as F, PixelType, ResizeAlg, ResizeOptions, Resizer};
    let (pt, raw): (PixelType, &[u8]) = match img {
        DynamicImage::ImageRgb8(i) => (PixelType::U8x3, i.as_raw()),
        DynamicImage::ImageRgba8(i) => (PixelType::U8x4, i.as_raw()),
        DynamicImage::ImageLuma8(i) => (PixelType::U8, i.as_raw()),
        DynamicImage::ImageLumaA8(i) => (PixelType::U8x2, i.as_raw()),
        _ => return None,
    };
    // Borrowed: the source is read, never copied.
    let src = ImageRef::new(img.width(), img.height(), raw, pt).ok()?;
    let mut dst = Image::new(tw, th, pt);
    let opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(F::Bilinear));
    Resizer::new().resize(&src, &mut dst, &opts).ok()?;
    let buf = dst.into_vec();
    Some(match pt {
        PixelType::U8x3 => DynamicImage::ImageRgb8(RgbImage::from_raw(tw, th, buf)?),
        PixelType::U8x4 => DynamicImage::ImageRgba8(image::RgbaImage::from_raw(tw, th, buf)?),
        PixelType::U8 => DynamicImage::ImageLuma8(image::GrayImage::from_raw(tw, th, buf)?),
        _ => DynamicImage::ImageLumaA8(image::GrayAlphaImage::from_raw(tw, th, buf)?),
    })
}

/// A JPEG decoded straight at (about) the size it will be shown: the
/// inverse DCT scaled by 1/2, 1/4 or 1/8 so that the result is still at
/// least `max_side` on its long side, then resized to exactly that. Most
/// of a full decode's work (the inverse DCT and colour conversion of every
/// pixel) is skipped. `None` for what this path does not take (CMYK,
/// 12-bit, a broken file): the full decode handles or refuses it.
fn decode_jpeg_scaled(data: &[u8], limits: &Limits, max_side: u32) -> Option<DynamicImage> {
    // libjpeg-turbo first (SIMD entropy decoding and scaled IDCT: ~2× the
    // pure-Rust decoder on a 12 MP photograph); that decoder for what it
    // declines.
    let (img, (w, h)) = match crate::dct::decode_scaled(data, limits, max_side) {
        Some(d) => (packed_image(d.width, d.height, d.gray, d.pixels)?, d.full),
        None => decode_jpeg_scaled_rust(data, limits, max_side)?,
    };
    let (tw, th) = fit(w, h, max_side);
    if (img.width(), img.height()) == (tw, th) {
        Some(img)
    } else {
        resize(&img, tw, th)
    }
}

/// jpeg-decoder's scaled decode (see [`decode_jpeg_scaled`]): the image at
/// the scale decoded, and the full size.
fn decode_jpeg_scaled_rust(
    data: &[u8],
    limits: &Limits,
    max_side: u32,
) -> Option<(DynamicImage, (u32, u32))> {
    let mut d = jpeg_decoder::Decoder::new(Cursor::new(data));
    d.set_max_decoding_buffer_size(usize::try_from(limits.max_alloc).unwrap_or(usize::MAX));
    d.read_info().ok()?;
    let info = d.info()?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    if w.max(h) <= max_side {
        return None;
    }
    let (tw, th) = fit(w, h, max_side);
    let (sw, sh) = d
        .scale(u16::try_from(tw).ok()?, u16::try_from(th).ok()?)
        .ok()?;
    let pixels = d.decode().ok()?;
    let gray = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => false,
        jpeg_decoder::PixelFormat::L8 => true,
        _ => return None,
    };
    Some((
        packed_image(u32::from(sw), u32::from(sh), gray, pixels)?,
        (w, h),
    ))
}

/// Packed 8-bit RGB (or gray) pixels as an image.
fn packed_image(w: u32, h: u32, gray: bool, pixels: Vec<u8>) -> Option<DynamicImage> {
    Some(if gray {
        DynamicImage::ImageLuma8(image::GrayImage::from_raw(w, h, pixels)?)
    } else {
        DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, pixels)?)
    })
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
    // A full-size JPEG watermark: in the DCT domain (no decode, no
    // re-encode, no generation loss) when the file allows it.
    if let (None, Some(strength), true) = (
        job.transform.max_side,
        job.transform.watermark,
        job.data.starts_with(&[0xFF, 0xD8, 0xFF]),
    ) {
        probe(job.data, &job.limits)?;
        if let Some((marked, width, height)) =
            crate::dct::embed_jpeg(job.data, job.payload, job.key, strength, &job.limits)
        {
            let bytes = xmp::insert(&marked, job.data_mining).unwrap_or(marked);
            return Ok(Output {
                bytes,
                content_type: mime(ImageFormat::Jpeg),
                width,
                height,
            });
        }
    }
    let (img, format) = match job.transform.max_side {
        // A JPEG preview: decoded at about its final size.
        Some(s) if job.data.starts_with(&[0xFF, 0xD8, 0xFF]) => {
            // Limits first, from the header, as for a full decode.
            probe(job.data, &job.limits)?;
            match decode_jpeg_scaled(job.data, &job.limits, s) {
                Some(img) => (img, ImageFormat::Jpeg),
                None => {
                    let (img, f) = decode(job.data, &job.limits)?;
                    (degrade(&img, s), f)
                }
            }
        }
        Some(s) => {
            let (img, f) = decode(job.data, &job.limits)?;
            (degrade(&img, s), f)
        }
        None => decode(job.data, &job.limits)?,
    };
    let has_alpha = img.color().has_alpha();
    let gray = !img.color().has_color();
    // An RGB image is taken as it is (no copy); others are converted and
    // kept for their alpha channel.
    let (mut rgb, img) = match img {
        DynamicImage::ImageRgb8(rgb) => (rgb, None),
        other => (other.to_rgb8(), Some(other)),
    };
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
        if let (true, true, Some(img)) = (has_alpha, format != ImageFormat::Jpeg, &img) {
            let alpha = img.to_luma_alpha8();
            let mut la = image::GrayAlphaImage::new(width, height);
            for (x, y, p) in la.enumerate_pixels_mut() {
                *p = image::LumaA([luma.get_pixel(x, y).0[0], alpha.get_pixel(x, y).0[1]]);
            }
            DynamicImage::ImageLumaA8(la)
        } else {
            DynamicImage::ImageLuma8(luma)
        }
    } else if let (true, true, Some(img)) = (has_alpha, format != ImageFormat::Jpeg, &img) {
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
    let sampling = (format == ImageFormat::Jpeg)
        .then(|| jpeg_sampling(job.data))
        .flatten();
    let encoded = encode_sampled(&out_img, format, quality, sampling)?;
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
    fn jpeg_previews_decode_scaled_and_keep_the_sources_subsampling() {
        let img = DynamicImage::ImageRgb8(noisy(2000, 1500));
        for sampling in [(2u8, 2u8), (1, 1)] {
            let src = encode_sampled(&img, ImageFormat::Jpeg, 90, Some(sampling)).unwrap();
            assert_eq!(jpeg_sampling(&src), Some(sampling));
            // Full size: the source's subsampling is kept.
            let full = protect(&job(&src)).unwrap();
            assert_eq!(jpeg_sampling(&full.bytes), Some(sampling));
            // Preview: decoded at 1/2 (1000×750), resized to 512×384.
            let mut j = job(&src);
            j.transform = Transform::preview(512);
            let out = protect(&j).unwrap();
            assert_eq!((out.width, out.height), (512, 384));
            assert_eq!(jpeg_sampling(&out.bytes), Some(sampling));
            let back = image::load_from_memory(&out.bytes).unwrap();
            assert_eq!((back.width(), back.height()), (512, 384));
            // The same picture as a full decode then resize, and marked.
            let (full_img, _) = decode(&src, &Limits::default()).unwrap();
            let reference = degrade(&full_img, 512);
            let p = psnr(&reference.to_rgb8(), &back.to_rgb8());
            assert!(p > 30.0, "scaled decode differs: {p:.1} dB");
            let d = watermark::detect(&back, &reference, 11, watermark::DEFAULT_STRENGTH);
            assert!(d.valid && d.payload == 7, "{d:?}");
        }
        // Smaller than the preview: decoded whole, size kept.
        let small = encode(
            &DynamicImage::ImageRgb8(noisy(300, 200)),
            ImageFormat::Jpeg,
            90,
        )
        .unwrap();
        let mut j = job(&small);
        j.transform = Transform::preview(512);
        let out = protect(&j).unwrap();
        assert_eq!((out.width, out.height), (300, 200));
        // Grayscale has no chroma subsampling to keep.
        let gray = encode(
            &DynamicImage::ImageLuma8(img.to_luma8()),
            ImageFormat::Jpeg,
            90,
        )
        .unwrap();
        assert_eq!(jpeg_sampling(&gray), None);
        let mut j = job(&gray);
        j.transform = Transform::preview(512);
        let out = protect(&j).unwrap();
        assert_eq!(
            image::load_from_memory(&out.bytes).unwrap().color(),
            image::ColorType::L8
        );
        // Headers that lie never panic the readers.
        for bad in [
            &[0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x02][..],
            &[0xFF, 0xD8, 0xFF, 0xC0, 0xFF, 0xFF, 0x08],
        ] {
            assert_eq!(jpeg_sampling(bad), None);
            assert_eq!(jpeg_quality(bad), None);
        }
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        fn source() -> &'static Vec<u8> {
            static S: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
            S.get_or_init(|| {
                encode_sampled(
                    &DynamicImage::ImageRgb8(noisy(700, 500)),
                    ImageFormat::Jpeg,
                    85,
                    Some((2, 2)),
                )
                .unwrap()
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Mutated JPEGs through the scaled preview path and the
            /// header readers: an error or an image, never a panic.
            #[test]
            fn mutated_jpeg_previews_never_panic(
                muts in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
                cut in any::<prop::sample::Index>(),
            ) {
                let mut data = source().clone();
                for (i, b) in muts {
                    let at = i.index(data.len());
                    data[at] = b;
                }
                data.truncate(cut.index(data.len()).max(4));
                let _ = jpeg_sampling(&data);
                let _ = jpeg_quality(&data);
                let mut j = job(&data);
                j.transform = Transform::preview(128);
                let _ = protect(&j);
            }
        }
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
