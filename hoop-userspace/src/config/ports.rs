//! A target's port: a number (`5432`) or an inclusive range string (`"11000-11999"`).

use serde::{Deserialize, Deserializer, de};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortSpec {
    lo: u16,
    hi: u16,
}

impl PortSpec {
    pub const fn single(p: u16) -> Self {
        Self { lo: p, hi: p }
    }

    /// An inclusive range; `validate` rejects `lo > hi`.
    pub const fn range(lo: u16, hi: u16) -> Self {
        Self { lo, hi }
    }

    pub fn lo(&self) -> u16 {
        self.lo
    }

    pub fn hi(&self) -> u16 {
        self.hi
    }

    pub fn contains(&self, p: u16) -> bool {
        (self.lo..=self.hi).contains(&p)
    }

    pub(super) fn validate(&self) -> Result<(), String> {
        if self.lo == 0 {
            return Err("port 0 cannot be protected".into());
        }
        if self.lo > self.hi {
            return Err(format!("range {}-{} is empty", self.lo, self.hi));
        }
        Ok(())
    }
}

impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

impl<'de> Deserialize<'de> for PortSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(i64),
            Text(String),
        }
        let port = |n: i64| {
            u16::try_from(n).map_err(|_| de::Error::custom(format!("port {n} out of range")))
        };
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(Self::single(port(n)?)),
            Raw::Text(s) => {
                let parse = |t: &str| {
                    t.trim()
                        .parse::<i64>()
                        .map_err(|_| de::Error::custom(format!("bad port {t:?} in {s:?}")))
                };
                match s.split_once('-') {
                    Some((a, b)) => Ok(Self {
                        lo: port(parse(a)?)?,
                        hi: port(parse(b)?)?,
                    }),
                    None => Ok(Self::single(port(parse(&s)?)?)),
                }
            }
        }
    }
}
