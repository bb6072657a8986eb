//! The full-size watermark of a JPEG, added in the DCT domain: no pixel
//! decode, no re-encode, no generation loss.
//!
//! **How.** The mark ([`crate::watermark`]) adds the same smooth offset to
//! R, G and B, i.e. to luma only (Cb and Cr are differences of R, G and B
//! whose weights sum to zero), and it varies slowly: one raised-cosine
//! bump per 1/16 of the image. Over one 8 × 8 block it is a constant plus
//! a slope, which is what the block's DC coefficient and its two lowest
//! AC coefficients (horizontal and vertical) express. So the luma blocks'
//! quantized DC (with the rounding error carried to the next block, so the
//! local mean is exact) and first AC coefficients get the mark's
//! projection onto those basis functions, and every other coefficient and
//! both chroma planes are copied as they are. libjpeg-turbo's lossless
//! transform (`tj3Transform` with a coefficient callback, the machinery of
//! `jpegtran`) entropy-decodes the file, hands each row of luma blocks to
//! [`filter`] and entropy-encodes the result with the source's
//! quantization tables, sampling and (for a progressive source)
//! progression.
//!
//! **Effect.** The output differs from the source by the mark alone: the
//! artwork's grain, noise and chroma are bit-identical in the coefficient
//! domain, so there is no second generation of JPEG loss at any quality.
//! The file keeps its ICC profile (colours stay right); EXIF (GPS, camera
//! data, the unmarked thumbnail) and comments are not copied, as with a
//! re-encoded variant.
//!
//! **Limits.** Applies to 8-bit YCbCr and grayscale JPEGs whose luma
//! plane has full resolution (every common sampling: 4:4:4, 4:2:2, 4:2:0,
//! 4:4:0, 4:1:1); CMYK, YCCK, RGB-coded, 12-bit and lossless JPEGs return
//! `None` and take the pixel path. The quantizer of a very coarse file
//! (DC step above the mark's amplitude) rounds most blocks' change to
//! zero; the carried error keeps the mark's local mean anyway.

use std::ffi::{c_int, c_short, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};

use turbojpeg_sys as tj;

use crate::pipeline::{Limits, dqt_tables, jpeg_headers};
use crate::watermark::{self, GRID};

/// `cos((2i + 1)π/16)` for i in 0..8: the first AC basis function of the
/// 8-point DCT.
const COS1: [f32; 8] = [
    0.980_785_3,
    0.831_469_6,
    0.555_570_24,
    0.195_090_32,
    -0.195_090_32,
    -0.555_570_24,
    -0.831_469_6,
    -0.980_785_3,
];

/// The part of one block's pixels (in one direction) that falls in each
/// cell of the mark's grid: the window's sum and its first-AC-weighted sum.
#[derive(Clone, Copy, Default)]
struct Span {
    /// Pixels of the block inside the image in this direction (1..=8).
    visible: u8,
    /// Distinct cells crossed (≤ 8: a cell narrower than a block only in
    /// images under 128 px).
    len: u8,
    cell: [u8; 8],
    sum: [f32; 8],
    sum_cos: [f32; 8],
}

/// Per block column (or row) spans, from the field's per-pixel table.
fn spans(table: &[(usize, f32)]) -> Vec<Span> {
    table
        .chunks(8)
        .map(|px| {
            let mut s = Span {
                visible: px.len() as u8,
                ..Span::default()
            };
            for (i, &(cell, w)) in px.iter().enumerate() {
                let cell = cell.min(GRID - 1) as u8;
                let k = match s.cell[..usize::from(s.len)].iter().position(|&c| c == cell) {
                    Some(k) => k,
                    None => {
                        let k = usize::from(s.len);
                        s.cell[k] = cell;
                        s.len += 1;
                        k
                    }
                };
                s.sum[k] += w;
                s.sum_cos[k] += w * COS1[i];
            }
            s
        })
        .collect()
}

