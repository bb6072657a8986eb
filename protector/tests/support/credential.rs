//! A C2PA test credential (shared by the tests and the bench).

/// An Ed25519 CA and a signing certificate under it that meets the C2PA
/// certificate profile (end entity, digitalSignature, emailProtection EKU,
/// authority key identifier): (chain PEM, key PEM, CA PEM).
pub fn credential() -> (String, String, String) {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Test CA");
    ca.distinguished_name
        .push(rcgen::DnType::OrganizationName, "Fixative tests");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "artist.example");
    leaf.distinguished_name
        .push(rcgen::DnType::OrganizationName, "Artist");
    leaf.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::EmailProtection];
    leaf.use_authority_key_identifier_extension = true;
    let leaf_cert = leaf.signed_by(&key, &issuer).unwrap();
    (
        format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        key.serialize_pem(),
        ca_cert.pem(),
    )
}
