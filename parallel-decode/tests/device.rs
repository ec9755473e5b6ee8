//! The whole device path on the mock: compile small generated models, load them with the
//! Neuron backend, and check the logits against the f64 reference, cached against uncached
//! passes, trees against paths, tensor parallelism against one core, and every decoding
//! strategy against plain greedy decoding.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

mod common;

use common::reference_logits;
use neuron_rt::Runtime;
use parallel_decode::artifacts::manifest::FORMAT_VERSION;
use parallel_decode::artifacts::{CompileOptions, MatrixDtype, compile};
use parallel_decode::backend::neuron::NeuronModel;
use parallel_decode::backend::{CommitRow, LanguageModel, TreeRow};
use parallel_decode::engine::{GenerateConfig, generate};
use parallel_decode::loading::medusa_heads::{Conditioning, HEADS_FORMAT, MedusaHeads};
use parallel_decode::loading::safetensors::SafetensorsWriter;
use parallel_decode::loading::synthetic::{TinyLlama, write_tiny_llama};
use parallel_decode::loading::{Dtype, ModelDir, NoProgress};
use parallel_decode::strategy::answer_lookup::{AnswerIndex, AnswerLookup, AnswerLookupConfig};
use parallel_decode::strategy::combined::Combined;
use parallel_decode::strategy::draft::{Draft, DraftLength};
use parallel_decode::strategy::medusa::{Medusa, MedusaTree};
use parallel_decode::strategy::prompt_lookup::{PromptLookup, PromptLookupConfig};
use parallel_decode::strategy::proposer::{Autoregressive, Proposer};
use parallel_decode::strategy::tree::TokenTree;
use tempfile::TempDir;

/// Logits from the device agree with the f64 reference within this (relative) tolerance.
const TOLERANCE: f64 = 1e-4;

fn runtime() -> Arc<Runtime> {
    static RT: OnceLock<Arc<Runtime>> = OnceLock::new();
    RT.get_or_init(|| {
        Runtime::builder()
            .lib_path(neuron_mock::testing::library_path())
            .init()
            .expect("mock runtime")
    })
    .clone()
}

struct Compiled {
    _model: TempDir,
    _artifacts: TempDir,
    model: NeuronModel,
    source: ModelDir,
}

fn heads_file(
    dir: &Path,
    count: usize,
    hidden: usize,
    seed: u64,
    vocab: Option<&[u32]>,
    conditioning: Conditioning,
) -> std::path::PathBuf {
    let path = dir.join("medusa_heads.safetensors");
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), HEADS_FORMAT.to_string());
    meta.insert("version".to_string(), conditioning.version().to_string());
    meta.insert("heads".to_string(), count.to_string());
    meta.insert("hidden".to_string(), hidden.to_string());
    if let Some(vocab) = vocab {
        meta.insert("vocab".to_string(), serde_json::to_string(vocab).unwrap());
    }
    let plan: Vec<(String, Vec<usize>)> = (0..count)
        .flat_map(|h| {
            let tokens = conditioning
                .token_parts(h)
                .into_iter()
                .map(move |part| (format!("medusa.{h}.{part}"), vec![hidden, hidden]));
            [
                (format!("medusa.{h}.weight"), vec![hidden, hidden]),
                (format!("medusa.{h}.bias"), vec![hidden]),
            ]
            .into_iter()
            .chain(tokens)
        })
        .collect();
    let mut w = SafetensorsWriter::create(&path, Dtype::F32, plan.clone(), &meta).unwrap();
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    for (name, shape) in plan {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.5
            })
            .collect();
        w.write_next(&name, &data).unwrap();
    }
    w.finish().unwrap();
    path
}

/// A tiny model compiled with `heads` random heads of the default kind (taking the path;
/// none if 0).
fn compiled(spec: &TinyLlama, options: CompileOptions, heads: usize) -> Compiled {
    compiled_with_heads(spec, options, heads, None, Conditioning::Path)
}

/// A tiny model compiled with `heads` random heads of kind `conditioning` (none if 0) scoring
/// `vocab`.
fn compiled_with_heads(
    spec: &TinyLlama,
    options: CompileOptions,
    heads: usize,
    vocab: Option<&[u32]>,
    conditioning: Conditioning,
) -> Compiled {
    let model_dir = tempfile::tempdir().unwrap();
    write_tiny_llama(model_dir.path(), spec).unwrap();
    let source = ModelDir::open(model_dir.path()).unwrap();
    let heads = (heads > 0).then(|| {
        let path = heads_file(
            model_dir.path(),
            heads,
            spec.hidden_size,
            spec.seed,
            vocab,
            conditioning,
        );
        MedusaHeads::open(&path, spec.hidden_size).unwrap()
    });
    let artifacts = tempfile::tempdir().unwrap();
    let out = artifacts.path().join("compiled");
    compile(&source, heads.as_ref(), &out, &options, &NoProgress).unwrap();
    let model = NeuronModel::open(&runtime(), &out, &NoProgress).unwrap();
    Compiled {
        _model: model_dir,
        _artifacts: artifacts,
        model,
        source,
    }
}

