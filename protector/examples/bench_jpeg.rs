//! Writes a photograph-like JPEG of about `KIB` KiB for the load benchmark
//! (`benches/load.sh`): a repository photograph, upscaled, encoded at
//! quality 92, the quality lowered until it fits.
//!
//! ```sh
//! cargo run --release -p fixative-protector --example bench_jpeg -- OUT.jpg [KIB]
//! ```

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args.next().ok_or("usage: bench_jpeg OUT.jpg [KIB]")?;
    let kib: usize = args.next().and_then(|k| k.parse().ok()).unwrap_or(200);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let src = image::open(root.join("proxy/assets/art/astronaut.png"))?.to_rgb8();
    let img = image::imageops::resize(&src, 1024, 1024, image::imageops::FilterType::Triangle);
    let mut quality = 95u8;
    loop {
        let mut buf = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality).encode_image(&img)?;
        if buf.len() <= kib * 1024 || quality <= 40 {
            std::fs::write(&out, &buf)?;
            eprintln!("{out}: {} KiB at quality {quality}", buf.len() / 1024);
            return Ok(());
        }
        quality -= 3;
    }
}
