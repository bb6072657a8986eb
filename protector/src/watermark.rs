//! Invisible, robust forensic watermark with informed detection.
//!
//! **What it is.** A 64-bit payload plus a 16-bit check code (CRC-16) is
//! spread over a 16 × 16 grid of cells laid on the image in *normalised*
//! coordinates (so resizing does not move it). Each of the 256 cells adds a
//! smooth raised-cosine bump of ±`strength` grey levels to the luminance;
//! the sign is the code bit XOR a pseudo-random sign from a secret key, and
//! a keyed permutation spreads the ~3 copies of each of the 80 code bits
//! across the image, so a crop that removes the edges erases a few copies,
//! not a bit. The bumps are low-frequency: JPEG and downscaling keep them.
//!
//! **Why informed detection.** The platform holds the originals, so the
//! detector subtracts the original from the suspect copy before reading the
//! cells. That removes the image content — by far the largest "noise" for a
//! blind detector — and lets the mark stay at ~44 dB PSNR while surviving
//! JPEG q70, 0.5× downscaling, 5% crops and img2dataset's 256 px resize. A
//! blind detector would need a much stronger (visible) mark for the same
//! robustness. The original is found by perceptual hash when not given.
//! Crops and rescales are undone by a coarse-to-fine search for the scale
//! and offset that best match the original.
//!
//! **What it is not.** It does not stop training; it makes a scraped copy
//! traceable to the request that fetched it (site, client bucket, class,
//! hour). Keyed per client bucket and hour, not per request: copies fetched
//! by one scraper are identical, so averaging them gains nothing.

use image::{DynamicImage, GrayImage, RgbImage, imageops::FilterType};

/// Cells per side of the grid.
pub const GRID: usize = 16;
/// Bits of payload.
pub const PAYLOAD_BITS: usize = 64;
/// Bits of the check code.
pub const CHECK_BITS: usize = 16;
/// Bits carried.
pub const CODE_BITS: usize = PAYLOAD_BITS + CHECK_BITS;
/// Default bump amplitude in grey levels (≈ 44 dB PSNR before rounding).
pub const DEFAULT_STRENGTH: f32 = 4.0;
/// Normalised correlation a marked copy must reach (unmarked ≈ 0 ± 0.1).
pub const MATCH_THRESHOLD: f32 = 0.3;
/// Share of cells that must agree with the decoded bits.
pub const MIN_AGREEMENT: f32 = 0.75;

/// The fields of a payload, packed into 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    /// Site id (12 bits: a hash of the site name).
    pub site: u16,
    /// Client bucket (20 bits: a hash of the client's network).
    pub client: u32,
    /// Crawler or category class (8 bits).
    pub class: u8,
    /// Hours since 2025-01-01 UTC (24 bits).
    pub hour: u32,
}

impl Payload {
    /// Packs the fields.
    pub fn to_bits(self) -> u64 {
        (u64::from(self.site & 0x0fff) << 52)
            | (u64::from(self.client & 0x000f_ffff) << 32)
            | (u64::from(self.class) << 24)
            | u64::from(self.hour & 0x00ff_ffff)
    }

    /// Unpacks the fields.
    pub fn from_bits(v: u64) -> Payload {
        Payload {
            site: ((v >> 52) & 0x0fff) as u16,
            client: ((v >> 32) & 0x000f_ffff) as u32,
            class: ((v >> 24) & 0xff) as u8,
            hour: (v & 0x00ff_ffff) as u32,
        }
    }
}