/// What the coefficient callback needs: the mark per block, the luma
/// quantizer, and the plane's size in blocks.
struct State {
    cols: Vec<Span>,
    rows: Vec<Span>,
    amp: Vec<f32>,
    /// Quantizer steps of the luma DC, first horizontal and first vertical
    /// AC coefficients.
    q: [f32; 3],
    /// The largest quantized magnitude 8-bit JPEG codes for each of them.
    lim: [f32; 3],
}

impl State {
    /// The change of one block's DC, horizontal and vertical first AC
    /// coefficients, unquantized (AC terms only for whole blocks).
    fn block(&self, col: &Span, row: &Span) -> (f32, f32, f32) {
        let (mut s0, mut sx, mut sy) = (0.0f32, 0.0f32, 0.0f32);
        for j in 0..usize::from(row.len) {
            let base = usize::from(row.cell[j]) * GRID;
            for i in 0..usize::from(col.len) {
                let a = self
                    .amp
                    .get(base + usize::from(col.cell[i]))
                    .copied()
                    .unwrap_or(0.0);
                s0 += a * col.sum[i] * row.sum[j];
                sx += a * col.sum_cos[i] * row.sum[j];
                sy += a * col.sum[i] * row.sum_cos[j];
            }
        }
        let n = f32::from(col.visible) * f32::from(row.visible);
        if col.visible == 8 && row.visible == 8 {
            // F(0,0) = Σf/8; F(1,0) = F(0,1) = Σ f·cos / (4√2).
            let k = 1.0 / (4.0 * std::f32::consts::SQRT_2);
            (s0 / 8.0, sx * k, sy * k)
        } else {
            // A block cut by the image's edge: shift its visible pixels by
            // their mean change (the DC moves the whole block evenly).
            (8.0 * s0 / n.max(1.0), 0.0, 0.0)
        }
    }

    /// Adds the mark to one row of luma blocks (`blocks`: 64 coefficients
    /// each, natural order) at block row `by`.
    fn apply(&self, blocks: &mut [c_short], by: usize) {
        let Some(row) = self.rows.get(by) else {
            return; // padding rows below the image
        };
        let [q_dc, q_h, q_v] = self.q;
        let [lim_dc, lim_h, lim_v] = self.lim;
        let mut carry = 0.0f32;
        for (block, col) in blocks.chunks_exact_mut(64).zip(self.cols.iter()) {
            let (dc, h, v) = self.block(col, row);
            let want = dc + carry;
            let step = (want / q_dc).round();
            carry = want - step * q_dc;
            add(block, 0, step, lim_dc);
            add(block, 1, (h / q_h).round(), lim_h);
            add(block, 8, (v / q_v).round(), lim_v);
        }
    }
}

/// Adds `delta` quantizer steps to coefficient `k`, kept within the range
/// 8-bit JPEG codes (or where it already was).
fn add(block: &mut [c_short], k: usize, delta: f32, lim: f32) {
    if delta == 0.0 {
        return;
    }
    if let Some(c) = block.get_mut(k) {
        let old = f32::from(*c);
        let new = (old + delta).clamp(old.min(-lim), old.max(lim));
        *c = new as c_short;
    }
}

/// libjpeg-turbo's coefficient callback: called once per row of blocks of
/// each component; marks component 0 (luma). Never unwinds into C.
unsafe extern "C" fn filter(
    coeffs: *mut c_short,
    array: tj::tjregion,
    _plane: tj::tjregion,
    component: c_int,
    _transform_id: c_int,
    transform: *mut tj::tjtransform,
) -> c_int {
    if component != 0 {
        return 0;
    }
    let done = catch_unwind(AssertUnwindSafe(|| {
        if coeffs.is_null() || transform.is_null() || array.w <= 0 || array.h <= 0 {
            return false;
        }
        if array.w % 8 != 0 || array.h % 8 != 0 || array.y < 0 {
            return false;
        }
        // SAFETY: `transform` is the tjtransform passed to tj3Transform,
        // whose `data` points at the `State` that outlives the call.
        let Some(state) = (unsafe { ((*transform).data as *const State).as_ref() }) else {
            return false;
        };
        let per_row = array.w as usize / 8 * 64;
        let rows = array.h as usize / 8;
        // SAFETY: libjpeg-turbo hands a w × h array of coefficients (w/8
        // blocks of 64 per block row, h/8 block rows), valid during the call.
        let all = unsafe { std::slice::from_raw_parts_mut(coeffs, per_row * rows) };
        let first = array.y as usize / 8;
        for (j, blocks) in all.chunks_exact_mut(per_row).enumerate() {
            state.apply(blocks, first + j);
        }
        true
    }));
    if done.unwrap_or(false) { 0 } else { -1 }
}

