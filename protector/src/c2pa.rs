//! Signed no-train assertions: a C2PA manifest carrying the CAWG
//! training-and-data-mining assertion (`cawg.training-mining`), signed with
//! the operator's credential and embedded into the served file.
//!
//! Built on the official `c2pa` crate (Content Authenticity Initiative,
//! MIT OR Apache-2.0) with its Rust-native crypto. A manifest binds to the
//! exact bytes served, so it is made last, after the XMP packet; the proxy
//! caches the result per image version so that the cost is paid once.
//!
//! What it achieves: a reader that checks C2PA sees, signed by the
//! operator, that training, generative training, inference and data mining
//! are not allowed (or allowed, per the path's preference). What it cannot:
//! stop anyone from stripping the manifest (re-encoding or a screenshot
//! drops it), and a reader only trusts the signer if the operator's
//! certificate chains to a trust list it uses.

use std::io::Cursor;

/// The assertion's label (CAWG 1.x).
pub const LABEL: &str = "cawg.training-mining";

/// What the assertion says, per use (`true`: allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrainingMining {
    /// `cawg.ai_training`
    pub ai_training: bool,
    /// `cawg.ai_generative_training`
    pub ai_generative_training: bool,
    /// `cawg.ai_inference`
    pub ai_inference: bool,
    /// `cawg.data_mining`
    pub data_mining: bool,
}

impl TrainingMining {
    /// The assertion's JSON (CDDL field names).
    pub fn to_json(self) -> serde_json::Value {
        let u = |b: bool| serde_json::json!({"use": if b { "allowed" } else { "notAllowed" }});
        serde_json::json!({"entries": {
            "cawg.ai_training": u(self.ai_training),
            "cawg.ai_generative_training": u(self.ai_generative_training),
            "cawg.ai_inference": u(self.ai_inference),
            "cawg.data_mining": u(self.data_mining),
        }})
    }
}

/// Signing failed (bad credential at load; a file the manifest cannot be
/// embedded in at sign time).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct C2paError(pub String);

/// The operator's signing credential, ready to sign.
pub struct Signer {
    inner: c2pa::BoxedSigner,
    generator: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("generator", &self.generator)
            .finish()
    }
}

impl Signer {
    /// A signer from a PEM certificate chain (signing certificate first),
    /// its PEM private key and an algorithm name (`ed25519`, `es256`…).
    /// The chain is checked against the C2PA certificate profile here, so
    /// a credential readers would reject fails at load, not per image.
    pub fn from_pem(
        chain: &[u8],
        key: &[u8],
        alg: &str,
        generator: &str,
    ) -> Result<Signer, C2paError> {
        let alg: c2pa::SigningAlg = alg
            .parse()
            .map_err(|e| C2paError(format!("algorithm: {e}")))?;
        let inner = c2pa::create_signer::from_keys(chain, key, alg, None)
            .map_err(|e| C2paError(format!("credential: {e}")))?;
        let s = Signer {
            inner,
            generator: generator.to_string(),
        };
        // One signature now, read back: a chain that breaks the profile
        // (self-signed leaf, missing EKU, no organization…) is refused here
        // rather than producing manifests readers reject.
        let signed = s
            .sign(&tiny_jpeg(), "image/jpeg", TrainingMining::default())
            .map_err(|e| C2paError(format!("test signature failed: {e}")))?;
        let problems = validation_failures(&signed, "image/jpeg")?;
        if !problems.is_empty() {
            return Err(C2paError(format!(
                "a test manifest does not validate: {}",
                problems.join("; ")
            )));
        }
        Ok(s)
    }

    /// `bytes` (a JPEG, PNG or WebP of `mime`) with a signed manifest
    /// holding the assertion embedded.
    pub fn sign(&self, bytes: &[u8], mime: &str, tm: TrainingMining) -> Result<Vec<u8>, C2paError> {
        let definition = serde_json::json!({
            "claim_generator_info": [{"name": self.generator, "version": env!("CARGO_PKG_VERSION")}],
        })
        .to_string();
        let mut b = c2pa::Builder::from_context(c2pa::Context::new())
            .with_definition(definition.as_str())
            .map_err(|e| C2paError(e.to_string()))?;
        // The served file is an edit of the origin's: a parent ingredient
        // and `c2pa.opened` are added for it.
        b.set_intent(c2pa::BuilderIntent::Edit);
        b.add_assertion(LABEL, &tm.to_json())
            .map_err(|e| C2paError(e.to_string()))?;
        let mut src = Cursor::new(bytes);
        let mut dst = Cursor::new(Vec::with_capacity(bytes.len() + 16 * 1024));
        b.sign(self.inner.as_ref(), mime, &mut src, &mut dst)
            .map_err(|e| C2paError(e.to_string()))?;
        Ok(dst.into_inner())
    }
}

impl Default for TrainingMining {
    /// Nothing allowed.
    fn default() -> Self {
        TrainingMining {
            ai_training: false,
            ai_generative_training: false,
            ai_inference: false,
            data_mining: false,
        }
    }
}

/// What a C2PA reader finds wrong with a signed file, beyond the signer
/// not being on the reader's trust list (an operator's own CA is not).
pub fn validation_failures(bytes: &[u8], mime: &str) -> Result<Vec<String>, C2paError> {
    let r = c2pa::Reader::from_context(c2pa::Context::new())
        .with_stream(mime, Cursor::new(bytes))
        .map_err(|e| C2paError(format!("cannot read the manifest back: {e}")))?;
    Ok(r.validation_status()
        .unwrap_or(&[])
        .iter()
        .filter(|s| s.code() != "signingCredential.untrusted")
        .map(|s| match s.explanation() {
            Some(x) => format!("{} ({x})", s.code()),
            None => s.code().to_string(),
        })
        .collect())
}

/// An 8×8 grey JPEG for the load-time test signature.
fn tiny_jpeg() -> Vec<u8> {
    let mut out = Vec::new();
    let pixels = [128u8; 64];
    let _ = jpeg_encoder::Encoder::new(&mut out, 80).encode(
        &pixels,
        8,
        8,
        jpeg_encoder::ColorType::Luma,
    );
    out
}
