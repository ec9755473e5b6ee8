//! The decoding loop on the in-process toy model: every strategy's greedy output equals plain
//! greedy decoding, whatever the proposals, and the loop's edge cases.
#![allow(clippy::unwrap_used)]

use std::cell::RefCell;
use std::rc::Rc;

use parallel_decode::backend::LanguageModel;
use parallel_decode::backend::toy::{ToyConfig, ToyModel};
use parallel_decode::engine::{
    GenerateConfig, Generation, Request, StopReason, TokenSink, generate, generate_batch,
};
use parallel_decode::feature_draft::{DraftWeights, small_config, synthetic};
use parallel_decode::sampling::SamplingConfig;
use parallel_decode::strategy::combined::Combined;
use parallel_decode::strategy::draft::{Draft, DraftLength, SharedModel};
use parallel_decode::strategy::feature_draft::{FeatureDraftConfig, FeatureDraftProposer};
use parallel_decode::strategy::medusa::{Medusa, MedusaTree};
use parallel_decode::strategy::prompt_lookup::{PromptLookup, PromptLookupConfig};
use parallel_decode::strategy::proposer::{Autoregressive, Proposer};
use proptest::prelude::*;

fn target(seed: u64, heads: usize, head_error: f64) -> ToyModel {
    ToyModel::new(ToyConfig {
        seed,
        heads,
        head_error,
        ..ToyConfig::default()
    })
}

/// Plain greedy decoding straight from the logit function: the reference.
fn reference(model: &ToyModel, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut ctx = prompt.to_vec();
    let mut out = Vec::new();
    for _ in 0..n {
        let t = model.greedy_after(&ctx);
        out.push(t);
        ctx.push(t);
    }
    out
}

fn run(
    model: &mut ToyModel,
    proposer: &mut dyn Proposer,
    prompt: &[u32],
    config: &GenerateConfig,
) -> Generation {
    let mut streamed = Vec::new();
    let g = generate(model, proposer, prompt, config, &mut |t: &[u32]| {
        streamed.extend_from_slice(t);
        true
    })
    .unwrap();
    assert_eq!(streamed, g.tokens, "streamed tokens differ from the result");
    g
}

fn draft_model(seed: u64, noise: f32) -> SharedModel {
    Rc::new(RefCell::new(Box::new(ToyModel::new(ToyConfig {
        seed,
        noise,
        noise_seed: seed + 5,
        ..ToyConfig::default()
    }))))
}

fn greedy(max_tokens: usize) -> GenerateConfig {
    GenerateConfig {
        max_tokens,
        ..GenerateConfig::default()
    }
}

#[test]
fn autoregressive_is_plain_greedy_decoding() {
    let mut m = target(3, 0, 0.0);
    let prompt = [1, 2, 3];
    let g = run(&mut m, &mut Autoregressive, &prompt, &greedy(40));
    assert_eq!(g.tokens, reference(&m, &prompt, 40));
    assert_eq!(g.stop, StopReason::MaxTokens);
    assert_eq!(g.target_passes, 40);
    assert!((g.tau() - 1.0).abs() < 1e-9);
}

#[test]
fn prompt_lookup_copies_a_repeated_text_in_few_passes() {
    // A prompt that already contains the greedy continuation: lookup should copy it.
    let m = target(4, 0, 0.0);
    let mut prompt = vec![5, 6, 7];
    prompt.extend(reference(&m, &prompt, 60));
    prompt.extend([5, 6, 7]);
    let mut m = m;
    let mut pl = PromptLookup::new(PromptLookupConfig::default());
    let g = run(&mut m, &mut pl, &prompt, &greedy(50));
    assert_eq!(g.tokens, reference(&m, &prompt, 50));
    assert!(g.tau() > 3.0, "tau {}", g.tau());
}

#[test]
fn accurate_medusa_heads_accept_deep_paths() {
    let mut m = target(5, 4, 0.0);
    let mut medusa = Medusa::new(MedusaTree::default_for(4));
    let g = run(&mut m, &mut medusa, &[9, 8], &greedy(60));
    assert_eq!(g.tokens, reference(&m, &[9, 8], 60));
    assert!(
        g.tau() > 4.0,
        "tau {} {:?} passes {}",
        g.tau(),
        g.depth_acceptance,
        g.target_passes
    );
    assert!(g.depth_acceptance[0].accepted > 0);
}