/// The watermark key for a secret (FNV-1a, stable across versions): the
/// proxy and `fixative protector detect` derive it the same way.
pub fn key_from_secret(secret: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in secret.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// 12-bit site id, 20-bit client bucket and 8-bit class from names.
pub fn hash_bits(s: &str, bits: u32) -> u32 {
    // FNV-1a: stable across versions and platforms.
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h & ((1u32 << bits) - 1)
}

/// CRC-16/CCITT-FALSE of the payload.
pub fn crc16(v: u64) -> u16 {
    let mut crc: u16 = 0xffff;
    for byte in v.to_be_bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Per-cell code-bit index and key sign.
struct Layout {
    bit: Vec<usize>,
    sign: Vec<f32>,
}

fn layout(key: u64) -> Layout {
    let n = GRID * GRID;
    let mut rng = Rng(key ^ 0x5eed_f1c5_a71f_0001);
    // Cells 0..n take code bits round-robin, then are shuffled (Fisher–Yates).
    let mut bit: Vec<usize> = (0..n).map(|i| i % CODE_BITS).collect();
    for i in (1..n).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        bit.swap(i, j);
    }
    let sign = (0..n)
        .map(|_| if rng.next() & 1 == 1 { 1.0 } else { -1.0 })
        .collect();
    Layout { bit, sign }
}

fn code_bits(payload: u64) -> [bool; CODE_BITS] {
    let check = crc16(payload);
    let mut out = [false; CODE_BITS];
    for (i, b) in out.iter_mut().enumerate().take(PAYLOAD_BITS) {
        *b = (payload >> (63 - i)) & 1 == 1;
    }
    for i in 0..CHECK_BITS {
        out[PAYLOAD_BITS + i] = (check >> (15 - i)) & 1 == 1;
    }
    out
}

/// Raised-cosine window value for a position within a cell, in [0, 1].
fn window(frac: f32) -> f32 {
    0.5 - 0.5 * (std::f32::consts::TAU * frac).cos()
}

/// `x.floor() as i16` for the small values of a watermark's change,
/// without a libm call (baseline x86-64 has no rounding instruction).
#[inline]
fn floor_i16(x: f32) -> i16 {
    let t = x as i16; // truncates toward zero
    if f32::from(t) > x { t - 1 } else { t }
}

/// The mark as a separable field over a `w` × `h` image: the change at
/// pixel (x, y) is `amp[row[y].0 * GRID + col[x].0] * col[x].1 * row[y].1`
/// grey levels (before rounding). Shared by the pixel embedder below and
/// the DCT-domain one ([`crate::dct`]), so both add the same mark.
pub(crate) struct Field {
    /// Per column: its cell column and window value.
    pub col: Vec<(usize, f32)>,
    /// Per row: its cell row and window value.
    pub row: Vec<(usize, f32)>,
    /// Per cell (row-major): the signed amplitude.
    pub amp: Vec<f32>,
}

/// The mark's field, or `None` for an image smaller than the grid.
pub(crate) fn field(w: u32, h: u32, payload: u64, key: u64, strength: f32) -> Option<Field> {
    if w < GRID as u32 || h < GRID as u32 {
        return None;
    }
    let lay = layout(key);
    let bits = code_bits(payload);
    let (wf, hf) = (w as f32, h as f32);
    // Separable window tables.
    let col: Vec<(usize, f32)> = (0..w)
        .map(|x| {
            let u = (x as f32 + 0.5) / wf * GRID as f32;
            let c = (u as usize).min(GRID - 1);
            (c, window(u - c as f32))
        })
        .collect();
    let row: Vec<(usize, f32)> = (0..h)
        .map(|y| {
            let v = (y as f32 + 0.5) / hf * GRID as f32;
            let r = (v as usize).min(GRID - 1);
            (r, window(v - r as f32))
        })
        .collect();
    let amp: Vec<f32> = (0..GRID * GRID)
        .map(|c| {
            let b = if bits[lay.bit[c]] { 1.0 } else { -1.0 };
            b * lay.sign[c] * strength
        })
        .collect();
    Some(Field { col, row, amp })
}

/// Adds the mark in place. `strength` is the bump amplitude in grey levels.
pub fn embed(img: &mut RgbImage, payload: u64, key: u64, strength: f32) {
    let (w, h) = img.dimensions();
    let Some(Field { col, row, amp }) = field(w, h, payload, key, strength) else {
        return;
    };
    let stride = w as usize * 3;
    let raw: &mut [u8] = img.as_mut();
    // Per row, the whole-number change of each column, then one integer
    // add per channel (vectorizes). `floor(d + 0.5)` is exactly what
    // rounding `value + d` half away from zero adds to a non-negative
    // whole `value`, so the output is the same as rounding per channel.
    // One delta per channel, so that the add runs over the row's bytes.
    let mut deltas: Vec<i16> = vec![0; stride];
    // Each column's amplitude × window for the current row of cells.
    let mut base: Vec<f32> = vec![0.0; w as usize];
    let mut base_row = usize::MAX;
    for (line, (r, wy)) in raw.chunks_exact_mut(stride).zip(row.iter()) {
        if *r != base_row {
            let amp_row = &amp[r * GRID..(r + 1) * GRID];
            for (b, (c, wx)) in base.iter_mut().zip(col.iter()) {
                *b = amp_row[*c] * wx;
            }
            base_row = *r;
        }
        let mut any = false;
        for (dst, b) in deltas.chunks_exact_mut(3).zip(base.iter()) {
            let d = floor_i16(b * wy + 0.5);
            dst.fill(d);
            any |= d != 0;
        }
        if !any {
            continue;
        }
        for (ch, d) in line.iter_mut().zip(deltas.iter()) {
            *ch = (i16::from(*ch) + d).clamp(0, 255) as u8;
        }
    }
}

fn luma(img: &DynamicImage, w: u32, h: u32) -> GrayImage {
    let g = img.to_luma8();
    if g.dimensions() == (w, h) {
        g
    } else {
        image::imageops::resize(&g, w, h, FilterType::Triangle)
    }
}

/// Where the suspect sits in the original: its visible fraction and offset
/// (as fractions of the original's size).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alignment {
    /// Visible fraction of the original's width.
    pub scale_x: f32,
    /// Visible fraction of the original's height.
    pub scale_y: f32,
    /// Left edge, as a fraction of the original's width.
    pub x0: f32,
    /// Top edge, as a fraction of the original's height.
    pub y0: f32,
}