fn small_options() -> CompileOptions {
    CompileOptions {
        slots: 3,
        max_len: 64,
        prefill_buckets: vec![4, 16],
        verify_buckets: vec![1, 4, 8],
        ..CompileOptions::default()
    }
}

fn assert_close(actual: &[f32], expected: &[f64], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (*a as f64 - e).abs() <= TOLERANCE * (1.0 + e.abs()),
            "{what}[{i}]: {a} vs {e}"
        );
    }
}

fn logits_of(model: &mut NeuronModel, row: usize, node: usize) -> Vec<f32> {
    let mut out = Vec::new();
    model.logits(row, node, &mut out).unwrap();
    out
}

fn chain(tokens: &[u32]) -> TokenTree {
    let mut t = TokenTree::new(tokens[0]);
    for (i, &tok) in tokens[1..].iter().enumerate() {
        t.push(i, tok);
    }
    t
}

const PROMPT: [u32; 11] = [1, 40, 77, 101, 32, 116, 104, 101, 32, 99, 97];

#[test]
fn prefill_logits_match_the_reference_including_chunked_prompts() {
    let mut c = compiled(&TinyLlama::default(), small_options(), 0);
    let expected = reference_logits(&c.source, &PROMPT);
    // 11 tokens: one 16-wide chunk; then with only 4-wide buckets... both paths tested below.
    let next = c.model.prefill(0, &PROMPT).unwrap();
    let logits = logits_of(&mut c.model, 0, 0);
    assert_close(&logits, &expected[10], "prefill");
    assert_eq!(next as usize, parallel_decode::sampling::argmax(&logits));
    let mut chunked = compiled(
        &TinyLlama::default(),
        CompileOptions {
            prefill_buckets: vec![4],
            ..small_options()
        },
        0,
    );
    chunked.model.prefill(1, &PROMPT).unwrap();
    assert_close(
        &logits_of(&mut chunked.model, 0, 0),
        &expected[10],
        "chunked prefill",
    );
}

#[test]
fn cached_decoding_equals_a_full_prefill() {
    let mut c = compiled(&TinyLlama::default(), small_options(), 0);
    let expected = reference_logits(&c.source, &PROMPT);
    c.model.prefill(2, &PROMPT[..5]).unwrap();
    for t in 5..PROMPT.len() {
        let argmax = c
            .model
            .verify(&[TreeRow {
                slot: 2,
                cache_len: t,
                tree: &TokenTree::new(PROMPT[t]),
            }])
            .unwrap();
        let logits = logits_of(&mut c.model, 0, 0);
        assert_close(&logits, &expected[t], &format!("decode at {t}"));
        assert_eq!(
            argmax[0][0] as usize,
            parallel_decode::sampling::argmax(&logits)
        );
    }
}

#[test]
fn a_verified_chain_equals_sequential_decoding() {
    let mut c = compiled(&TinyLlama::default(), small_options(), 0);
    let expected = reference_logits(&c.source, &PROMPT);
    c.model.prefill(0, &PROMPT[..4]).unwrap();
    let tree = chain(&PROMPT[4..11]);
    c.model
        .verify(&[TreeRow {
            slot: 0,
            cache_len: 4,
            tree: &tree,
        }])
        .unwrap();
    for node in 0..tree.len() {
        assert_close(
            &logits_of(&mut c.model, 0, node),
            &expected[4 + node],
            &format!("chain node {node}"),
        );
    }
}

#[test]
fn pass_costs_follow_the_passes_that_run_and_stay_well_formed() {
    let mut c = compiled(&TinyLlama::default(), small_options(), 0);
    let before = c.model.info().tree_cost.clone();
    assert_eq!(before.len(), c.model.info().max_tree);
    c.model.prefill(0, &PROMPT[..4]).unwrap();
    let tree = chain(&PROMPT[4..11]);
    let four = chain(&PROMPT[4..8]);
    for _ in 0..20 {
        for tree in [&four, &tree] {
            let row = TreeRow {
                slot: 0,
                cache_len: 4,
                tree,
            };
            c.model.verify(&[row]).unwrap();
        }
    }
    let after = c.model.info().tree_cost.clone();
    // Twenty timed passes of the 4- and 8-wide buckets moved their estimates (times are
    // never exactly the measured median), and the costs are still relative to one node and
    // monotone. Both buckets run: the costs are made monotone, so the 4-wide bucket's
    // estimate, measured dearer than the 8-wide one's on a busy machine, masks a move of the
    // latter. On this tiny model a pass can also time no dearer than a one-node pass, and
    // relative costs are clamped to 1.0, so a move is only visible when a cost is above 1.0
    // (`backend::costs`' unit tests check the estimates themselves move).
    let flat = |c: &[f32]| c.iter().all(|&x| x == 1.0);
    assert!(
        after != before || (flat(&before) && flat(&after)),
        "the costs did not follow the passes: {after:?}"
    );
    assert_eq!(after[0], 1.0);
    assert!(after.windows(2).all(|w| w[0] <= w[1]), "{after:?}");
    // Assumed flat, the costs stay flat whatever the passes take.
    c.model.assume_flat_cost();
    let row = TreeRow {
        slot: 0,
        cache_len: 4,
        tree: &tree,
    };
    c.model.verify(&[row]).unwrap();
    assert!(c.model.info().tree_cost.iter().all(|&x| x == 1.0));
    assert_eq!(c.model.info().tree_cost.len(), c.model.info().max_tree);
}