#[test]
fn a_perfect_draft_is_fully_accepted_and_adapts_up() {
    let mut m = target(6, 0, 0.0);
    let dm = draft_model(6, 0.0);
    let mut d = Draft::new(dm, 0, DraftLength::Adaptive(6), SamplingConfig::greedy(), 0).unwrap();
    let g = run(&mut m, &mut d, &[1], &greedy(60));
    assert_eq!(g.tokens, reference(&m, &[1], 60));
    assert_eq!(d.k(), 6);
    assert!(g.tau() > 4.0, "tau {}", g.tau());
}

#[test]
fn stop_token_inside_an_accepted_run_ends_there() {
    let m = target(7, 4, 0.0);
    let expected = reference(&m, &[2, 4], 40);
    let stop = expected[17];
    let first = expected.iter().position(|&t| t == stop).unwrap();
    let mut m = m;
    let mut medusa = Medusa::new(MedusaTree::default_for(4));
    let config = GenerateConfig {
        stop_tokens: vec![stop],
        ..greedy(40)
    };
    let g = run(&mut m, &mut medusa, &[2, 4], &config);
    assert_eq!(g.tokens, expected[..first]);
    assert_eq!(g.stop, StopReason::StopToken);
}

#[test]
fn a_stop_token_counts_as_produced_in_tau() {
    // Autoregressive decoding makes one token per pass, the stop token included: its tau is
    // exactly 1 although the stop token is not part of the answer.
    let m = target(7, 0, 0.0);
    let expected = reference(&m, &[2, 4], 40);
    let stop = expected[17];
    let first = expected.iter().position(|&t| t == stop).unwrap();
    let mut m = m;
    let config = GenerateConfig {
        stop_tokens: vec![stop],
        ..greedy(40)
    };
    let g = run(&mut m, &mut Autoregressive, &[2, 4], &config);
    assert_eq!(g.tokens, expected[..first]);
    assert_eq!(g.target_passes, first as u64 + 1);
    assert_eq!(g.emitted_tokens(), first + 1);
    assert!((g.tau() - 1.0).abs() < 1e-12, "tau {}", g.tau());
}

#[test]
fn max_tokens_reached_mid_run_is_exact() {
    for max in [1, 2, 7, 13] {
        let mut m = target(8, 4, 0.0);
        let mut medusa = Medusa::new(MedusaTree::default_for(4));
        let g = run(&mut m, &mut medusa, &[3], &greedy(max));
        assert_eq!(g.tokens, reference(&m, &[3], max), "max {max}");
    }
}

#[test]
fn a_full_context_stops_cleanly() {
    let mut m = ToyModel::new(ToyConfig {
        max_len: 20,
        heads: 4,
        ..ToyConfig::default()
    });
    let mut medusa = Medusa::new(MedusaTree::default_for(4));
    let g = run(&mut m, &mut medusa, &[1, 2, 3, 4, 5], &greedy(100));
    assert_eq!(g.stop, StopReason::ContextFull);
    assert_eq!(g.tokens, reference(&m, &[1, 2, 3, 4, 5], g.tokens.len()));
    assert_eq!(
        g.tokens.len(),
        20 - 5 + 1,
        "every position used, plus the token after the last"
    );
}