fn ncc(a: &GrayImage, b: &GrayImage, ox: u32, oy: u32) -> f32 {
    // b placed at (ox, oy) in a.
    let (bw, bh) = b.dimensions();
    let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0f64, 0f64, 0f64, 0f64, 0f64);
    let n = f64::from(bw * bh);
    for y in 0..bh {
        for x in 0..bw {
            let va = f64::from(a.get_pixel(ox + x, oy + y).0[0]);
            let vb = f64::from(b.get_pixel(x, y).0[0]);
            sa += va;
            sb += vb;
            saa += va * va;
            sbb += vb * vb;
            sab += va * vb;
        }
    }
    let cov = sab - sa * sb / n;
    let va = saa - sa * sa / n;
    let vb = sbb - sb * sb / n;
    if va <= 0.0 || vb <= 0.0 {
        return 0.0;
    }
    (cov / (va * vb).sqrt()) as f32
}

/// Finds how the suspect maps into the original (crop and scale), assuming
/// the aspect ratio was roughly kept. Coarse search at 64 px, refined at 192 px.
pub fn align(suspect: &DynamicImage, original: &DynamicImage) -> Alignment {
    let (ow, oh) = (original.width().max(1), original.height().max(1));
    let (sw, sh) = (suspect.width().max(1), suspect.height().max(1));
    let aspect_o = ow as f32 / oh as f32;
    let aspect_s = sw as f32 / sh as f32;
    let mut best = (
        f32::MIN,
        Alignment {
            scale_x: 1.0,
            scale_y: 1.0,
            x0: 0.0,
            y0: 0.0,
        },
    );
    for (long, scales, around) in [(64u32, 0..=16, None), (192u32, 0..=8, Some(()))] {
        let k = long as f32 / ow.max(oh) as f32;
        let (gw, gh) = (
            ((ow as f32 * k).round() as u32).max(8),
            ((oh as f32 * k).round() as u32).max(8),
        );
        let o = luma(original, gw, gh);
        let prev = best.1;
        let fy_steps: &[f32] = match around {
            None => &[0.0],
            Some(()) => &[-0.02, -0.01, 0.0, 0.01, 0.02],
        };
        for (si, dfy) in scales.flat_map(|si| fy_steps.iter().map(move |d| (si, *d))) {
            // Visible fraction of the width; the height follows the aspect
            // ratios, refined independently (padding, uneven crops).
            let fx = match around {
                None => 1.0 - si as f32 * 0.01,
                Some(()) => (prev.scale_x - 0.01 + si as f32 * 0.0025).clamp(0.5, 1.0),
            };
            let fy = match around {
                None => (fx * aspect_o / aspect_s).clamp(0.5, 1.0),
                Some(()) => (prev.scale_y + dfy).clamp(0.5, 1.0),
            };
            let (tw, th) = (
                ((gw as f32 * fx).round() as u32).max(4),
                ((gh as f32 * fy).round() as u32).max(4),
            );
            if tw > gw || th > gh {
                continue;
            }
            let s = luma(suspect, tw, th);
            let (rx, ry) = (gw - tw, gh - th);
            let (xs, ys): (Vec<u32>, Vec<u32>) = match around {
                None => ((0..=rx).collect(), (0..=ry).collect()),
                Some(()) => {
                    let cx = (prev.x0 * gw as f32).round() as i64;
                    let cy = (prev.y0 * gh as f32).round() as i64;
                    let r = 4;
                    (
                        (cx - r..=cx + r)
                            .filter(|v| *v >= 0 && *v <= rx as i64)
                            .map(|v| v as u32)
                            .collect(),
                        (cy - r..=cy + r)
                            .filter(|v| *v >= 0 && *v <= ry as i64)
                            .map(|v| v as u32)
                            .collect(),
                    )
                }
            };
            for &oy in &ys {
                for &ox in &xs {
                    let score = ncc(&o, &s, ox, oy);
                    if score > best.0 {
                        best = (
                            score,
                            Alignment {
                                scale_x: fx,
                                scale_y: fy,
                                x0: ox as f32 / gw as f32,
                                y0: oy as f32 / gh as f32,
                            },
                        );
                    }
                }
            }
        }
    }
    best.1
}

