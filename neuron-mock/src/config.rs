//! Every environment variable the mock reads, parsed in one place.
//!
//! The mock reads the real runtime's `NEURON_RT_*` variables the way the runtime does, plus its
//! own `NEURON_MOCK_*` ones (listed in the README). Everything is read at `nrt_init`, except
//! what the header allows before it (core counts, version), which is read at each call.
//! A malformed value is an error naming the variable, never a silent default.

use std::time::Duration;

use crate::faults::FaultPlan;
use crate::profiles::{self, InstanceProfile};

/// The runtime version reported when `NEURON_MOCK_RT_VERSION` is not set: runtime 2.31.24.0
/// (Neuron SDK 2.29), which uses the current dtype encoding.
pub const DEFAULT_RT_VERSION: &str = "2.31.24.0";

/// Seconds an execution may wait (for a collective, or a busy output) when
/// `NEURON_RT_EXEC_TIMEOUT` is not set; the runtime configuration guide's default.
pub const DEFAULT_EXEC_TIMEOUT_SECS: f64 = 30.0;

/// A variable's value, trimmed; `None` when unset or empty.
pub(crate) fn env_var(name: &str) -> Option<String> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// Which cores exist and which this process sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Topology {
    pub(crate) profile: &'static InstanceProfile,
    /// Logical core size.
    pub(crate) lnc: u32,
    /// First visible core, as an absolute core index.
    pub(crate) first_visible: u32,
    /// Number of visible cores; API core indices run from 0 to this.
    pub(crate) visible: u32,
}

impl Topology {
    /// Reads `NEURON_MOCK_INSTANCE`, the LNC variables, `NEURON_RT_VISIBLE_CORES` and
    /// `NEURON_RT_NUM_CORES`.
    pub(crate) fn from_env() -> Result<Topology, String> {
        let profile = match env_var("NEURON_MOCK_INSTANCE") {
            None => profiles::find(profiles::DEFAULT_INSTANCE)
                .ok_or_else(|| "the default instance profile is missing".to_string())?,
            Some(name) => profiles::find(&name).ok_or_else(|| {
                format!(
                    "NEURON_MOCK_INSTANCE={name:?} is not a known instance type; known: {}",
                    profiles::names()
                )
            })?,
        };
        let lnc = logical_core_size(profile)?;
        let total = profile.logical_cores(lnc);
        let (first_visible, visible) = match (
            env_var("NEURON_RT_VISIBLE_CORES"),
            env_var("NEURON_RT_NUM_CORES"),
        ) {
            (Some(list), _) => parse_visible_cores(&list, total)?,
            (None, Some(n)) => (0, parse_num_cores(&n, total)?),
            (None, None) => (0, total),
        };
        Ok(Topology {
            profile,
            lnc,
            first_visible,
            visible,
        })
    }

    /// Logical cores on the instance.
    pub(crate) fn total(&self) -> u32 {
        self.profile.logical_cores(self.lnc)
    }

    /// Device memory of one logical core.
    pub(crate) fn memory_per_core(&self) -> u64 {
        self.profile.memory_per_core(self.lnc)
    }
}

fn logical_core_size(profile: &InstanceProfile) -> Result<u32, String> {
    let mut chosen: Option<(u32, &str)> = None;
    for name in ["NEURON_LOGICAL_NC_CONFIG", "NEURON_RT_VIRTUAL_CORE_SIZE"] {
        let Some(value) = env_var(name) else { continue };
        let lnc: u32 = value
            .parse()
            .map_err(|_| format!("{name}={value:?} is not a logical core size (1 or 2)"))?;
        if let Some((other, other_name)) = chosen
            && other != lnc
        {
            return Err(format!("{other_name}={other} and {name}={lnc} disagree"));
        }
        chosen = Some((lnc, name));
    }
    match chosen {
        None => Ok(profile.default_lnc),
        Some((lnc, _)) if profile.supported_lnc.contains(&lnc) => Ok(lnc),
        Some((lnc, name)) => Err(format!(
            "{name}={lnc}: {} supports logical core sizes {:?}",
            profile.name, profile.supported_lnc
        )),
    }
}

/// Parses `NEURON_RT_VISIBLE_CORES` (`3`, `3-6`, `3-5,6`): contiguous and ascending, as the
/// real runtime requires. Returns (first core, count).
pub(crate) fn parse_visible_cores(value: &str, total: u32) -> Result<(u32, u32), String> {
    let bad = |why: &str| format!("NEURON_RT_VISIBLE_CORES={value:?}: {why}");
    let mut range: Option<(u32, u32)> = None; // inclusive
    for part in value.split(',') {
        let part = part.trim();
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (part, part),
        };
        let lo: u32 = lo
            .parse()
            .map_err(|_| bad(&format!("{part:?} is not a core index or range")))?;
        let hi: u32 = hi
            .parse()
            .map_err(|_| bad(&format!("{part:?} is not a core index or range")))?;
        if hi < lo {
            return Err(bad(&format!("range {part:?} is descending")));
        }
        range = match range {
            None => Some((lo, hi)),
            Some((start, end)) if end.checked_add(1) == Some(lo) => Some((start, hi)),
            Some(_) => {
                return Err(bad(
                    "cores must be one contiguous ascending range (the runtime rejects gaps \
                     and reordering)",
                ));
            }
        };
    }
    let (start, end) = range.ok_or_else(|| bad("empty"))?;
    if end >= total {
        return Err(bad(&format!(
            "NeuronCore {end} not available: the instance has {total} (0-{})",
            total.saturating_sub(1)
        )));
    }
    Ok((start, end - start + 1))
}