#[test]
fn a_verified_tree_equals_decoding_each_path_and_commit_keeps_the_cache_right() {
    let mut c = compiled(&TinyLlama::default(), small_options(), 0);
    let prefix = &PROMPT[..6];
    c.model.prefill(1, prefix).unwrap();
    // root -> 50 -> 51, root -> 60 -> 61 -> 62, 60 -> 70
    let mut tree = TokenTree::new(PROMPT[6]);
    tree.add_path(0, &[50, 51], 8);
    tree.add_path(0, &[60, 61, 62], 8);
    tree.add_path(0, &[60, 70], 8);
    c.model
        .verify(&[TreeRow {
            slot: 1,
            cache_len: 6,
            tree: &tree,
        }])
        .unwrap();
    for node in 0..tree.len() {
        let mut seq = prefix.to_vec();
        seq.extend(tree.path_to(node).iter().map(|&i| tree.tokens()[i]));
        let expected = reference_logits(&c.source, &seq);
        assert_close(
            &logits_of(&mut c.model, 0, node),
            expected.last().unwrap(),
            &format!("tree node {node}"),
        );
    }
    // Accept root -> 60 -> 70 and decode one more token after it.
    let accepted = tree.path_to(tree.len() - 1);
    assert!(
        !CommitRow {
            slot: 1,
            cache_len: 6,
            accepted: &accepted
        }
        .is_contiguous()
    );
    c.model
        .commit(&[CommitRow {
            slot: 1,
            cache_len: 6,
            accepted: &accepted,
        }])
        .unwrap();
    let len = 6 + accepted.len();
    c.model
        .verify(&[TreeRow {
            slot: 1,
            cache_len: len,
            tree: &TokenTree::new(9),
        }])
        .unwrap();
    let mut seq = prefix.to_vec();
    seq.extend(accepted.iter().map(|&i| tree.tokens()[i]));
    seq.push(9);
    let expected = reference_logits(&c.source, &seq);
    assert_close(
        &logits_of(&mut c.model, 0, 0),
        expected.last().unwrap(),
        "after commit",
    );
}

#[test]
fn after_any_accepts_and_rejects_the_cache_gives_the_logits_of_a_fresh_prefill() {
    let mut c = compiled(
        &TinyLlama::default(),
        CompileOptions {
            max_len: 96,
            ..small_options()
        },
        0,
    );
    let vocab = c.model.info().vocab as u64;
    // A fixed pseudo-random walk: random trees, a random root-to-node path accepted (from
    // nothing to a whole branch), committed; the tokens of the sequence follow.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let mut tokens = PROMPT[..5].to_vec();
    c.model.prefill(0, &tokens).unwrap();
    for step in 0..12 {
        let mut tree = TokenTree::new(next(vocab) as u32);
        let nodes = 1 + next(7) as usize;
        while tree.len() < nodes {
            let parent = next(tree.len() as u64) as usize;
            tree.push(parent, next(vocab) as u32);
        }
        let cache_len = tokens.len();
        c.model
            .verify(&[TreeRow {
                slot: 0,
                cache_len,
                tree: &tree,
            }])
            .unwrap();
        let accepted = tree.path_to(next(tree.len() as u64) as usize);
        c.model
            .commit(&[CommitRow {
                slot: 0,
                cache_len,
                accepted: &accepted,
            }])
            .unwrap();
        tokens.extend(accepted.iter().map(|&i| tree.tokens()[i]));
        // The next token's logits from the cache against a fresh prefill of every token.
        let probe = next(vocab) as u32;
        c.model
            .verify(&[TreeRow {
                slot: 0,
                cache_len: tokens.len(),
                tree: &TokenTree::new(probe),
            }])
            .unwrap();
        let mut seq = tokens.clone();
        seq.push(probe);
        let expected = reference_logits(&c.source, &seq);
        assert_close(
            &logits_of(&mut c.model, 0, 0),
            expected.last().unwrap(),
            &format!("step {step}, {} tokens", seq.len()),
        );
    }
}