/// Result of a detection.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// The decoded 64-bit payload (meaningful only when `valid`).
    pub payload: u64,
    /// Whether the check code matched.
    pub check_ok: bool,
    /// Normalised correlation: ≈ 1 for a fresh mark, ≈ 0 for none.
    pub correlation: f32,
    /// Cells inside the suspect's visible area.
    pub cells_seen: usize,
    /// Share of visible cells whose sign agrees with the decoded bit
    /// (≈ 1 for a mark, ≈ 0.6 for noise).
    pub agreement: f32,
    /// A mark is declared: check code valid and correlation over threshold.
    pub valid: bool,
    /// The alignment used.
    pub alignment: Alignment,
}

/// Removes flat padding bars (img2dataset's "border" resize mode pads to a
/// square with black).
pub fn trim_borders(img: &DynamicImage) -> DynamicImage {
    let g = img.to_luma8();
    let (w, h) = g.dimensions();
    // A line is flat when its pixels span at most 6 grey levels.
    let flat = |pixels: &mut dyn Iterator<Item = u8>| {
        let (lo, hi) = pixels.fold((255u8, 0u8), |(lo, hi), v| (lo.min(v), hi.max(v)));
        hi.saturating_sub(lo) <= 6
    };
    let flat_row = |y: u32| flat(&mut (0..w).map(|x| g.get_pixel(x, y).0[0]));
    let flat_col = |x: u32| flat(&mut (0..h).map(|y| g.get_pixel(x, y).0[0]));
    let (mut top, mut bottom, mut left, mut right) = (0, h, 0, w);
    while top + 8 < bottom && flat_row(top) {
        top += 1;
    }
    while bottom > top + 8 && flat_row(bottom - 1) {
        bottom -= 1;
    }
    while left + 8 < right && flat_col(left) {
        left += 1;
    }
    while right > left + 8 && flat_col(right - 1) {
        right -= 1;
    }
    // Compression rings next to the bars: shave two more pixels there.
    if top > 0 {
        top += 2;
    }
    if bottom < h {
        bottom = bottom.saturating_sub(2);
    }
    if left > 0 {
        left += 2;
    }
    if right < w {
        right = right.saturating_sub(2);
    }
    if bottom <= top + 4 || right <= left + 4 {
        return img.clone();
    }
    if (top, bottom, left, right) == (0, h, 0, w) {
        img.clone()
    } else {
        img.crop_imm(left, top, right - left, bottom - top)
    }
}