fn parse_num_cores(value: &str, total: u32) -> Result<u32, String> {
    let n: u32 = value
        .parse()
        .map_err(|_| format!("NEURON_RT_NUM_CORES={value:?} is not a number"))?;
    match n {
        0 => Ok(total),
        n if n <= total => Ok(n),
        n => Err(format!(
            "NEURON_RT_NUM_CORES={n}: not enough NeuronCores available (the instance has {total})"
        )),
    }
}

/// The runtime version the mock reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MockVersion {
    pub(crate) major: u64,
    pub(crate) minor: u64,
    pub(crate) patch: u64,
    pub(crate) maintenance: u64,
}

impl MockVersion {
    /// `NEURON_MOCK_RT_VERSION` (`2.29`, `2.29.40`, `2.29.40.0`), or [`DEFAULT_RT_VERSION`].
    pub(crate) fn from_env() -> Result<MockVersion, String> {
        let text = env_var("NEURON_MOCK_RT_VERSION");
        let text = text.as_deref().unwrap_or(DEFAULT_RT_VERSION);
        MockVersion::parse(text).ok_or_else(|| {
            format!("NEURON_MOCK_RT_VERSION={text:?} is not a version like 2.29.40.0")
        })
    }

    fn parse(text: &str) -> Option<MockVersion> {
        let parts: Vec<u64> = text
            .split('.')
            .map(|p| p.trim().parse().ok())
            .collect::<Option<_>>()?;
        if parts.len() < 2 || parts.len() > 4 {
            return None;
        }
        let at = |i: usize| parts.get(i).copied().unwrap_or(0);
        Some(MockVersion {
            major: at(0),
            minor: at(1),
            patch: at(2),
            maintenance: at(3),
        })
    }

    /// How this version numbers dtypes (neuron-sys's rule: renumbered at 2.30).
    pub(crate) fn dtype_encoding(&self) -> neuron_sys::DTypeEncoding {
        neuron_sys::DTypeEncoding::for_version(Some(&neuron_sys::RuntimeVersion {
            major: self.major,
            minor: self.minor,
            patch: self.patch,
            maintenance: self.maintenance,
            detail: String::new(),
            git_hash: String::new(),
        }))
    }

    /// Whether this version is at least `major.minor`.
    pub(crate) fn at_least(&self, major: u64, minor: u64) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

impl std::fmt::Display for MockVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}.{}.{}.{}",
            self.major, self.minor, self.patch, self.maintenance
        )
    }
}

/// `NEURON_RT_EXEC_TIMEOUT` in seconds (fractions allowed, for tests), or the default.
pub(crate) fn exec_timeout() -> Result<Duration, String> {
    let Some(text) = env_var("NEURON_RT_EXEC_TIMEOUT") else {
        return Ok(Duration::from_secs_f64(DEFAULT_EXEC_TIMEOUT_SECS));
    };
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e9)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| {
            format!("NEURON_RT_EXEC_TIMEOUT={text:?} is not a positive number of seconds")
        })
}

fn truthy(name: &str) -> bool {
    env_var(name)
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// Everything `nrt_init` reads.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) topology: Topology,
    pub(crate) version: MockVersion,
    pub(crate) exec_timeout: Duration,
    pub(crate) faults: FaultPlan,
    /// `NEURON_RT_VALIDATE_HASH`: check the NEFF header's hash at load.
    pub(crate) validate_hash: bool,
    /// `NEURON_MOCK_MATMUL`: the arithmetic of the Llama kernels' weight products.
    pub(crate) matmul: crate::kernels::llama::packed::Precision,
}

impl Config {
    pub(crate) fn from_env() -> Result<Config, String> {
        Ok(Config {
            topology: Topology::from_env()?,
            version: MockVersion::from_env()?,
            exec_timeout: exec_timeout()?,
            faults: match env_var("NEURON_MOCK_FAULTS") {
                None => FaultPlan::default(),
                Some(text) => FaultPlan::parse(&text)
                    .map_err(|e| format!("NEURON_MOCK_FAULTS={text:?}: {e}"))?,
            },
            validate_hash: truthy("NEURON_RT_VALIDATE_HASH"),
            matmul: crate::kernels::llama::packed::Precision::from_env()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_cores() {
        assert_eq!(parse_visible_cores("3", 8), Ok((3, 1)));
        assert_eq!(parse_visible_cores("3-6", 8), Ok((3, 4)));
        assert_eq!(parse_visible_cores("3-5,6", 8), Ok((3, 4)));
        assert_eq!(parse_visible_cores("0,1", 2), Ok((0, 2)));
        for bad in ["3,5", "5,4", "6-3", "x", "1-", "", "2", "0-2"] {
            let err = parse_visible_cores(bad, 2).unwrap_err();
            assert!(err.contains("NEURON_RT_VISIBLE_CORES"), "{bad}: {err}");
        }
    }

    #[test]
    fn num_cores() {
        assert_eq!(parse_num_cores("0", 4), Ok(4));
        assert_eq!(parse_num_cores("2", 4), Ok(2));
        assert!(parse_num_cores("5", 4).is_err());
        assert!(parse_num_cores("-1", 4).is_err());
    }

    #[test]
    fn versions() {
        let v = MockVersion::parse("2.29").unwrap();
        assert_eq!((v.major, v.minor, v.patch, v.maintenance), (2, 29, 0, 0));
        assert_eq!(
            MockVersion::parse(DEFAULT_RT_VERSION).unwrap().to_string(),
            "2.31.24.0"
        );
        assert!(MockVersion::parse("2").is_none());
        assert!(MockVersion::parse("2.x").is_none());
        assert!(MockVersion::parse("1.2.3.4.5").is_none());
        assert!(v.at_least(2, 29) && !v.at_least(2, 30));
    }
}