#[test]
fn rows_of_a_batch_are_independent_and_unused_rows_are_ignored() {
    let mut c = compiled(&TinyLlama::default(), small_options(), 0);
    c.model.prefill(0, &PROMPT[..3]).unwrap();
    c.model.prefill(2, &PROMPT[..7]).unwrap();
    let (a, b) = (chain(&PROMPT[3..6]), chain(&PROMPT[7..8]));
    c.model
        .verify(&[
            TreeRow {
                slot: 2,
                cache_len: 7,
                tree: &b,
            },
            TreeRow {
                slot: 0,
                cache_len: 3,
                tree: &a,
            },
        ])
        .unwrap();
    let expected_a = reference_logits(&c.source, &PROMPT[..6]);
    let expected_b = reference_logits(&c.source, &PROMPT[..8]);
    assert_close(&logits_of(&mut c.model, 0, 0), &expected_b[7], "row b");
    assert_close(&logits_of(&mut c.model, 1, 2), &expected_a[5], "row a");
}

fn tp_spec() -> TinyLlama {
    TinyLlama {
        hidden_size: 32,
        intermediate_size: 64,
        num_heads: 8,
        num_kv_heads: 4,
        ..TinyLlama::default()
    }
}

fn tensor_parallel_matches_one_core(tp: usize) {
    let mut one = compiled(&tp_spec(), small_options(), 0);
    let mut many = compiled(
        &tp_spec(),
        CompileOptions {
            tp,
            ..small_options()
        },
        0,
    );
    for m in [&mut one.model, &mut many.model] {
        m.prefill(0, &PROMPT[..5]).unwrap();
        m.verify(&[TreeRow {
            slot: 0,
            cache_len: 5,
            tree: &chain(&PROMPT[5..9]),
        }])
        .unwrap();
    }
    for node in 0..4 {
        let a = logits_of(&mut one.model, 0, node);
        let b = logits_of(&mut many.model, 0, node);
        let expected: Vec<f64> = a.iter().map(|&x| x as f64).collect();
        assert_close(&b, &expected, &format!("tp {tp} node {node}"));
    }
}

#[test]
fn tensor_parallel_2_matches_one_core() {
    tensor_parallel_matches_one_core(2);
}

#[test]
fn tensor_parallel_4_matches_one_core() {
    // The default mock instance has 2 cores: run this check in a child with a 32-core profile.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tensor_parallel_4_in_child",
            "--include-ignored",
            "--nocapture",
        ])
        .env("NEURON_MOCK_INSTANCE", "trn1.32xlarge")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "child failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "run by tensor_parallel_4_matches_one_core in a child process with more cores"]
fn tensor_parallel_4_in_child() {
    tensor_parallel_matches_one_core(4);
}