/// Reads the mark of `suspect` against its `original` (informed).
pub fn detect(
    suspect: &DynamicImage,
    original: &DynamicImage,
    key: u64,
    strength: f32,
) -> Detection {
    let trimmed = trim_borders(suspect);
    let suspect = &trimmed;
    let coarse = align(suspect, original);
    let (ow, oh) = (original.width().max(1), original.height().max(1));
    let (sw, sh) = (suspect.width().max(1), suspect.height().max(1));
    // Fine alignment at the original's resolution (capped at 1024 px):
    // scale ±0.4%, offset ±2 px, on slightly blurred luma.
    let k1 = (1024.0 / ow.max(oh) as f32).min(1.0);
    let (w1, h1) = (
        ((ow as f32 * k1).round() as u32).max(GRID as u32),
        ((oh as f32 * k1).round() as u32).max(GRID as u32),
    );
    let o1 = image::imageops::blur(&luma(original, w1, h1), 1.0);
    let mut best = (f32::MIN, coarse);
    for dsx in [-0.004f32, -0.002, 0.0, 0.002, 0.004] {
        for dsy in [-0.004f32, -0.002, 0.0, 0.002, 0.004] {
            let fx = (coarse.scale_x + dsx).clamp(0.3, 1.0);
            let fy = (coarse.scale_y + dsy).clamp(0.3, 1.0);
            let tw = ((w1 as f32 * fx).round() as u32).clamp(1, w1);
            let th = ((h1 as f32 * fy).round() as u32).clamp(1, h1);
            let s1 = image::imageops::blur(&luma(suspect, tw, th), 1.0);
            let cx = (coarse.x0 * w1 as f32).round() as i64;
            let cy = (coarse.y0 * h1 as f32).round() as i64;
            let r = (2.0 * k1.max(0.25)).ceil() as i64 + 1;
            for oy in (cy - r)..=(cy + r) {
                for ox in (cx - r)..=(cx + r) {
                    if ox < 0 || oy < 0 || ox as u32 + tw > w1 || oy as u32 + th > h1 {
                        continue;
                    }
                    let score = ncc(&o1, &s1, ox as u32, oy as u32);
                    if score > best.0 {
                        best = (
                            score,
                            Alignment {
                                scale_x: tw as f32 / w1 as f32,
                                scale_y: th as f32 / h1 as f32,
                                x0: ox as f32 / w1 as f32,
                                y0: oy as f32 / h1 as f32,
                            },
                        );
                    }
                }
            }
        }
    }
    let alignment = best.1;
    // Compare in the suspect's own frame: the matching region of the
    // original, resampled to the suspect's size, so both lack the same
    // fine detail. Blur both: the bumps span whole cells.
    let (rx, ry) = (
        (alignment.x0 * ow as f32).round() as u32,
        (alignment.y0 * oh as f32).round() as u32,
    );
    let (rw, rh) = (
        ((alignment.scale_x * ow as f32).round() as u32).clamp(1, ow - rx.min(ow - 1)),
        ((alignment.scale_y * oh as f32).round() as u32).clamp(1, oh - ry.min(oh - 1)),
    );
    let (tw, th) = (sw.min(1024), sh.min(1024));
    let sigma = (tw.max(th) as f32 / GRID as f32 / 8.0).max(1.0);
    let s = image::imageops::blur(&luma(suspect, tw, th), sigma);
    // Last refinement in the suspect's frame: move each edge of the
    // original's region by up to one original pixel.
    let mut best_region = (f32::MIN, rx, ry, rw, rh, GrayImage::new(1, 1));
    for dx in -1i64..=1 {
        for dy in -1i64..=1 {
            for dw in -1i64..=1 {
                for dh in -1i64..=1 {
                    let x = rx as i64 + dx;
                    let y = ry as i64 + dy;
                    let w = rw as i64 + dw;
                    let h = rh as i64 + dh;
                    if x < 0 || y < 0 || w < 2 || h < 2 || x + w > ow as i64 || y + h > oh as i64 {
                        continue;
                    }
                    let region = original.crop_imm(x as u32, y as u32, w as u32, h as u32);
                    let o = image::imageops::blur(&luma(&region, tw, th), sigma);
                    let score = ncc(&o, &s, 0, 0);
                    if score > best_region.0 {
                        best_region = (score, x as u32, y as u32, w as u32, h as u32, o);
                    }
                }
            }
        }
    }
    let (_, rx, ry, rw, rh, o) = best_region;
    if o.dimensions() != (tw, th) {
        return Detection {
            payload: 0,
            check_ok: false,
            correlation: 0.0,
            cells_seen: 0,
            agreement: 0.0,
            valid: false,
            alignment,
        };
    }

    let lay = layout(key);
    let n = GRID * GRID;
    let mut num = vec![0f64; n];
    let mut den = vec![0f64; n];
    let mut sq = vec![0f64; n];
    let mut cnt = vec![0f64; n];
    let mut mean = 0f64;
    for y in 0..th {
        for x in 0..tw {
            mean += f64::from(s.get_pixel(x, y).0[0]) - f64::from(o.get_pixel(x, y).0[0]);
        }
    }
    mean /= f64::from(tw * th).max(1.0);
    // Suspect pixel → normalised coordinates of the original.
    let (rxf, ryf) = (rx as f32 / ow as f32, ry as f32 / oh as f32);
    let (rwf, rhf) = (rw as f32 / ow as f32, rh as f32 / oh as f32);
    for y in 0..th {
        let vf = (ryf + (y as f32 + 0.5) / th as f32 * rhf) * GRID as f32;
        let r = (vf.max(0.0) as usize).min(GRID - 1);
        let wy = window(vf - r as f32);
        for x in 0..tw {
            let uf = (rxf + (x as f32 + 0.5) / tw as f32 * rwf) * GRID as f32;
            let c = (uf.max(0.0) as usize).min(GRID - 1);
            let ov = o.get_pixel(x, y).0[0];
            // Near black or white the mark was clipped when embedded.
            if !(6..=249).contains(&ov) {
                continue;
            }
            let wgt = f64::from(window(uf - c as f32) * wy);
            let d = f64::from(s.get_pixel(x, y).0[0]) - f64::from(ov) - mean;
            num[r * GRID + c] += d * wgt;
            den[r * GRID + c] += wgt * wgt;
            sq[r * GRID + c] += d * d;
            cnt[r * GRID + c] += 1.0;
        }
    }
    // A cell counts when most of its window energy is visible.
    let full = {
        let cell_w = f64::from(tw) / f64::from(rwf.max(1e-3)) / GRID as f64;
        let cell_h = f64::from(th) / f64::from(rhf.max(1e-3)) / GRID as f64;
        cell_w * cell_h * 9.0 / 64.0
    };
    let mut soft = [0f64; CODE_BITS];
    let mut cells_seen = 0;
    let mut per_cell = Vec::with_capacity(n);
    for cell in 0..n {
        if den[cell] < full * 0.85 {
            continue;
        }
        cells_seen += 1;
        let corr = num[cell] / den[cell] * f64::from(lay.sign[cell]);
        // Cells where the residual is noisy (texture, sub-pixel
        // misalignment) count less: weight by the inverse residual power.
        let power = sq[cell] / cnt[cell].max(1.0);
        soft[lay.bit[cell]] += corr / (power + 1.0);
        per_cell.push((lay.bit[cell], corr));
    }
    let bits: Vec<bool> = soft.iter().map(|v| *v > 0.0).collect();
    let mut payload = 0u64;
    for b in bits.iter().take(PAYLOAD_BITS) {
        payload = (payload << 1) | u64::from(*b);
    }
    let mut check = 0u16;
    for b in bits.iter().skip(PAYLOAD_BITS) {
        check = (check << 1) | u16::from(*b);
    }
    let check_ok = cells_seen > 0 && crc16(payload) == check;
    // Mean signed amplitude relative to the embedding strength.
    let correlation = if per_cell.is_empty() {
        0.0
    } else {
        let sum: f64 = per_cell
            .iter()
            .map(|(b, corr)| if bits[*b] { *corr } else { -*corr })
            .sum();
        (sum / per_cell.len() as f64 / f64::from(strength)) as f32
    };
    let agreeing = per_cell
        .iter()
        .filter(|(b, corr)| (*corr > 0.0) == bits[*b])
        .count();
    let agreement = if per_cell.is_empty() {
        0.0
    } else {
        agreeing as f32 / per_cell.len() as f32
    };
    Detection {
        payload,
        check_ok,
        correlation,
        cells_seen,
        agreement,
        valid: check_ok
            && (MATCH_THRESHOLD..=2.5).contains(&correlation)
            && agreement >= MIN_AGREEMENT,
        alignment,
    }
}

