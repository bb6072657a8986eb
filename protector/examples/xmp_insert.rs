//! Inserts the no-train XMP packet into an image file:
//! `cargo run -p fixative-protector --example xmp_insert IN OUT [VALUE]`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(input), Some(output)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: xmp_insert IN OUT [DMI-VALUE]");
        std::process::exit(2);
    };
    let value = args
        .get(3)
        .map(String::as_str)
        .unwrap_or("DMI-PROHIBITED-AIMLTRAINING");
    let data = std::fs::read(input)?;
    let out = fixative_protector::xmp::insert(&data, value)?;
    std::fs::write(output, out)?;
    Ok(())
}