/// Compiles the tiny model with `options`, which must be refused; returns the error, having
/// checked that the failed compile left nothing behind.
fn refused_compile(options: CompileOptions) -> String {
    let model_dir = tempfile::tempdir().unwrap();
    write_tiny_llama(model_dir.path(), &TinyLlama::default()).unwrap();
    let source = ModelDir::open(model_dir.path()).unwrap();
    let out = model_dir.path().join("art");
    let err = compile(&source, None, &out, &options, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(!out.exists(), "a failed compile leaves nothing behind");
    err
}

#[test]
fn a_tensor_parallel_degree_that_does_not_divide_the_heads_is_refused() {
    let err = refused_compile(CompileOptions {
        tp: 3,
        ..small_options()
    });
    assert!(
        err.contains("tensor parallelism 3") && err.contains("degrees that do: 1, 2"),
        "{err}"
    );
}

#[test]
fn a_verify_bucket_longer_than_the_context_is_refused() {
    let err = refused_compile(CompileOptions {
        max_len: 8,
        verify_buckets: vec![1, 4, 8],
        ..small_options()
    });
    assert!(
        err.contains("a pass of 8 tokens does not fit a context of 8 positions"),
        "{err}"
    );
}

/// Greedy generation on the device with each strategy equals plain greedy decoding.
#[test]
fn heads_with_a_vocabulary_rank_its_tokens_as_the_whole_heads_do() {
    let spec = TinyLlama::default();
    let vocab_size = compiled(&spec, small_options(), 0).model.info().vocab;
    let vocab: Vec<u32> = (0..vocab_size as u32).filter(|i| i % 3 != 1).collect();
    // Candidates for every token from the whole heads, and the vocabulary's best four (its
    // LM-head rows are stored in f16; the tiny model's logits are far enough apart that the
    // rounding changes no rank).
    let mut whole = compiled_with_heads(
        &spec,
        CompileOptions {
            heads_top_k: vocab_size,
            ..small_options()
        },
        2,
        None,
        Conditioning::HiddenOnly,
    );
    let mut restricted = compiled_with_heads(
        &spec,
        small_options(),
        2,
        Some(&vocab),
        Conditioning::HiddenOnly,
    );
    let mut hidden = Vec::new();
    for c in [&mut whole, &mut restricted] {
        c.model.prefill(0, &PROMPT).unwrap();
    }
    whole.model.hidden(0, 0, &mut hidden).unwrap();
    let all = whole.model.heads(&hidden, 0, &[vocab_size; 2]).unwrap();
    let some = restricted.model.heads(&hidden, 0, &[4; 2]).unwrap();
    for h in 0..2 {
        let expected: Vec<u32> = all.heads[h]
            .iter()
            .copied()
            .filter(|t| vocab.contains(t))
            .take(4)
            .collect();
        assert_eq!(some.heads[h], expected, "head {h}");
    }
}

/// Heads that take tokens compute on the device what the training code computes: the
/// device's candidates, used as targets, are found at the same ranks by the evaluation (which
/// runs the heads as training does, taking the best candidates of earlier heads as the heads
/// graph does); and the next token changes them.
#[test]
fn heads_that_take_tokens_agree_with_the_training_code() {
    use parallel_decode::loading::medusa_heads::Conditioning;
    use parallel_decode::medusa::data::{Dataset, DistilledSequence};
    use parallel_decode::medusa::eval::evaluate;
    use parallel_decode::medusa::file::{HeadsMetadata, write_heads};
    use parallel_decode::medusa::train::{Head, LmHead};

    let spec = TinyLlama::default();
    let model_dir = tempfile::tempdir().unwrap();
    write_tiny_llama(model_dir.path(), &spec).unwrap();
    let source = ModelDir::open(model_dir.path()).unwrap();
    let d = spec.hidden_size;
    let mut s = 99u64;
    let mut random = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 0.8
            })
            .collect()
    };
    let matrix = |random: &mut dyn FnMut(usize) -> Vec<f32>| {
        ndarray::Array2::from_shape_vec((d, d), random(d * d)).unwrap()
    };
    for conditioning in [Conditioning::NextToken, Conditioning::Path] {
        let heads: Vec<Head> = (0..2)
            .map(|h| Head {
                weight: matrix(&mut random),
                token_weights: (0..conditioning.token_parts(h).len())
                    .map(|_| matrix(&mut random))
                    .collect(),
                bias: random(d),
            })
            .collect();
        let path = model_dir.path().join("heads.safetensors");
        write_heads(&path, &heads, Dtype::F32, &HeadsMetadata::default()).unwrap();
        let file = MedusaHeads::open(&path, d).unwrap();
        assert_eq!(file.conditioning(), conditioning);
        let out = tempfile::tempdir().unwrap();
        compile(
            &source,
            Some(&file),
            &out.path().join("c"),
            &small_options(),
            &NoProgress,
        )
        .unwrap();
        let mut model = NeuronModel::open(&runtime(), &out.path().join("c"), &NoProgress).unwrap();
        model.prefill(0, &PROMPT).unwrap();
        let mut hidden = Vec::new();
        model.hidden(0, 0, &mut hidden).unwrap();
        let lm = LmHead::from_model(&source).unwrap();
        let mut seen = Vec::new();
        for next in [3u32, 17] {
            let got = model.heads(&hidden, next, &[2, 2]).unwrap();
            // An answer `next, a, b` after this state: its first position has next token
            // `next` and targets `a` (head 0) and `b` (head 1), here each head's candidate of
            // rank `r`, and it is the only position with targets for both heads.
            for r in 0..2 {
                let data = Dataset {
                    hidden: d,
                    states: hidden.repeat(3),
                    sequences: vec![DistilledSequence {
                        prompt: 0,
                        tokens: vec![next, got.heads[0][r], got.heads[1][r]],
                        first_state: 0,
                    }],
                };
                let e = evaluate(&data, &[0], &lm, &heads, None, 2, &NoProgress);
                assert!(
                    e.paths.counts.contains(&(vec![r, r], 1)),
                    "{conditioning:?}, next {next}, rank {r}: {:?}",
                    e.paths.counts
                );
            }
            seen.push(got.probs);
        }
        assert_ne!(
            seen[0], seen[1],
            "{conditioning:?}: the next token is an input"
        );
    }
}

/// The heads graph holds only the heads its tree reaches (each is one more pass over the LM
/// head's rows when the heads run one after the other): a two-deep tree over three heads runs
/// two, and gives the same candidates as the three-head graph.
#[test]
fn only_the_heads_the_tree_reaches_are_compiled() {
    let spec = TinyLlama::default();
    let chain = |depth: usize| MedusaTree::new((1..=depth).map(|d| vec![0; d]).collect()).unwrap();
    let options = |depth| CompileOptions {
        medusa_tree: Some(chain(depth)),
        ..small_options()
    };
    let mut all = compiled_with_heads(&spec, options(3), 3, None, Conditioning::Path);
    let mut two = compiled_with_heads(&spec, options(2), 3, None, Conditioning::Path);
    assert_eq!(all.model.info().heads, 3);
    assert_eq!(two.model.info().heads, 2);
    all.model.prefill(0, &PROMPT).unwrap();
    let mut hidden = Vec::new();
    all.model.hidden(0, 0, &mut hidden).unwrap();
    let a = all.model.heads(&hidden, 1, &[3; 3]).unwrap();
    let b = two.model.heads(&hidden, 1, &[3; 2]).unwrap();
    assert_eq!(&a.heads[..2], &b.heads[..]);
}

