//! Sampled output has the target's distribution under every exact strategy.
//!
//! On the in-process toy model with a vocabulary of 6, four tokens are generated 20,000 times
//! (different seeds) under each strategy. The first comes from the prefill; the second and
//! third are decided by the first tree pass, where the strategy's candidates are verified. The
//! counts of the 36 (second, third) pairs are compared with their exact distribution,
//! computed by enumeration from the target's logits under the same sampling transform, by
//! Pearson's chi-square test. With 35 degrees of
//! freedom the 0.999 quantile is 66.62: a correct strategy fails a check with probability
//! 0.001 (the seeds are fixed, so the outcome is deterministic). Typical acceptance, which is
//! not exact, must fail the same test, which shows that the test can fail.
#![allow(clippy::unwrap_used, missing_docs)]

use std::cell::RefCell;
use std::rc::Rc;

use parallel_decode::backend::toy::{ToyConfig, ToyModel};
use parallel_decode::engine::{GenerateConfig, Verification, generate};
use parallel_decode::feature_draft::{DraftWeights, small_config, synthetic};
use parallel_decode::sampling::SamplingConfig;
use parallel_decode::strategy::draft::{Draft, DraftLength};
use parallel_decode::strategy::feature_draft::{FeatureDraftConfig, FeatureDraftProposer};
use parallel_decode::strategy::medusa::{Medusa, MedusaTree};
use parallel_decode::strategy::prompt_lookup::{PromptLookup, PromptLookupConfig};
use parallel_decode::strategy::proposer::{Autoregressive, Proposer};
use parallel_decode::strategy::verify::TypicalAcceptance;

const VOCAB: usize = 6;
const SAMPLES: u64 = 20_000;
const CHI2_35_999: f64 = 66.62;
const PROMPT: [u32; 6] = [1, 2, 3, 1, 2, 3];

fn toy(seed: u64, noise: f32, heads: usize) -> ToyModel {
    ToyModel::new(ToyConfig {
        vocab: VOCAB,
        window: 2,
        seed,
        sharpness: 1.2,
        noise,
        noise_seed: 9,
        heads,
        head_error: 0.3,
        ..ToyConfig::default()
    })
}

fn sampling() -> SamplingConfig {
    SamplingConfig {
        temperature: 0.9,
        top_k: Some(5),
        top_p: None,
    }
}

/// The exact probability of every (second, third) token pair, the first summed out.
fn exact() -> Vec<f64> {
    let m = toy(1, 0.0, 0);
    let dist = |ctx: &[u32]| {
        let mut p = Vec::new();
        sampling().distribution(&m.logits_for(ctx), &mut p);
        p
    };
    let mut out = vec![0.0; VOCAB * VOCAB];
    let p1 = dist(&PROMPT);
    for (t1, &q1) in p1.iter().enumerate() {
        let ctx1: Vec<u32> = PROMPT.iter().copied().chain([t1 as u32]).collect();
        let p2 = dist(&ctx1);
        for t2 in 0..VOCAB {
            let ctx2: Vec<u32> = ctx1.iter().copied().chain([t2 as u32]).collect();
            let p3 = dist(&ctx2);
            for t3 in 0..VOCAB {
                out[t2 * VOCAB + t3] += q1 as f64 * p2[t2] as f64 * p3[t3] as f64;
            }
        }
    }
    out
}

/// The chi-square statistic, and how many candidate tokens were accepted in all (so that a
/// test can check that candidates were really verified, not just never proposed).
fn chi_square(make: &dyn Fn() -> Box<dyn Proposer>, verification: Verification) -> (f64, u64) {
    let expected = exact();
    let mut counts = vec![0u64; VOCAB * VOCAB];
    let mut target = toy(1, 0.0, 4);
    let mut proposer = make();
    let mut accepted = 0;
    for seed in 0..SAMPLES {
        let config = GenerateConfig {
            max_tokens: 4,
            sampling: sampling(),
            seed,
            verification,
            ..GenerateConfig::default()
        };
        let g = generate(
            &mut target,
            proposer.as_mut(),
            &PROMPT,
            &config,
            &mut |_: &[u32]| true,
        )
        .unwrap();
        counts[g.tokens[1] as usize * VOCAB + g.tokens[2] as usize] += 1;
        accepted += g.tokens.len() as u64 - g.target_passes;
    }
    let mut stat = 0.0;
    for (o, e) in counts.iter().zip(&expected) {
        let e = e * SAMPLES as f64;
        if e == 0.0 {
            assert_eq!(*o, 0, "a pair of probability 0 was generated");
        } else {
            stat += (*o as f64 - e).powi(2) / e;
        }
    }
    (stat, accepted)
}

fn exact_strategy(name: &str, make: &dyn Fn() -> Box<dyn Proposer>) {
    let (stat, accepted) = chi_square(make, Verification::Exact);
    assert!(
        stat < CHI2_35_999,
        "{name}: chi-square {stat:.1} exceeds {CHI2_35_999}"
    );
    if name != "ar" {
        assert!(
            accepted > SAMPLES / 10,
            "{name}: only {accepted} candidates accepted; the test would not exercise verification"
        );
    }
}

#[test]
fn autoregressive_sampling_has_the_target_distribution() {
    exact_strategy("ar", &|| Box::new(Autoregressive));
}

#[test]
fn prompt_lookup_sampling_has_the_target_distribution() {
    exact_strategy("prompt-lookup", &|| {
        Box::new(PromptLookup::new(PromptLookupConfig {
            min_ngram: 1,
            ..Default::default()
        }))
    });
}

#[test]
fn medusa_sampling_has_the_target_distribution() {
    exact_strategy("medusa", &|| {
        Box::new(Medusa::new(MedusaTree::default_for(4)))
    });
}

#[test]
fn draft_sampling_has_the_target_distribution() {
    exact_strategy("draft", &|| {
        let draft: parallel_decode::strategy::draft::SharedModel =
            Rc::new(RefCell::new(Box::new(toy(1, 0.8, 0))));
        Box::new(Draft::new(draft, 0, DraftLength::Fixed(3), sampling(), 7).unwrap())
    });
}

#[test]
fn typical_acceptance_does_not_have_the_target_distribution() {
    let (stat, _) = chi_square(
        &|| Box::new(Medusa::new(MedusaTree::default_for(4))),
        Verification::Typical(TypicalAcceptance::default()),
    );
    assert!(
        stat > CHI2_35_999,
        "typical acceptance should differ from the target (chi-square {stat:.1})"
    );
}

#[test]
fn feature_draft_sampling_has_the_target_distribution() {
    exact_strategy("feature-draft", &|| {
        let dir = tempfile::tempdir().unwrap();
        let (draft, _) = synthetic(
            dir.path(),
            &small_config(2),
            VOCAB,
            3,
            3,
            false,
            DraftWeights::F32,
        )
        .unwrap();
        Box::new(FeatureDraftProposer::new(
            Rc::new(draft),
            FeatureDraftConfig::default(),
        ))
    });
}
