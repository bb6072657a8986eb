//! Fixative's image pipeline: a pure CPU library, no I/O, no Pingora.
//!
//! Today it holds the no-train metadata writer ([`xmp`]), which inserts an
//! IPTC `plus:DataMining` XMP packet into JPEG, PNG and WebP files without
//! re-encoding them.

pub mod c2pa;
pub mod dct;
pub mod pipeline;
pub mod watermark;
pub mod xmp;