#[test]
fn heads_report_probabilities_that_sum_to_one_and_agree_across_ranks() {
    let spec = TinyLlama::default();
    let vocab_size = compiled(&spec, small_options(), 0).model.info().vocab;
    let options = |tp| CompileOptions {
        tp,
        heads_top_k: vocab_size,
        ..small_options()
    };
    // One rank scores the whole vocabulary; two ranks each half, merged on the device.
    let mut one = compiled_with_heads(&spec, options(1), 2, None, Conditioning::Path);
    let mut two = compiled_with_heads(&spec, options(2), 2, None, Conditioning::Path);
    one.model.prefill(0, &PROMPT).unwrap();
    let mut hidden = Vec::new();
    one.model.hidden(0, 0, &mut hidden).unwrap();
    let a = one.model.heads(&hidden, 0, &[vocab_size; 2]).unwrap();
    let b = two.model.heads(&hidden, 0, &[vocab_size; 2]).unwrap();
    for h in 0..2 {
        assert_eq!(a.probs[h].len(), vocab_size, "head {h}");
        let total: f32 = a.probs[h].iter().sum();
        assert!(
            (total - 1.0).abs() < 1e-3,
            "head {h}: probabilities sum to {total}"
        );
        assert!(a.probs[h].windows(2).all(|w| w[0] >= w[1]), "best first");
        assert_eq!(
            a.heads[h], b.heads[h],
            "head {h}: the same candidates on two ranks"
        );
        for (p, q) in a.probs[h].iter().zip(&b.probs[h]) {
            assert!(
                (p - q).abs() < 1e-5,
                "head {h}: {p} on one rank, {q} on two"
            );
        }
    }
}

#[test]
fn every_strategy_on_the_device_equals_greedy_decoding() {
    let spec = TinyLlama {
        seed: 5,
        ..TinyLlama::default()
    };
    let mut c = compiled(
        &spec,
        CompileOptions {
            max_len: 128,
            verify_buckets: vec![1, 4, 8, 16],
            ..small_options()
        },
        3,
    );
    let draft = compiled(
        &TinyLlama {
            seed: 6,
            ..TinyLlama::default()
        },
        CompileOptions {
            max_len: 128,
            ..small_options()
        },
        0,
    );
    let draft_model: parallel_decode::strategy::draft::SharedModel =
        std::rc::Rc::new(std::cell::RefCell::new(Box::new(draft.model)));
    let config = GenerateConfig {
        max_tokens: 40,
        ..GenerateConfig::default()
    };
    // A prompt that repeats itself gives prompt lookup something to copy.
    let prompt: Vec<u32> = PROMPT
        .iter()
        .chain(&PROMPT)
        .chain(&PROMPT[..4])
        .copied()
        .collect();
    let baseline = generate(
        &mut c.model,
        &mut Autoregressive,
        &prompt,
        &config,
        &mut |_: &[u32]| true,
    )
    .unwrap();
    assert_eq!(baseline.tokens.len(), 40);
    // Proposers see flat costs (as on a NeuronCore) and so propose all they have: a tiny
    // model's passes cost in proportion to their tokens, and would leave little to verify.
    c.model.assume_flat_cost();
    let tree = c.model.medusa_tree().unwrap();
    // Answers that agree with the greedy continuation in runs and then differ: answer lookup
    // proposes chains the target partly accepts.
    let answers: Vec<Vec<u32>> = (0..3u32)
        .map(|k| {
            let mut a = baseline.tokens.clone();
            for (i, t) in a.iter_mut().enumerate() {
                if i % (5 + k as usize) == 4 {
                    *t = (*t + 1 + k) % 64;
                }
            }
            a
        })
        .collect();
    let index = Arc::new(AnswerIndex::new(answers.iter().map(Vec::as_slice), 4));
    let answer_lookup = || AnswerLookup::new(Arc::clone(&index), AnswerLookupConfig::default());
    let mut strategies: Vec<Box<dyn Proposer>> = vec![
        Box::new(PromptLookup::new(PromptLookupConfig::default())),
        Box::new(answer_lookup()),
        Box::new(
            Combined::new(
                "hybrid",
                vec![
                    Box::new(PromptLookup::new(PromptLookupConfig::default())),
                    Box::new(answer_lookup()),
                    Box::new(Medusa::new(tree.clone())),
                ],
            )
            .unwrap(),
        ),
        Box::new(
            Combined::global(
                "hybrid-global",
                vec![
                    Box::new(PromptLookup::new(PromptLookupConfig::default())),
                    Box::new(answer_lookup()),
                    Box::new(Medusa::new(tree.clone())),
                ],
            )
            .unwrap(),
        ),
        Box::new(Medusa::new(tree)),
        Box::new(Medusa::new(MedusaTree::default_for(3))),
        Box::new(Draft::new(draft_model, 0, DraftLength::Adaptive(5), config.sampling, 0).unwrap()),
    ];
    for s in &mut strategies {
        let g = generate(
            &mut c.model,
            s.as_mut(),
            &prompt,
            &config,
            &mut |_: &[u32]| true,
        )
        .unwrap();
        assert_eq!(g.tokens, baseline.tokens, "strategy {}", s.name());
        if s.name() == "answer-lookup" {
            assert!(
                g.tau() > 1.5,
                "answer lookup barely helped: tau {}",
                g.tau()
            );
        }
    }
}

