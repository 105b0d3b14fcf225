//! Port lists with ranges, as selectors write them: `8080`, `"80,443,8000-8999"` or `[80, "9000-9100"]`.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

/// An inclusive range of TCP ports, `start <= end`, both in 1..=65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

/// A set of port ranges; a port matches when any range contains it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRanges(Vec<PortRange>);

impl PortRanges {
    /// Whether `port` is in any of the ranges.
    pub fn contains(&self, port: u16) -> bool {
        self.0
            .iter()
            .any(|range| (range.start..=range.end).contains(&port))
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let port = |part: &str| -> Result<u16, String> {
            match part.trim().parse::<u32>() {
                Ok(port @ 1..=65535) => Ok(port as u16),
                _ => Err(format!(
                    "invalid port {:?} in {text:?}: expected 1-65535",
                    part.trim()
                )),
            }
        };
        let (start, end) = match text.split_once('-') {
            Some((start, end)) => (port(start)?, port(end)?),
            None => (port(text)?, port(text)?),
        };
        if start > end {
            return Err(format!(
                "invalid port range {text:?}: {start} is above {end}"
            ));
        }
        Ok(PortRange { start, end })
    }
}

impl FromStr for PortRanges {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let ranges = text
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<PortRange>, _>>()?;
        Ok(PortRanges(ranges))
    }
}

impl fmt::Display for PortRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, range) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            match range.start == range.end {
                true => write!(f, "{}", range.start)?,
                false => write!(f, "{}-{}", range.start, range.end)?,
            }
        }
        Ok(())
    }
}

/// What YAML may hold for a port list.
#[derive(Deserialize)]
#[serde(untagged)]
enum PortsInput {
    Number(i64),
    Text(String),
    List(Vec<PortsInput>),
}

impl PortsInput {
    fn flatten(self, into: &mut Vec<PortRange>) -> Result<(), String> {
        match self {
            PortsInput::Number(port) => into.push(port.to_string().parse()?),
            PortsInput::Text(text) => into.extend(text.parse::<PortRanges>()?.0),
            PortsInput::List(items) => {
                for item in items {
                    item.flatten(into)?;
                }
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for PortRanges {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut ranges = Vec::new();
        PortsInput::deserialize(deserializer)?
            .flatten(&mut ranges)
            .map_err(D::Error::custom)?;
        if ranges.is_empty() {
            return Err(D::Error::custom("empty port list"));
        }
        Ok(PortRanges(ranges))
    }
}

impl Serialize for PortRanges {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