#[test]
fn empty_prompt_and_oversized_batch_are_errors() {
    let mut m = target(1, 0, 0.0);
    let err = generate(
        &mut m,
        &mut Autoregressive,
        &[],
        &greedy(4),
        &mut |_: &[u32]| true,
    )
    .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn caller_can_stop_the_stream() {
    let mut m = target(2, 0, 0.0);
    let mut n = 0;
    let g = generate(
        &mut m,
        &mut Autoregressive,
        &[1],
        &greedy(50),
        &mut |t: &[u32]| {
            n += t.len();
            n < 5
        },
    )
    .unwrap();
    assert_eq!(g.stop, StopReason::Caller);
    assert_eq!(g.tokens.len(), 5);
}

#[test]
fn a_batch_gives_each_row_its_own_result() {
    let mut m = ToyModel::new(ToyConfig {
        heads: 4,
        head_error: 0.3,
        ..ToyConfig::default()
    });
    let reference_model = m.clone();
    let prompts: [&[u32]; 3] = [&[1, 2, 3], &[4], &[7, 7, 7, 7, 7, 7]];
    let mut ar = Autoregressive;
    let mut medusa = Medusa::new(MedusaTree::default_for(4));
    let mut pl = PromptLookup::new(PromptLookupConfig::default());
    let proposers: Vec<&mut dyn Proposer> = vec![&mut ar, &mut medusa, &mut pl];
    let (mut a, mut b, mut c) = (|_: &[u32]| true, |_: &[u32]| true, |_: &[u32]| true);
    let callbacks: [TokenSink<'_>; 3] = [&mut a, &mut b, &mut c];
    let requests: Vec<Request<'_>> = proposers
        .into_iter()
        .zip(callbacks)
        .enumerate()
        .map(|(i, (proposer, cb))| Request {
            prompt: prompts[i].to_vec(),
            slot: 3 - i,
            proposer,
            on_tokens: cb,
        })
        .collect();
    let config = GenerateConfig {
        max_tokens: 30,
        ..GenerateConfig::default()
    };
    let results = generate_batch(&mut m, requests, &config).unwrap();
    for (i, r) in results.iter().enumerate() {
        assert_eq!(
            r.tokens,
            reference(&reference_model, prompts[i], 30),
            "row {i}"
        );
    }
}

#[test]
fn sampling_is_reproducible_from_the_seed() {
    let config = |seed| GenerateConfig {
        sampling: SamplingConfig {
            temperature: 0.8,
            top_k: Some(20),
            top_p: Some(0.9),
        },
        seed,
        ..greedy(30)
    };
    let mut m = target(9, 4, 0.2);
    // A fresh proposer each time: Medusa (like prompt lookup) carries what it learnt about
    // acceptance from one sequence to the next, which changes its trees and so which random
    // draws verification makes (not the distribution of the output).
    let mut sample = |seed| {
        let mut medusa = Medusa::new(MedusaTree::default_for(4));
        run(&mut m, &mut medusa, &[1, 2], &config(seed)).tokens
    };
    let (a, b, c) = (sample(5), sample(5), sample(6));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Every strategy, many seeds, head accuracies, draft agreement rates, prompt lengths and
    /// tree budgets: greedy output equals plain greedy decoding token for token.
    #[test]
    fn every_strategy_equals_greedy(
        seed in 0u64..1000,
        prompt in proptest::collection::vec(0u32..50, 1..24),
        head_error in 0.0f64..1.0,
        draft_noise in 0.0f32..2.0,
        max_tree in 1usize..24,
        max_tokens in 1usize..48,
    ) {
        let config = GenerateConfig { max_tokens, max_tree: Some(max_tree), ..GenerateConfig::default() };
        let reference_model = target(seed, 4, head_error);
        let expected = reference(&reference_model, &prompt, max_tokens);
        let mut proposers: Vec<Box<dyn Proposer>> = vec![
            Box::new(Autoregressive),
            Box::new(PromptLookup::new(PromptLookupConfig { min_ngram: 1, ..Default::default() })),
            Box::new(Medusa::new(MedusaTree::default_for(4))),
            Box::new(Draft::new(draft_model(seed, draft_noise), 1, DraftLength::Adaptive(6), SamplingConfig::greedy(), seed).unwrap()),
            Box::new(Combined::new("medusa-lookup", vec![
                Box::new(PromptLookup::new(PromptLookupConfig { min_ngram: 1, ..Default::default() })),
                Box::new(Medusa::new(MedusaTree::default_for(4))),
            ]).unwrap()),
            Box::new(Combined::global("medusa-lookup-global", vec![
                Box::new(PromptLookup::new(PromptLookupConfig { min_ngram: 1, ..Default::default() })),
                Box::new(Medusa::new(MedusaTree::default_for(4))),
            ]).unwrap()),
        ];
        for p in &mut proposers {
            let mut m = target(seed, 4, head_error);
            let g = run(&mut m, p.as_mut(), &prompt, &config);
            prop_assert_eq!(&g.tokens, &expected, "strategy {}", p.name());
            prop_assert!(g.target_passes as usize <= max_tokens);
            prop_assert_eq!(m.passes, g.target_passes);
        }
    }
}

#[test]
fn info_reports_the_configuration() {
    let m = target(1, 2, 0.0);
    assert_eq!(m.info().heads, 2);
}

/// Wants the heads on every other pass and records, at each proposal, whether it wanted them
/// before it and whether it got candidates.
struct HeadsEveryOther {
    passes: usize,
    log: Vec<(bool, bool)>,
}

impl Proposer for HeadsEveryOther {
    fn name(&self) -> &'static str {
        "heads-every-other"
    }

    fn wants_heads(&self) -> bool {
        self.passes.is_multiple_of(2)
    }

    fn propose(
        &mut self,
        ctx: &parallel_decode::strategy::proposer::ProposeContext<'_>,
    ) -> parallel_decode::Result<parallel_decode::strategy::proposer::Proposal> {
        self.log.push((self.wants_heads(), ctx.heads.is_some()));
        self.passes += 1;
        let root = *ctx.tokens.last().unwrap();
        Ok(parallel_decode::strategy::proposer::Proposal {
            tree: parallel_decode::strategy::tree::TokenTree::new(root),
            draft: None,
        })
    }
}

#[test]
fn head_candidates_reach_only_the_proposal_right_after_they_were_asked_for() {
    // Candidates computed at an earlier position, handed over as if fresh, would be proposed
    // and almost never accepted: a proposer that skips the heads must get none.
    let mut model = target(3, 2, 0.0);
    let mut p = HeadsEveryOther {
        passes: 0,
        log: Vec::new(),
    };
    run(&mut model, &mut p, &[1, 2, 3], &greedy(12));
    assert!(p.log.len() >= 10);
    for (i, &(wanted, got)) in p.log.iter().enumerate() {
        assert_eq!(
            wanted, got,
            "pass {i}: wanted heads {wanted}, got candidates {got}"
        );
    }
}

/// A feature draft over the toy model (whose hidden states are its context window): random,
/// or the identity of a random LM head; exactness never depends on how well it guesses.
fn feature_draft(identity: bool) -> FeatureDraftProposer {
    let dir = tempfile::tempdir().unwrap();
    let (draft, _) = synthetic(
        dir.path(),
        &small_config(3),
        50,
        25,
        11,
        identity,
        // The random draft in 8 bits, as served by default.
        if identity {
            DraftWeights::F32
        } else {
            DraftWeights::Int8
        },
    )
    .unwrap();
    FeatureDraftProposer::new(Rc::new(draft), FeatureDraftConfig::default())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A feature draft alone and in a tree with lookup: greedy output equals plain greedy
    /// decoding, and every pass ran its candidates.
    #[test]
    fn feature_drafts_equal_greedy(
        seed in 0u64..1000,
        prompt in proptest::collection::vec(0u32..50, 1..24),
        identity in any::<bool>(),
        max_tree in 1usize..24,
        max_tokens in 1usize..48,
    ) {
        let config = GenerateConfig { max_tokens, max_tree: Some(max_tree), ..GenerateConfig::default() };
        let expected = reference(&target(seed, 0, 0.0), &prompt, max_tokens);
        let mut proposers: Vec<Box<dyn Proposer>> = vec![
            Box::new(feature_draft(identity)),
            Box::new(Combined::global("feature-hybrid", vec![
                Box::new(PromptLookup::new(PromptLookupConfig { min_ngram: 1, ..Default::default() })),
                Box::new(feature_draft(identity)),
            ]).unwrap()),
        ];
        for p in &mut proposers {
            let mut m = target(seed, 0, 0.0);
            let g = run(&mut m, p.as_mut(), &prompt, &config);
            prop_assert_eq!(&g.tokens, &expected, "strategy {}", p.name());
            prop_assert_eq!(m.passes, g.target_passes);
        }
    }
}

#[test]
fn a_feature_draft_proposes_and_restarts_cleanly() {
    let mut m = target(3, 0, 0.0);
    let mut p = feature_draft(false);
    let a = run(&mut m, &mut p, &[4, 5, 6, 7], &greedy(40));
    assert!(a.proposed > 0, "the draft proposed nothing");
    // The same proposer on another prompt, then the first again: the draft's context starts
    // afresh each time.
    run(&mut m, &mut p, &[9, 9, 1], &greedy(20));
    let b = run(&mut m, &mut p, &[4, 5, 6, 7], &greedy(40));
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(a.proposed, b.proposed);
    assert_eq!(a.target_passes, b.target_passes);
}