/// With the costs measured on this machine (not assumed flat), speculative passes run in the
/// bucket the learned costs choose: the cheapest holding the tree, or a wider one being
/// probed after going unused for a while (`backend::costs`). Either way the output is the
/// greedy one, over a run long enough for probes to come due.
#[test]
fn passes_in_the_buckets_the_learned_costs_choose_decode_exactly() {
    let spec = TinyLlama {
        seed: 7,
        ..TinyLlama::default()
    };
    let mut c = compiled(
        &spec,
        CompileOptions {
            max_len: 256,
            verify_buckets: vec![1, 2, 4, 8, 16],
            ..small_options()
        },
        3,
    );
    let config = GenerateConfig {
        max_tokens: 200,
        ..GenerateConfig::default()
    };
    let prompt: Vec<u32> = PROMPT.iter().chain(&PROMPT).copied().collect();
    let greedy = |model: &mut dyn LanguageModel, proposer: &mut dyn Proposer| {
        generate(model, proposer, &prompt, &config, &mut |_: &[u32]| true).unwrap()
    };
    let baseline = greedy(&mut c.model, &mut Autoregressive);
    assert_eq!(baseline.tokens.len(), 200);
    let tree = c.model.medusa_tree().unwrap();
    let mut strategies: Vec<Box<dyn Proposer>> = vec![
        Box::new(PromptLookup::new(PromptLookupConfig::default())),
        Box::new(Medusa::new(tree)),
    ];
    for s in &mut strategies {
        // Twice: the learned costs live in the model, so probes come due across the runs
        // (how many passes one run takes depends on the trees the measured costs allow: 60
        // to 70 on a two-core machine).
        let mut passes = 0;
        for _ in 0..2 {
            let g = greedy(&mut c.model, s.as_mut());
            assert_eq!(g.tokens, baseline.tokens, "strategy {}", s.name());
            passes += g.target_passes;
        }
        assert!(passes > 64, "{passes} passes: too few for a probe");
    }
}

/// The answers a heads file carries reach the compiled artifacts and the model's answer
/// index; artifacts without them have none, and a damaged answers file is named.
#[test]
fn heads_answers_are_compiled_in_for_answer_lookup() {
    use parallel_decode::medusa::file::{HeadsMetadata, read_heads, write_heads};
    let spec = TinyLlama::default();
    let model_dir = tempfile::tempdir().unwrap();
    write_tiny_llama(model_dir.path(), &spec).unwrap();
    let source = ModelDir::open(model_dir.path()).unwrap();
    let plain = heads_file(
        model_dir.path(),
        2,
        spec.hidden_size,
        1,
        None,
        Conditioning::Path,
    );
    let heads = read_heads(
        &MedusaHeads::open(&plain, spec.hidden_size).unwrap(),
        spec.hidden_size,
    )
    .unwrap();
    let with_answers = model_dir.path().join("with_answers.safetensors");
    let answers = vec![vec![1, 2, 3, 4], vec![5, 6]];
    let meta = HeadsMetadata {
        answers: Some(answers.clone()),
        ..HeadsMetadata::default()
    };
    write_heads(&with_answers, &heads, Dtype::F32, &meta).unwrap();
    let out = tempfile::tempdir().unwrap();
    for (file, expected) in [(&plain, None), (&with_answers, Some((2, 6)))] {
        let dir = out.path().join(file.file_stem().unwrap());
        let h = MedusaHeads::open(file, spec.hidden_size).unwrap();
        compile(&source, Some(&h), &dir, &small_options(), &NoProgress).unwrap();
        let model = NeuronModel::open(&runtime(), &dir, &NoProgress).unwrap();
        assert_eq!(model.has_answers(), expected.is_some());
        let index = model.answer_index().unwrap();
        assert_eq!(index.map(|i| (i.answers(), i.tokens())), expected);
    }
    // A truncated answers file is an error that names it.
    let dir = out.path().join("with_answers");
    let answers_file = dir.join(parallel_decode::artifacts::compile::ANSWERS_FILE);
    let bytes = std::fs::read(&answers_file).unwrap();
    std::fs::write(&answers_file, &bytes[..bytes.len() - 4]).unwrap();
    let model = NeuronModel::open(&runtime(), &dir, &NoProgress).unwrap();
    let err = model.answer_index().unwrap_err().to_string();
    assert!(err.contains("medusa_answers.safetensors"), "{err}");
}

