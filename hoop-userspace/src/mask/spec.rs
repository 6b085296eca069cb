//! The masking profile as written in the policy file (`[mask_profiles.NAME]`), and the errors
//! that name what is wrong in one. Compiled into a [`Masker`](super::Masker) once per load.
use serde::Deserialize;

/// One `[mask_profiles.NAME]` table. Every field is optional; an empty table is the default
/// profile (all detectors, built-in column rules, no custom patterns). See `docs/masking.md`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// Detectors run over every textual value and message text. Default: all of them.
    #[serde(default = "DetectorKind::all")]
    pub detectors: Vec<DetectorKind>,
    /// Whether the built-in column-name rules ([`DEFAULT_COLUMNS`]) apply. Default `true`.
    #[serde(default = "yes")]
    pub default_columns: bool,
    /// More column-name globs (`*` any run, `?` one character; case-insensitive; whole name).
    #[serde(default)]
    pub columns: Vec<String>,
    /// Options of the `phone` detector.
    #[serde(default)]
    pub phone: PhoneOptions,
    /// Profile-specific patterns, as `[[mask_profiles.NAME.custom]]` tables.
    #[serde(default)]
    pub custom: Vec<CustomRule>,
}

impl Default for ProfileSpec {
    fn default() -> Self {
        ProfileSpec {
            detectors: DetectorKind::all(),
            default_columns: true,
            columns: Vec::new(),
            phone: PhoneOptions::default(),
            custom: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// Column-name globs applied when `default_columns` is true. A result column whose name matches
/// has its whole value replaced (see `docs/masking.md` for the value of each type).
pub const DEFAULT_COLUMNS: &[&str] = &[
    "password",
    "*_password",
    "password_*",
    "passwd",
    "pwd",
    "secret",
    "*_secret",
    "secret_*",
    "token",
    "*_token",
    "api_key",
    "*_api_key",
    "apikey",
    "private_key",
    "*_private_key",
    "ssn",
    "cvv",
    "cvc",
];

/// A built-in detector, named in `detectors = [...]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    Email,
    CreditCard,
    Iban,
    Phone,
    AzureStorageKey,
    AzureSas,
    ConnectionString,
    Jwt,
    PemPrivateKey,
    GithubToken,
    AzureDevopsPat,
}

impl DetectorKind {
    pub const ALL: [DetectorKind; 11] = [
        DetectorKind::Email,
        DetectorKind::CreditCard,
        DetectorKind::Iban,
        DetectorKind::Phone,
        DetectorKind::AzureStorageKey,
        DetectorKind::AzureSas,
        DetectorKind::ConnectionString,
        DetectorKind::Jwt,
        DetectorKind::PemPrivateKey,
        DetectorKind::GithubToken,
        DetectorKind::AzureDevopsPat,
    ];

    fn all() -> Vec<DetectorKind> {
        Self::ALL.to_vec()
    }

    /// The name used in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::Email => "email",
            DetectorKind::CreditCard => "credit_card",
            DetectorKind::Iban => "iban",
            DetectorKind::Phone => "phone",
            DetectorKind::AzureStorageKey => "azure_storage_key",
            DetectorKind::AzureSas => "azure_sas",
            DetectorKind::ConnectionString => "connection_string",
            DetectorKind::Jwt => "jwt",
            DetectorKind::PemPrivateKey => "pem_private_key",
            DetectorKind::GithubToken => "github_token",
            DetectorKind::AzureDevopsPat => "azure_devops_pat",
        }
    }

    pub(super) fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// `[mask_profiles.NAME.phone]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneOptions {
    /// Fewest digits (country code included) a phone number has. Default 9; at least 7.
    #[serde(default = "nine")]
    pub min_digits: u8,
    /// Only numbers written with a leading `+` (international form). Default `false`.
    #[serde(default)]
    pub international_only: bool,
}

fn nine() -> u8 {
    9
}

impl Default for PhoneOptions {
    fn default() -> Self {
        PhoneOptions {
            min_digits: 9,
            international_only: false,
        }
    }
}

/// `[[mask_profiles.NAME.custom]]`: every match of `pattern` becomes `replacement` (taken
/// literally: `$1` is not expanded).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// Names the rule in errors and docs.
    pub name: String,
    /// Rust `regex` syntax, matched against the value's text.
    pub pattern: String,
    /// Default `****`.
    #[serde(default = "stars")]
    pub replacement: String,
}

fn stars() -> String {
    "****".into()
}

/// Why a profile does not compile. Each variant names the field (and rule) at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskSpecError {
    #[error("columns[{index}] is empty")]
    EmptyColumnGlob { index: usize },
    #[error("phone.min_digits = {value}: must be between 7 and 15")]
    PhoneMinDigits { value: u8 },
    #[error("custom[{index}]: name is empty")]
    CustomNameEmpty { index: usize },
    #[error("custom[{index}] ({name:?}): duplicate name")]
    CustomNameDuplicate { index: usize, name: String },
    #[error("custom[{index}] ({name:?}): invalid pattern: {reason}")]
    CustomPattern {
        index: usize,
        name: String,
        reason: String,
    },
    #[error("custom[{index}] ({name:?}): pattern matches the empty string")]
    CustomPatternEmptyMatch { index: usize, name: String },
    #[error("custom[{index}] ({name:?}): replacement contains a NUL or control character")]
    CustomReplacementControl { index: usize, name: String },
    #[error(
        "custom[{index}] ({name:?}): replacement matches the pattern, so masked text would be masked again"
    )]
    CustomReplacementMatches { index: usize, name: String },
}
