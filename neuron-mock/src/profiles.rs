//! Instance profiles: what `NEURON_MOCK_INSTANCE` selects.
//!
//! Figures are the documented ones (shared/docs/libnrt-api.md section 9): NeuronCores per chip,
//! chips per instance, device memory per chip. Memory per (logical) core is the chip's memory
//! divided among its logical cores, the documented rule of thumb (Inf2/Trn1: 32 GiB per chip,
//! 16 GiB per core; Trn2: 96 GiB per chip, 24 GiB per logical core at LNC=2).

use neuron_sys::bindings::{nrt_instance_family_t, nrt_instance_size_t};

const GIB: u64 = 1 << 30;

/// One EC2 instance type the mock can pretend to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceProfile {
    /// The EC2 name, as given in `NEURON_MOCK_INSTANCE`.
    pub name: &'static str,
    /// Family code reported by `nrt_get_instance_info`.
    pub family: nrt_instance_family_t,
    /// Size code reported by `nrt_get_instance_info`.
    pub size: nrt_instance_size_t,
    /// Architecture name reported by `nrt_get_instance_info` (the real strings are unverified).
    pub arch_name: &'static str,
    /// Neuron devices (chips).
    pub chips: u32,
    /// Physical NeuronCores per chip.
    pub cores_per_chip: u32,
    /// Device memory (HBM) per chip in bytes.
    pub memory_per_chip: u64,
    /// Logical core size used when no LNC variable is set.
    pub default_lnc: u32,
    /// Logical core sizes the hardware supports.
    pub supported_lnc: &'static [u32],
}

impl InstanceProfile {
    /// Logical NeuronCores at logical core size `lnc`.
    pub fn logical_cores(&self, lnc: u32) -> u32 {
        self.chips * self.cores_per_chip / lnc.max(1)
    }

    /// Device memory per logical core at logical core size `lnc`.
    pub fn memory_per_core(&self, lnc: u32) -> u64 {
        let per_chip = (self.cores_per_chip / lnc.max(1)).max(1);
        self.memory_per_chip / u64::from(per_chip)
    }
}

/// The profile used when `NEURON_MOCK_INSTANCE` is not set.
pub const DEFAULT_INSTANCE: &str = "inf2.xlarge";

const INF2: nrt_instance_family_t = nrt_instance_family_t::NRT_INSTANCE_INF2;
const TRN1: nrt_instance_family_t = nrt_instance_family_t::NRT_INSTANCE_TRN1;
const TRN1N: nrt_instance_family_t = nrt_instance_family_t::NRT_INSTANCE_TRN1N;
const TRN2: nrt_instance_family_t = nrt_instance_family_t::NRT_INSTANCE_TRN2;
const TRN2U: nrt_instance_family_t = nrt_instance_family_t::NRT_INSTANCE_TRN2U;

const fn v2(
    name: &'static str,
    family: nrt_instance_family_t,
    size: nrt_instance_size_t,
    arch_name: &'static str,
    chips: u32,
) -> InstanceProfile {
    InstanceProfile {
        name,
        family,
        size,
        arch_name,
        chips,
        cores_per_chip: 2,
        memory_per_chip: 32 * GIB,
        default_lnc: 1,
        supported_lnc: &[1],
    }
}

const fn v3(name: &'static str, family: nrt_instance_family_t) -> InstanceProfile {
    InstanceProfile {
        name,
        family,
        size: nrt_instance_size_t::NRT_INSTANCE_SIZE_48XL,
        arch_name: "trainium2",
        chips: 16,
        cores_per_chip: 8,
        memory_per_chip: 96 * GIB,
        default_lnc: 2,
        supported_lnc: &[1, 2],
    }
}

/// Every profile, in the order the docs list them.
pub const PROFILES: &[InstanceProfile] = &[
    v2(
        "inf2.xlarge",
        INF2,
        nrt_instance_size_t::NRT_INSTANCE_SIZE_1XL,
        "inferentia2",
        1,
    ),
    v2(
        "inf2.8xlarge",
        INF2,
        nrt_instance_size_t::NRT_INSTANCE_SIZE_8XL,
        "inferentia2",
        1,
    ),
    v2(
        "inf2.24xlarge",
        INF2,
        nrt_instance_size_t::NRT_INSTANCE_SIZE_24XL,
        "inferentia2",
        6,
    ),
    v2(
        "inf2.48xlarge",
        INF2,
        nrt_instance_size_t::NRT_INSTANCE_SIZE_48XL,
        "inferentia2",
        12,
    ),
    v2(
        "trn1.2xlarge",
        TRN1,
        nrt_instance_size_t::NRT_INSTANCE_SIZE_2XL,
        "trainium",
        1,
    ),
    v2(
        "trn1.32xlarge",
        TRN1,
        nrt_instance_size_t::NRT_INSTANCE_SIZE_32XL,
        "trainium",
        16,
    ),
    v2(
        "trn1n.32xlarge",
        TRN1N,
        nrt_instance_size_t::NRT_INSTANCE_SIZE_32XL,
        "trainium",
        16,
    ),
    v3("trn2.48xlarge", TRN2),
    v3("trn2u.48xlarge", TRN2U),
];

/// Looks a profile up by its EC2 name (case-insensitive).
pub fn find(name: &str) -> Option<&'static InstanceProfile> {
    PROFILES
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name.trim()))
}

/// The profile names, for error messages.
pub fn names() -> String {
    PROFILES
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_core_counts_and_memory() {
        let cores = |name: &str, lnc| find(name).unwrap().logical_cores(lnc);
        assert_eq!(cores("inf2.xlarge", 1), 2);
        assert_eq!(cores("inf2.8xlarge", 1), 2);
        assert_eq!(cores("inf2.24xlarge", 1), 12);
        assert_eq!(cores("inf2.48xlarge", 1), 24);
        assert_eq!(cores("trn1.2xlarge", 1), 2);
        assert_eq!(cores("trn1.32xlarge", 1), 32);
        assert_eq!(cores("trn2.48xlarge", 2), 64);
        assert_eq!(cores("trn2.48xlarge", 1), 128);
        let mem = |name: &str, lnc| find(name).unwrap().memory_per_core(lnc);
        assert_eq!(mem("inf2.xlarge", 1), 16 * GIB);
        assert_eq!(mem("trn1.32xlarge", 1), 16 * GIB);
        assert_eq!(mem("trn2.48xlarge", 2), 24 * GIB);
        assert_eq!(mem("trn2.48xlarge", 1), 12 * GIB);
        // Total memory matches the documented instance totals.
        let total = |name: &str| {
            let p = find(name).unwrap();
            mem(name, p.default_lnc) * u64::from(p.logical_cores(p.default_lnc))
        };
        assert_eq!(total("inf2.48xlarge"), 384 * GIB);
        assert_eq!(total("trn1.32xlarge"), 512 * GIB);
        assert_eq!(total("trn2.48xlarge"), 1536 * GIB);
    }

    #[test]
    fn lookup() {
        assert_eq!(find(" INF2.XLARGE ").unwrap().name, "inf2.xlarge");
        assert!(find("p5.48xlarge").is_none());
        assert!(names().contains("trn2.48xlarge"));
        assert!(find(DEFAULT_INSTANCE).is_some());
    }
}