/// A TurboJPEG instance, destroyed on drop.
struct Handle(tj::tjhandle);

/// What [`Handle::open`] read from a JPEG's headers.
struct Header {
    width: u32,
    height: u32,
    colorspace: c_int,
    subsamp: c_int,
}

impl Handle {
    /// A handle of `kind` (transform or decompress) with `data`'s headers
    /// read under `limits` (pixels, memory; warnings are errors) and the
    /// `extra` parameters (set before the headers are read): `None` for a
    /// file this module does not take in any case (not 8-bit, lossless, a
    /// side of 0 or past `limits`, headers libjpeg-turbo refuses).
    fn open(
        kind: tj::TJINIT,
        data: &[u8],
        limits: &Limits,
        extra: &[(tj::TJPARAM, c_int)],
    ) -> Option<(Handle, Header)> {
        // SAFETY: plain constructor; null on failure.
        let h = unsafe { tj::tj3Init(kind as c_int) };
        let h = (!h.is_null()).then_some(Handle(h))?;
        let max_pixels = c_int::try_from(limits.max_pixels).unwrap_or(c_int::MAX);
        let max_mb = c_int::try_from(limits.max_alloc / (1024 * 1024)).unwrap_or(c_int::MAX);
        let ok = h.set(tj::TJPARAM_TJPARAM_STOPONWARNING, 1)
            && h.set(tj::TJPARAM_TJPARAM_MAXPIXELS, max_pixels)
            && h.set(tj::TJPARAM_TJPARAM_MAXMEMORY, max_mb.max(1))
            && extra.iter().all(|&(p, v)| h.set(p, v));
        if !ok {
            return None;
        }
        // SAFETY: valid handle; the buffer is read within its length.
        if unsafe { tj::tj3DecompressHeader(h.0, data.as_ptr(), data.len() as tj::size_t) } != 0 {
            return None;
        }
        if h.get(tj::TJPARAM_TJPARAM_PRECISION) != 8 || h.get(tj::TJPARAM_TJPARAM_LOSSLESS) != 0 {
            return None;
        }
        let width = u32::try_from(h.get(tj::TJPARAM_TJPARAM_JPEGWIDTH)).ok()?;
        let height = u32::try_from(h.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT)).ok()?;
        if width == 0 || height == 0 || width > limits.max_side || height > limits.max_side {
            return None;
        }
        let header = Header {
            width,
            height,
            colorspace: h.get(tj::TJPARAM_TJPARAM_COLORSPACE),
            subsamp: h.get(tj::TJPARAM_TJPARAM_SUBSAMP),
        };
        Some((h, header))
    }

    fn set(&self, param: tj::TJPARAM, value: c_int) -> bool {
        // SAFETY: valid handle.
        unsafe { tj::tj3Set(self.0, param as c_int, value) == 0 }
    }

    fn get(&self, param: tj::TJPARAM) -> c_int {
        // SAFETY: valid handle.
        unsafe { tj::tj3Get(self.0, param as c_int) }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by tj3Init, destroyed once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

/// Most scans a progressive JPEG may have when decoded here (a real one
/// has about ten; thousands of tiny scans are a known way to make a
/// decoder work for minutes).
const MAX_SCANS: c_int = 500;

/// A JPEG decoded with libjpeg-turbo's scaled inverse DCT: by 1/8, 1/4 or
/// 1/2, the smallest of them that keeps the long side at least `max_side`
/// (so only the coefficients that size needs are transformed, and colour
/// conversion runs on the scaled pixels). `None`
/// when no scale fits (the image is under twice `max_side`), for what this
/// does not take (not 8-bit, lossless, CMYK, past `limits`) and for a
/// corrupt file (warnings are errors here): the caller decodes it another
/// way or refuses it.
pub fn decode_scaled(data: &[u8], limits: &Limits, max_side: u32) -> Option<Scaled> {
    if max_side == 0 {
        return None;
    }
    let (h, header) = Handle::open(
        tj::TJINIT_TJINIT_DECOMPRESS,
        data,
        limits,
        &[
            (tj::TJPARAM_TJPARAM_SCANLIMIT, MAX_SCANS),
            (tj::TJPARAM_TJPARAM_FASTDCT, 1),
            (tj::TJPARAM_TJPARAM_FASTUPSAMPLE, 1),
        ],
    )?;
    let colorspace = header.colorspace;
    let gray = colorspace == tj::TJCS_TJCS_GRAY as c_int;
    if !(gray
        || colorspace == tj::TJCS_TJCS_YCbCr as c_int
        || colorspace == tj::TJCS_TJCS_RGB as c_int)
    {
        return None;
    }
    let (w, ht) = (header.width, header.height);
    if u64::from(w) * u64::from(ht) > limits.max_pixels {
        return None;
    }
    // libjpeg-turbo's TJSCALED: the size rounded up.
    let scaled = |n: u32, denom: u32| n.div_ceil(denom);
    let denom = [8u32, 4, 2]
        .into_iter()
        .find(|&d| scaled(w, d).max(scaled(ht, d)) >= max_side)?;
    let factor = tj::tjscalingfactor {
        num: 1,
        denom: c_int::try_from(denom).ok()?,
    };
    // SAFETY: valid handle, after the header was read.
    if unsafe { tj::tj3SetScalingFactor(h.0, factor) } != 0 {
        return None;
    }
    let (sw, sh) = (scaled(w, denom), scaled(ht, denom));
    let channels: usize = if gray { 1 } else { 3 };
    let len = usize::try_from(sw)
        .ok()?
        .checked_mul(usize::try_from(sh).ok()?)?
        .checked_mul(channels)?;
    let mut pixels = vec![0u8; len];
    let format = if gray {
        tj::TJPF_TJPF_GRAY
    } else {
        tj::TJPF_TJPF_RGB
    };
    // SAFETY: valid handle with the header read and the scale set; `pixels`
    // holds exactly sw × sh pixels of `channels` bytes (pitch 0: rows
    // packed), which is what libjpeg-turbo writes at this scale.
    let r = unsafe {
        tj::tj3Decompress8(
            h.0,
            data.as_ptr(),
            data.len() as tj::size_t,
            pixels.as_mut_ptr(),
            0,
            format as c_int,
        )
    };
    (r == 0).then_some(Scaled {
        pixels,
        width: sw,
        height: sh,
        gray,
        full: (w, ht),
    })
}

/// What [`decode_scaled`] decoded.
pub struct Scaled {
    /// RGB, 3 bytes a pixel, or one gray byte a pixel (`gray`); rows packed.
    pub pixels: Vec<u8>,
    /// Size at the scale decoded.
    pub width: u32,
    pub height: u32,
    /// A grayscale file.
    pub gray: bool,
    /// The image's full size.
    pub full: (u32, u32),
}

/// The luma quantizer steps (DC, first horizontal AC, first vertical AC)
/// and whether the file is progressive, from its headers.
fn luma_quantizer(data: &[u8]) -> Option<([f32; 3], bool)> {
    let mut tables: [Option<[u16; 3]>; 4] = [None; 4];
    let mut luma_table = None;
    let mut progressive = false;
    jpeg_headers(data, |marker, payload| {
        match marker {
            0xDB => {
                for (id, table) in dqt_tables(payload) {
                    if let Some(slot) = tables.get_mut(usize::from(id)) {
                        // Zigzag order: DC, (0,1) horizontal, (1,0) vertical.
                        *slot = Some([table[0], table[1], table[2]]);
                    }
                }
                true
            }
            0xC0..=0xCF if ![0xC4, 0xC8, 0xCC].contains(&marker) => {
                progressive = matches!(marker, 0xC2 | 0xCA);
                // P, Y, X, Nf, then (C, H<<4|V, Tq) per component.
                luma_table = payload.get(8).map(|&tq| usize::from(tq & 0x0F));
                // Tables may follow the frame header: read on to the scan.
                true
            }
            _ => true,
        }
    });
    let q = (*tables.get(luma_table?)?)?;
    if q.contains(&0) {
        return None;
    }
    Some((q.map(f32::from), progressive))
}

/// The JPEG `data` with the watermark added in the DCT domain, or `None`
/// when this file cannot take that path (see the module's limits) or
/// libjpeg-turbo refuses it (corrupt data: warnings are errors here);
/// the caller then uses the pixel path. `limits` bound the pixels and the
/// transform's working memory.
pub fn embed_jpeg(
    data: &[u8],
    payload: u64,
    key: u64,
    strength: f32,
    limits: &Limits,
) -> Option<(Vec<u8>, u32, u32)> {
    let (q, progressive) = luma_quantizer(data)?;
    // ICC profile only (see the module's doc).
    let (h, header) = Handle::open(
        tj::TJINIT_TJINIT_TRANSFORM,
        data,
        limits,
        &[(tj::TJPARAM_TJPARAM_SAVEMARKERS, 4)],
    )?;
    if !(header.colorspace == tj::TJCS_TJCS_YCbCr as c_int
        || header.colorspace == tj::TJCS_TJCS_GRAY as c_int)
        || header.subsamp == tj::TJSAMP_TJSAMP_UNKNOWN
    {
        return None;
    }
    let (w, ht) = (header.width, header.height);
    let field = watermark::field(w, ht, payload, key, strength)?;
    let state = State {
        cols: spans(&field.col),
        rows: spans(&field.row),
        amp: field.amp,
        q,
        lim: q.map(|step| (1023.0 / step).floor()),
    };
    // Optimized Huffman tables: the output is about the source's size
    // (standard tables made it ~6 % larger) for ~2× the transform's time.
    let mut options = tj::TJXOPT_OPTIMIZE as c_int;
    if progressive {
        options |= tj::TJXOPT_PROGRESSIVE as c_int;
    }
    let transform = tj::tjtransform {
        r: tj::tjregion {
            x: 0,
            y: 0,
            w: 0,
            h: 0,
        },
        op: tj::TJXOP_TJXOP_NONE as c_int,
        options,
        data: &state as *const State as *mut c_void,
        customFilter: Some(filter),
    };
    let mut dst: *mut u8 = std::ptr::null_mut();
    let mut dst_len: tj::size_t = 0;
    // SAFETY: valid handle and input; TurboJPEG allocates `dst` (freed
    // below with tj3Free); `transform` and `state` outlive the call.
    let rc = unsafe {
        tj::tj3Transform(
            h.0,
            data.as_ptr(),
            data.len() as tj::size_t,
            1,
            &mut dst,
            &mut dst_len,
            &transform,
        )
    };
    let out = if rc == 0 && !dst.is_null() {
        // SAFETY: TurboJPEG wrote `dst_len` bytes at `dst`.
        Some(unsafe { std::slice::from_raw_parts(dst, dst_len as usize) }.to_vec())
    } else {
        None
    };
    if !dst.is_null() {
        // SAFETY: allocated by TurboJPEG, freed once.
        unsafe { tj::tj3Free(dst as *mut c_void) };
    }
    out.map(|o| (o, w, ht))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::psnr;
    use image::{DynamicImage, RgbImage};

    /// A photograph-like test image: gradients, edges and grain.
    fn photo(w: u32, h: u32, seed: u32) -> RgbImage {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        RgbImage::from_fn(w, h, |x, y| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let n = (s % 41) as i32 - 20;
            let base = ((x * 255 / w.max(1)) as i32 + ((y / 37) % 2) as i32 * 60) % 256;
            let c = |k: i32| (base + k + n).clamp(0, 255) as u8;
            image::Rgb([c(0), c(30), c(-40)])
        })
    }

    fn jpeg(img: &DynamicImage, q: u8, sampling: jpeg_encoder::SamplingFactor) -> Vec<u8> {
        jpeg_p(img, q, sampling, false)
    }

    fn jpeg_p(
        img: &DynamicImage,
        q: u8,
        sampling: jpeg_encoder::SamplingFactor,
        progressive: bool,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = jpeg_encoder::Encoder::new(&mut out, q);
        enc.set_sampling_factor(sampling);
        enc.set_progressive(progressive);
        match img {
            DynamicImage::ImageLuma8(g) => enc
                .encode(
                    g.as_raw(),
                    g.width() as u16,
                    g.height() as u16,
                    jpeg_encoder::ColorType::Luma,
                )
                .unwrap(),
            other => {
                let c = other.to_rgb8();
                enc.encode(
                    c.as_raw(),
                    c.width() as u16,
                    c.height() as u16,
                    jpeg_encoder::ColorType::Rgb,
                )
                .unwrap()
            }
        }
        out
    }

    /// libjpeg-turbo's scaled decode picks the scale the pure-Rust decoder
    /// picks and gives the same picture (within what two inverse DCTs
    /// differ by), for 4:2:0, 4:4:4, progressive and grayscale files and
    /// odd sizes; grayscale stays one channel; no scale below twice the
    /// size asked for; limits hold.
    #[test]
    fn scaled_decode_matches_the_rust_decoder() {
        use jpeg_encoder::SamplingFactor as S;
        for (w, h, s, gray, progressive, max_side) in [
            (2000u32, 1500u32, S::F_2_2, false, false, 512u32),
            (1003, 677, S::F_1_1, false, true, 128),
            (1601, 1203, S::F_2_2, true, false, 400),
            (640, 480, S::F_2_1, false, false, 300),
        ] {
            let rgb = DynamicImage::ImageRgb8(photo(w, h, w ^ h));
            let img = if gray {
                DynamicImage::ImageLuma8(rgb.to_luma8())
            } else {
                rgb
            };
            let data = jpeg_p(&img, 88, s, progressive);
            let ours = decode_scaled(&data, &Limits::default(), max_side).unwrap();
            assert_eq!(ours.full, (w, h));
            assert_eq!(ours.gray, gray);
            let mut d = jpeg_decoder::Decoder::new(std::io::Cursor::new(&data));
            d.read_info().unwrap();
            let (tw, th) = crate::pipeline::fit(w, h, max_side);
            let (rw, rh) = d.scale(tw as u16, th as u16).unwrap();
            assert_eq!(
                (ours.width, ours.height),
                (u32::from(rw), u32::from(rh)),
                "{w}x{h}"
            );
            let theirs = d.decode().unwrap();
            assert_eq!(ours.pixels.len(), theirs.len());
            let as_rgb = |p: Vec<u8>| {
                if gray {
                    DynamicImage::ImageLuma8(
                        image::GrayImage::from_raw(ours.width, ours.height, p).unwrap(),
                    )
                    .to_rgb8()
                } else {
                    RgbImage::from_raw(ours.width, ours.height, p).unwrap()
                }
            };
            let db = psnr(&as_rgb(ours.pixels.clone()), &as_rgb(theirs));
            assert!(db > 35.0, "{w}x{h} gray={gray}: {db:.1} dB");
        }
        let data = jpeg(&DynamicImage::ImageRgb8(photo(900, 600, 3)), 90, S::F_2_2);
        // Under twice the size asked for: no scale, the caller decodes whole.
        assert!(decode_scaled(&data, &Limits::default(), 500).is_none());
        assert!(decode_scaled(&data, &Limits::default(), 450).is_some());
        // Past the limits: refused before decoding.
        let small = Limits {
            max_side: 800,
            ..Limits::default()
        };
        assert!(decode_scaled(&data, &small, 200).is_none());
        let few = Limits {
            max_pixels: 500_000,
            ..Limits::default()
        };
        assert!(decode_scaled(&data, &few, 200).is_none());
        // Not a JPEG, or cut short: refused, no panic.
        assert!(decode_scaled(b"not a jpeg", &Limits::default(), 100).is_none());
        assert!(decode_scaled(&data[..data.len() / 2], &Limits::default(), 200).is_none());
    }

    /// The mark is read back, chroma is untouched, luma changes only by
    /// the mark (PSNR ≥ 42 dB), for 4:2:0, 4:4:4 and grayscale, odd sizes.
    #[test]
    fn marks_luma_only_and_is_detected() {
        use jpeg_encoder::SamplingFactor as S;
        for (w, h, q, s, gray, progressive) in [
            (1003u32, 677u32, 90u8, S::F_2_2, false, false),
            (640, 480, 97, S::F_1_1, false, true),
            (333, 250, 75, S::F_2_1, false, false),
            (517, 389, 92, S::F_1_1, true, false),
        ] {
            let img = DynamicImage::ImageRgb8(photo(w, h, w ^ h));
            let img = if gray {
                DynamicImage::ImageLuma8(img.to_luma8())
            } else {
                img
            };
            let src = jpeg_p(&img, q, s, progressive);
            let (out, ow, oh) = embed_jpeg(
                &src,
                0x1234_5678_9abc,
                99,
                watermark::DEFAULT_STRENGTH,
                &Limits::default(),
            )
            .expect("DCT path applies");
            assert_eq!((ow, oh), (w, h));
            // About the source's size, and progressive stays progressive.
            assert!(
                out.len() <= src.len() + src.len() / 50 + 512,
                "{} -> {}",
                src.len(),
                out.len()
            );
            let sof2 = |d: &[u8]| d.windows(2).any(|m| m == [0xFF, 0xC2]);
            assert_eq!(sof2(&out), progressive);
            let before = image::load_from_memory(&src).unwrap();
            let after = image::load_from_memory(&out).unwrap();
            assert_eq!(after.color(), before.color(), "colour model kept");
            let p = psnr(&before.to_rgb8(), &after.to_rgb8());
            eprintln!("{w}x{h} q{q} gray={gray}: PSNR {p:.2} dB");
            assert!(p >= 42.0, "{w}x{h} q{q}: PSNR {p:.2} dB");
            let d = watermark::detect(&after, &before, 99, watermark::DEFAULT_STRENGTH);
            assert!(
                d.valid && d.payload == 0x1234_5678_9abc,
                "{w}x{h} q{q}: {d:?}"
            );
            // Same quantization tables: the quality is the source's.
            assert_eq!(
                crate::pipeline::jpeg_quality(&out),
                crate::pipeline::jpeg_quality(&src)
            );
            if !gray {
                // Chroma untouched: every unclipped pixel changes by the
                // same amount in R, G and B (a grey offset), up to the
                // colour conversion's rounding.
                let (a, b) = (before.to_rgb8(), after.to_rgb8());
                let mut changed = 0usize;
                for (p, q) in a.pixels().zip(b.pixels()) {
                    if p.0
                        .iter()
                        .chain(q.0.iter())
                        .any(|&v| !(2..=253).contains(&v))
                    {
                        continue;
                    }
                    let d: Vec<i32> = (0..3)
                        .map(|k| i32::from(q.0[k]) - i32::from(p.0[k]))
                        .collect();
                    assert!(
                        (d[0] - d[1]).abs() <= 2 && (d[2] - d[1]).abs() <= 2,
                        "{d:?}"
                    );
                    changed += usize::from(d[1] != 0);
                }
                assert!(changed > 0, "luma unchanged");
            }
        }
    }

    /// Not for this path: declined, never a panic.
    #[test]
    fn declines_what_it_cannot_mark() {
        let l = Limits::default();
        assert!(embed_jpeg(b"", 1, 2, 4.0, &l).is_none());
        assert!(embed_jpeg(b"\xFF\xD8\xFF\xD9", 1, 2, 4.0, &l).is_none());
        let src = jpeg(
            &DynamicImage::ImageRgb8(photo(200, 150, 3)),
            85,
            jpeg_encoder::SamplingFactor::F_2_2,
        );
        // Truncated: libjpeg-turbo's warning is an error here.
        assert!(embed_jpeg(&src[..src.len() / 2], 1, 2, 4.0, &l).is_none());
        // Over the pixel limit.
        let tight = Limits {
            max_pixels: 100 * 100,
            ..Limits::default()
        };
        assert!(embed_jpeg(&src, 1, 2, 4.0, &tight).is_none());
        // Smaller than the grid.
        let tiny = jpeg(
            &DynamicImage::ImageRgb8(photo(12, 12, 1)),
            85,
            jpeg_encoder::SamplingFactor::F_1_1,
        );
        assert!(embed_jpeg(&tiny, 1, 2, 4.0, &l).is_none());
        // CMYK: component 0 is not luma.
        let mut cmyk = Vec::new();
        jpeg_encoder::Encoder::new(&mut cmyk, 90)
            .encode(&[128u8; 64 * 64 * 4], 64, 64, jpeg_encoder::ColorType::Cmyk)
            .unwrap();
        assert!(crate::pipeline::probe(&cmyk, &l).is_ok());
        assert!(embed_jpeg(&cmyk, 1, 2, 4.0, &l).is_none());
    }

    /// The ICC profile is kept (colours stay right); EXIF (GPS, camera,
    /// the unmarked thumbnail) and comments are not copied.
    #[test]
    fn keeps_the_icc_profile_and_drops_exif() {
        let src = jpeg(
            &DynamicImage::ImageRgb8(photo(320, 240, 9)),
            88,
            jpeg_encoder::SamplingFactor::F_2_2,
        );
        let segment = |marker: u8, body: &[u8]| {
            let mut v = vec![0xFF, marker];
            v.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
            v.extend_from_slice(body);
            v
        };
        let mut icc = b"ICC_PROFILE\0\x01\x01".to_vec();
        icc.extend_from_slice(&[0x42; 300]);
        let mut exif = b"Exif\0\0GPS-and-thumbnail".to_vec();
        exif.extend_from_slice(&[0x17; 200]);
        let mut with = src[..2].to_vec();
        with.extend(segment(0xE1, &exif));
        with.extend(segment(0xE2, &icc));
        with.extend(segment(0xFE, b"a comment"));
        with.extend_from_slice(&src[2..]);
        let (out, _, _) = embed_jpeg(&with, 3, 4, 4.0, &Limits::default()).unwrap();
        let has = |needle: &[u8]| out.windows(needle.len()).any(|w| w == needle);
        assert!(has(&icc), "ICC profile lost");
        assert!(!has(b"GPS-and-thumbnail"), "EXIF copied");
        assert!(!has(b"a comment"), "comment copied");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Hostile bytes: any mutation of a real JPEG is marked or
        /// declined, never a crash.
        #[test]
        fn mutated_jpegs_never_crash(
            flips in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 1..8),
            cut in 0usize..5000,
        ) {
            static SRC: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
                jpeg(&DynamicImage::ImageRgb8(photo(160, 120, 7)), 80, jpeg_encoder::SamplingFactor::F_2_2)
            });
            let mut data = SRC.clone();
            for (at, b) in flips {
                let n = data.len();
                if let Some(x) = data.get_mut(at % n) {
                    *x = b;
                }
            }
            data.truncate(cut.max(2));
            let _ = embed_jpeg(&data, 5, 6, 4.0, &Limits::default());
        }
    }
}
