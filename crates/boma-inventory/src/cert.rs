//! Certificate tiers: which `certs/<tier>.yml` variable file a run applies, and whether that tier
//! needs a secret from the ansible-vault.

use std::fmt;
use std::str::FromStr;

use camino::Utf8PathBuf;

/// How the VM's TLS certificates are issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CertTier {
    /// Self-signed by an internal CA: no outside service, no secret.
    Internal,
    /// Let's Encrypt's staging CA, DNS-01 through Gandi.
    LeStaging,
    /// Let's Encrypt's production CA, DNS-01 through Gandi: certificates for the production
    /// names themselves. Despite the historical name it requests no wildcard.
    LeProdWildcard,
}

/// A tier name that is not one of [`CertTier::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown cert tier `{given}`; valid tiers: {}", valid_tiers())]
pub struct UnknownCertTier {
    pub given: String,
}

fn valid_tiers() -> String {
    CertTier::ALL.map(CertTier::as_str).join(", ")
}

impl CertTier {
    pub const ALL: [CertTier; 3] = [
        CertTier::Internal,
        CertTier::LeStaging,
        CertTier::LeProdWildcard,
    ];

    /// The name used on the command line and in the file name.
    pub fn as_str(self) -> &'static str {
        match self {
            CertTier::Internal => "internal",
            CertTier::LeStaging => "le-staging",
            CertTier::LeProdWildcard => "le-prod-wildcard",
        }
    }

    /// The tier's variable file, relative to the repo root.
    pub fn vars_file(self) -> Utf8PathBuf {
        Utf8PathBuf::from(format!("certs/{}.yml", self.as_str()))
    }

    /// Whether the run needs the Gandi API token from the ansible-vault (the Let's Encrypt tiers
    /// answer the DNS-01 challenge through Gandi), so a vault password file must be given.
    pub fn needs_vault_secret(self) -> bool {
        match self {
            CertTier::Internal => false,
            CertTier::LeStaging | CertTier::LeProdWildcard => true,
        }
    }
}

impl fmt::Display for CertTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CertTier {
    type Err = UnknownCertTier;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CertTier::ALL
            .into_iter()
            .find(|tier| tier.as_str() == s)
            .ok_or_else(|| UnknownCertTier {
                given: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::CertTier;

    #[test]
    fn names_round_trip() {
        for tier in CertTier::ALL {
            assert_eq!(tier.to_string().parse::<CertTier>(), Ok(tier));
        }
    }

    #[test]
    fn files_and_secrets() {
        assert_eq!(CertTier::LeStaging.vars_file(), "certs/le-staging.yml");
        assert!(!CertTier::Internal.needs_vault_secret());
        assert!(CertTier::LeStaging.needs_vault_secret());
        assert!(CertTier::LeProdWildcard.needs_vault_secret());
    }

    #[test]
    fn unknown_tier_lists_the_valid_ones() {
        let err = "letsencrypt".parse::<CertTier>().unwrap_err();
        insta::assert_snapshot!("unknown_cert_tier", err.to_string());
    }
}
