//! Property tests: NEFF parsing survives any corruption (in the rlib and through `nrt_load`
//! in the library), NEFFs round-trip, and tensor writes read back.
//!
//! Inputs per run: 3000 header/archive mutations, 1500 tar-level mutations, 500 manifest
//! mutations parsed in-process; 400 mutated NEFFs loaded through the C API; 300 round trips
//! of random programs; 300 tensor write/read round trips.

#![allow(clippy::unwrap_used)]

#[macro_use]
mod common;

use std::io::Read;

use common::*;
use neuron_mock::neff::{self, MockNeff, NeffHeader, Usage};
use neuron_sys::DType;
use proptest::prelude::*;

fn sample_neff() -> Vec<u8> {
    MockNeff::new("matmul")
        .name("fuzz")
        .input("x", DType::BF16, &[2, 8])
        .input("w", DType::BF16, &[8, 4])
        .output("y", DType::F32, &[2, 4])
        .param("transpose_b", false)
        .file("extra.bin", vec![7u8; 300])
        .to_bytes()
        .unwrap()
}

/// The uncompressed tar inside the sample NEFF.
fn sample_tar() -> Vec<u8> {
    let bytes = sample_neff();
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(&bytes[neff::HEADER_SIZE..])
        .read_to_end(&mut tar)
        .unwrap();
    tar
}

/// A NEFF around an arbitrary (possibly corrupt) archive, with a consistent header.
fn container(archive: &[u8]) -> Vec<u8> {
    neff::write_container(&NeffHeader::for_archive("fuzz", archive, 0), archive)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Truncate { len: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Overwrite { at: usize, bytes: Vec<u8> },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Overwrite { at, bytes }),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        if bytes.is_empty() {
            break;
        }
        match m {
            Mutation::Flip { at, mask } => {
                let i = at % bytes.len();
                bytes[i] ^= mask;
            }
            Mutation::Truncate { len } => bytes.truncate(len % bytes.len()),
            Mutation::Insert { at, bytes: new } => {
                let i = at % bytes.len();
                bytes.splice(i..i, new.iter().copied());
            }
            Mutation::Overwrite { at, bytes: new } => {
                let i = at % bytes.len();
                for (j, b) in new.iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(i + j) {
                        *slot = *b;
                    }
                }
            }
        }
    }
    bytes
}

/// Mutations aimed at the header: the first 1024 bytes hold its fields.
fn header_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (0usize..neff::HEADER_SIZE, 1u8..).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        (0usize..0x230, prop::collection::vec(any::<u8>(), 8))
            .prop_map(|(at, bytes)| Mutation::Overwrite { at, bytes }),
        mutation(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_corrupt_files(mutations in prop::collection::vec(header_mutation(), 1..4)) {
        let bytes = apply(sample_neff(), &mutations);
        if let Ok(parsed) = neff::parse(&bytes) {
            // Whatever parses is a valid program.
            parsed.program.validate().unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_corrupt_archives(mutations in prop::collection::vec(mutation(), 1..4), compress in any::<bool>()) {
        let tar = apply(sample_tar(), &mutations);
        let archive = if compress { gzip(&tar) } else { tar };
        let _ = neff::parse(&container(&archive));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_corrupt_manifests(json in "\\{[ -~]{0,200}\\}", cut in any::<usize>()) {
        let manifest = serde_json::to_vec(MockNeff::new("copy").input("x", DType::F32, &[1]).output("y", DType::F32, &[1]).program()).unwrap();
        // Either a random object, or the real manifest cut short.
        let candidates = [json.into_bytes(), manifest[..cut % manifest.len()].to_vec()];
        for content in candidates {
            let archive = neff::write_archive(&[(neff::MANIFEST_NAME, &content)]).unwrap();
            let _ = neff::parse(&container(&archive));
        }
    }
}

fn dtype() -> impl Strategy<Value = DType> {
    prop::sample::select(DType::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn programs_round_trip(
        tensors in prop::collection::vec(("[a-z_][a-z0-9_.:/]{0,40}", dtype(), prop::collection::vec(0usize..64, 0..4), any::<bool>()), 0..12),
        name in "[ -~]{0,300}",
        lnc in 0u32..3,
    ) {
        let mut builder = MockNeff::new("copy").name(name.clone()).lnc_size(lnc);
        let mut seen = std::collections::HashSet::new();
        for (n, d, shape, output) in tensors {
            let usage = if output { Usage::Output } else { Usage::Input };
            if seen.insert((n.clone(), usage)) {
                builder = builder.tensor(n, d, &shape, usage);
            }
        }
        let state_conflict = builder.program().validate().is_err();
        match builder.to_bytes() {
            Ok(bytes) => {
                let parsed = neff::parse(&bytes).unwrap();
                prop_assert_eq!(&parsed.program, builder.program());
                prop_assert_eq!(parsed.header.lnc_size, lnc);
                // Header strings are cut to their field, at a character boundary.
                prop_assert!(name.starts_with(&parsed.header.name));
                parsed.verify_hash().unwrap();
            }
            Err(e) => prop_assert!(state_conflict, "{e}"),
        }
    }
}

/// Corrupt NEFFs through nrt_load: a status, never a crash, and nothing leaked.
#[test]
fn nrt_load_survives_corrupt_neffs() {
    let rt = Rt::init();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 400,
        ..ProptestConfig::default()
    });
    let loaded = std::cell::Cell::new(0);
    runner
        .run(
            &prop::collection::vec(header_mutation(), 1..4),
            |mutations| {
                let bytes = apply(sample_neff(), &mutations);
                match rt.load(&bytes, 0) {
                    Ok(model) => {
                        loaded.set(loaded.get() + 1);
                        rt.unload(model);
                    }
                    Err(status) => prop_assert!(
                        status == neuron_sys::bindings::NRT_STATUS::NRT_INVALID
                            || status
                                == neuron_sys::bindings::NRT_STATUS::NRT_UNSUPPORTED_NEFF_VERSION,
                        "unexpected {status}"
                    ),
                }
                Ok(())
            },
        )
        .unwrap();
    // Some mutations hit padding or the payload's slack and still load.
    assert!(loaded.get() < 400);
    rt.assert_no_leaks();
}

/// Writes read back exactly, at any offset, through slices too.
#[test]
fn tensor_writes_read_back() {
    let rt = Rt::init();
    let t = rt.device(4096, "t");
    let shadow = std::cell::RefCell::new(vec![0u8; 4096]);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(
                0usize..4096,
                prop::collection::vec(any::<u8>(), 0..512),
                any::<bool>(),
            ),
            |(offset, bytes, via_slice)| {
                let fits = offset + bytes.len() <= 4096;
                let status = if via_slice && fits {
                    let s = rt.slice(t, offset, bytes.len(), "s").unwrap();
                    let status = rt.write(s, 0, &bytes);
                    rt.free(s);
                    status
                } else {
                    rt.write(t, offset, &bytes)
                };
                if fits {
                    prop_assert_eq!(status, SUCCESS);
                    shadow.borrow_mut()[offset..offset + bytes.len()].copy_from_slice(&bytes);
                } else {
                    prop_assert_eq!(status, neuron_sys::bindings::NRT_STATUS::NRT_INVALID);
                }
                prop_assert_eq!(rt.read(t, 0, 4096).unwrap(), shadow.borrow().clone());
                Ok(())
            },
        )
        .unwrap();
    rt.free(t);
    rt.assert_no_leaks();
}
