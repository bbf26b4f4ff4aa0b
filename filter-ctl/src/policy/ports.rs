//! The host's open ports, for the closed-port policy.

use filter_common::port_mode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The host's open ports, for the closed-port policy.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ports {
    pub tcp: PortSet,
    pub udp: PortSet,
}

/// `off` (no closed-port policy), `auto` (open = a socket is there, as the
/// kernel's socket look-up sees it) or a list of ports and `lo-hi` ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PortSet {
    #[default]
    Off,
    Auto,
    List(Vec<u16>),
}

impl PortSet {
    pub(super) fn mode(&self) -> u32 {
        match self {
            PortSet::Off => port_mode::OFF,
            PortSet::Auto => port_mode::AUTO,
            PortSet::List(_) => port_mode::LIST,
        }
    }

    /// The listed ports (none unless a list).
    pub fn listed(&self) -> &[u16] {
        match self {
            PortSet::List(p) => p,
            _ => &[],
        }
    }
}

impl<'de> Deserialize<'de> for PortSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Item {
            Port(u64),
            Text(String),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            List(Vec<Item>),
        }
        let bad = |what: &str| {
            serde::de::Error::custom(format!(
                "'{what}' is not a port (1-65535) or range (lo-hi); use off, auto or a list like [22, 80, 8000-8100]"
            ))
        };
        let port = |v: u64, text: &str| match u16::try_from(v) {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(bad(text)),
        };
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "off" => Ok(PortSet::Off),
            Raw::Word(w) if w == "auto" => Ok(PortSet::Auto),
            Raw::Word(w) => Err(bad(&w)),
            Raw::List(items) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Item::Port(v) => out.push(port(v, &v.to_string())?),
                        Item::Text(t) => {
                            let (lo, hi) = t.split_once('-').ok_or_else(|| bad(&t))?;
                            let num = |x: &str| x.trim().parse::<u64>().map_err(|_| bad(&t));
                            let (lo, hi) = (port(num(lo)?, &t)?, port(num(hi)?, &t)?);
                            if lo > hi {
                                return Err(bad(&t));
                            }
                            out.extend(lo..=hi);
                        }
                    }
                }
                if out.is_empty() {
                    return Err(serde::de::Error::custom(
                        "an empty port list would close every port; write off to disable the check",
                    ));
                }
                out.sort_unstable();
                out.dedup();
                Ok(PortSet::List(out))
            }
        }
    }
}

impl Serialize for PortSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PortSet::Off => s.serialize_str("off"),
            PortSet::Auto => s.serialize_str("auto"),
            PortSet::List(p) => p.serialize(s),
        }
    }
}
