//! Network signals from MaxMind-format databases (GeoLite2 / DB-IP
//! "ASN" and "Country" files): autonomous system and country.
//!
//! Files are read whole and verified when the configuration loads; lookups
//! are in-memory and allocation-free. A missing, unreadable or invalid file
//! is a load error, so a reload keeps the last good databases.

use std::net::IpAddr;
use std::path::Path;

use maxminddb::{Reader, geoip2};

/// What the databases say about an address.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetInfo {
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// ISO 3166-1 alpha-2 country, upper-case.
    pub country: Option<[u8; 2]>,
}

/// The loaded databases.
#[derive(Default)]
pub struct Network {
    asn: Option<Reader<Vec<u8>>>,
    country: Option<Reader<Vec<u8>>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("asn", &self.asn.is_some())
            .field("country", &self.country.is_some())
            .finish()
    }
}

fn open(path: &Path) -> Result<Reader<Vec<u8>>, String> {
    let r = Reader::open_readfile(path).map_err(|e| format!("{}: {e}", path.display()))?;
    r.verify()
        .map_err(|e| format!("{}: not a valid MaxMind DB: {e}", path.display()))?;
    Ok(r)
}

impl Network {
    /// Opens and verifies the configured databases.
    pub fn load(asn: Option<&Path>, country: Option<&Path>) -> Result<Network, String> {
        Ok(Network {
            asn: asn.map(open).transpose()?,
            country: country.map(open).transpose()?,
        })
    }

    /// One lookup over the ASN database of `asn` and the country database
    /// of `country` (each loaded on its own, for separate errors).
    pub fn combine(asn: Network, country: Network) -> Network {
        Network {
            asn: asn.asn,
            country: country.country,
        }
    }

    /// Whether any database is loaded.
    pub fn is_empty(&self) -> bool {
        self.asn.is_none() && self.country.is_none()
    }

    /// Looks an address up; unknown parts are `None`.
    pub fn lookup(&self, ip: IpAddr) -> NetInfo {
        let asn = self.asn.as_ref().and_then(|r| {
            r.lookup(ip)
                .ok()?
                .decode::<geoip2::Asn>()
                .ok()
                .flatten()?
                .autonomous_system_number
        });
        let country = self.country.as_ref().and_then(|r| {
            let c = r
                .lookup(ip)
                .ok()?
                .decode::<geoip2::Country>()
                .ok()
                .flatten()?;
            let code = c.country.iso_code?.as_bytes();
            match code {
                [a, b] => Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()]),
                _ => None,
            }
        });
        NetInfo { asn, country }
    }

    /// The organisation of an AS number's network, for reasons.
    pub fn asn_org(&self, ip: IpAddr) -> Option<String> {
        self.asn_info(ip).1
    }

    /// The AS number and its organisation, in one lookup.
    pub fn asn_info(&self, ip: IpAddr) -> (Option<u32>, Option<String>) {
        let a = self
            .asn
            .as_ref()
            .and_then(|r| r.lookup(ip).ok()?.decode::<geoip2::Asn>().ok().flatten());
        match a {
            Some(a) => (
                a.autonomous_system_number,
                a.autonomous_system_organization.map(str::to_string),
            ),
            None => (None, None),
        }
    }
}