/// A 64-bit difference hash (9 × 8 grey, row gradients), for finding the
/// original of a copy.
pub fn dhash(img: &DynamicImage) -> u64 {
    let g = image::imageops::resize(&img.to_luma8(), 9, 8, FilterType::Triangle);
    let mut h = 0u64;
    for y in 0..8 {
        for x in 0..8 {
            h = (h << 1) | u64::from(g.get_pixel(x, y).0[0] < g.get_pixel(x + 1, y).0[0]);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    /// The integer per-row form of `embed` changes every pixel exactly as
    /// rounding each channel of `value + d` would.
    #[test]
    fn embed_matches_per_channel_rounding() {
        let mut img = image::RgbImage::from_fn(301, 187, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 13 % 256) as u8,
                ((x ^ y) % 256) as u8,
            ])
        });
        let reference = {
            let mut r = img.clone();
            let (w, h) = r.dimensions();
            let lay = super::layout(9);
            let bits = super::code_bits(0xdead_beef_0123_4567);
            for y in 0..h {
                for x in 0..w {
                    let u = (x as f32 + 0.5) / w as f32 * super::GRID as f32;
                    let v = (y as f32 + 0.5) / h as f32 * super::GRID as f32;
                    let (c, rr) = (
                        (u as usize).min(super::GRID - 1),
                        (v as usize).min(super::GRID - 1),
                    );
                    let cell = rr * super::GRID + c;
                    let b = if bits[lay.bit[cell]] { 1.0 } else { -1.0 };
                    let amp = b * lay.sign[cell] * 3.0;
                    let d = amp * super::window(u - c as f32) * super::window(v - rr as f32);
                    for ch in r.get_pixel_mut(x, y).0.iter_mut() {
                        *ch = (f32::from(*ch) + d).round().clamp(0.0, 255.0) as u8;
                    }
                }
            }
            r
        };
        super::embed(&mut img, 0xdead_beef_0123_4567, 9, 3.0);
        assert!(img == reference);
    }

    use super::*;

    fn photo() -> RgbImage {
        // A smooth, textured synthetic image.
        RgbImage::from_fn(320, 240, |x, y| {
            let v = 128.0 + 60.0 * ((x as f32) / 23.0).sin() * ((y as f32) / 17.0).cos();
            image::Rgb([v as u8, (v * 0.8) as u8, (255.0 - v) as u8])
        })
    }

    #[test]
    fn payload_packs_and_crc_detects_errors() {
        let p = Payload {
            site: 0xabc,
            client: 0x12345,
            class: 7,
            hour: 0x00beef,
        };
        assert_eq!(Payload::from_bits(p.to_bits()), p);
        let v = p.to_bits();
        assert_ne!(crc16(v), crc16(v ^ 1));
    }

    #[test]
    fn embeds_and_recovers_and_unmarked_is_not_reported() {
        let orig = photo();
        let mut marked = orig.clone();
        let payload = 0x0123_4567_89ab_cdef;
        embed(&mut marked, payload, 42, DEFAULT_STRENGTH);
        let o = DynamicImage::ImageRgb8(orig.clone());
        let d = detect(&DynamicImage::ImageRgb8(marked), &o, 42, DEFAULT_STRENGTH);
        assert!(d.valid, "{d:?}");
        assert_eq!(d.payload, payload);
        let d = detect(&o, &o, 42, DEFAULT_STRENGTH);
        assert!(!d.valid, "{d:?}");
    }

    #[test]
    fn dhash_is_stable_under_resize() {
        let o = DynamicImage::ImageRgb8(photo());
        let small = o.resize(160, 120, FilterType::Triangle);
        assert!((dhash(&o) ^ dhash(&small)).count_ones() <= 4);
    }
}