/// Matrices compiled to bf16 (as a Neuron compiler casts weights) give the very bits f32
/// matrices give when the mock multiplies in bf16, the LM head included (a bf16 copy of the
/// embedding when tied, the heads' LM head when not); a mock multiplying in f32 refuses them
/// at load, saying what to set. (`scripts/test.sh` runs this test both ways on a CPU with AMX
/// or AVX-512 BF16.)
#[test]
fn bf16_matrices_equal_f32_ones_multiplied_in_bf16() {
    let options = |matrices| CompileOptions {
        matrices,
        ..small_options()
    };
    let bf16_products =
        std::env::var("NEURON_MOCK_MATMUL").is_ok_and(|v| v.eq_ignore_ascii_case("bf16"));
    if !bf16_products {
        let model_dir = tempfile::tempdir().unwrap();
        write_tiny_llama(model_dir.path(), &TinyLlama::default()).unwrap();
        let source = ModelDir::open(model_dir.path()).unwrap();
        let out = model_dir.path().join("art");
        compile(
            &source,
            None,
            &out,
            &options(MatrixDtype::Bf16),
            &NoProgress,
        )
        .unwrap();
        let err = NeuronModel::open(&runtime(), &out, &NoProgress)
            .map(|_| ())
            .unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("NEURON_MOCK_MATMUL=bf16"), "{err}");
        return;
    }
    let mut tree = chain(&PROMPT[5..11]);
    tree.push(0, 7);
    tree.push(2, 30);
    for tied in [true, false] {
        let spec = TinyLlama {
            seed: 11,
            tie_word_embeddings: tied,
            ..TinyLlama::default()
        };
        let compiled = |matrices| {
            compiled_with_heads(&spec, options(matrices), 2, None, Conditioning::HiddenOnly)
        };
        let (mut f32_matrices, mut bf16_matrices) =
            (compiled(MatrixDtype::F32), compiled(MatrixDtype::Bf16));
        let mut results = Vec::new();
        for c in [&mut f32_matrices, &mut bf16_matrices] {
            c.model.prefill(1, &PROMPT[..5]).unwrap();
            c.model
                .verify(&[TreeRow {
                    slot: 1,
                    cache_len: 5,
                    tree: &tree,
                }])
                .unwrap();
            let logits: Vec<Vec<u32>> = (0..tree.len())
                .map(|node| {
                    let l = logits_of(&mut c.model, 0, node);
                    l.iter().map(|v| v.to_bits()).collect()
                })
                .collect();
            let mut hidden = Vec::new();
            c.model.hidden(0, 3, &mut hidden).unwrap();
            let heads = c.model.heads(&hidden, 0, &[5, 5]).unwrap();
            results.push((logits, heads.heads));
        }
        assert_eq!(results[0], results[1], "tied embeddings: {tied}");
    }
}

#[test]
fn bad_artifacts_give_clear_errors() {
    let model_dir = tempfile::tempdir().unwrap();
    write_tiny_llama(model_dir.path(), &TinyLlama::default()).unwrap();
    let source = ModelDir::open(model_dir.path()).unwrap();
    let out = model_dir.path().join("art");
    compile(&source, None, &out, &small_options(), &NoProgress).unwrap();
    let open = |dir: &Path| {
        NeuronModel::open(&runtime(), dir, &NoProgress)
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };

    // A truncated NEFF.
    let broken = tempfile::tempdir().unwrap();
    copy_dir(&out, broken.path());
    let neff = broken.path().join("graphs/decode-1.neff");
    let bytes = std::fs::read(&neff).unwrap();
    std::fs::write(&neff, &bytes[..bytes.len() / 2]).unwrap();
    let err = open(broken.path());
    assert!(err.contains("decode-1.neff"), "{err}");

    // A weight shard missing a tensor.
    let broken = tempfile::tempdir().unwrap();
    copy_dir(&out, broken.path());
    std::fs::write(
        broken.path().join("weights/rank0.safetensors"),
        b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ",
    )
    .unwrap();
    let err = open(broken.path());
    assert!(
        err.contains("model.embed_tokens.weight") || err.contains("rank0"),
        "{err}"
    );

    // A manifest from the future.
    let broken = tempfile::tempdir().unwrap();
    copy_dir(&out, broken.path());
    let manifest = std::fs::read_to_string(broken.path().join("manifest.json")).unwrap();
    std::fs::write(
        broken.path().join("manifest.json"),
        manifest.replace(
            &format!("\"format_version\": {FORMAT_VERSION}"),
            "\"format_version\": 99",
        ),
    )
    .unwrap();
    let err = open(broken.path());
    assert!(err.contains("newer than this neuron-decode"), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dst = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_dir(&entry.path(), &dst);
        } else {
            std::fs::copy(entry.path(), dst).unwrap();
        }
    }
}
