//! The kernel against an obviously correct reference: a full forward pass in f64 with plain
//! loops and no cache, over small random models.

use std::sync::{Arc, Barrier, Mutex};

use super::forward::*;
use super::packed::{Packed, pack};

struct Model {
    dims: Dims,
    embed: Vec<f32>,
    layers: Vec<[Vec<f32>; 9]>,
    final_norm: Vec<f32>,
    /// The same weights as the kernels take them: matrices packed in panels.
    device: DeviceWeights,
}

struct DeviceWeights {
    embed: Vec<f32>,
    layers: Vec<[Vec<f32>; 9]>,
}

/// Rows and columns of each of a layer's nine weights (`None`: a vector, stored as is).
fn layer_shapes(dims: &Dims) -> [Option<(usize, usize)>; 9] {
    let (d, i) = (dims.hidden, dims.intermediate);
    let (qw, kvw) = (dims.q_heads * dims.head_dim, dims.kv_heads * dims.head_dim);
    [
        None,
        Some((qw, d)),
        Some((kvw, d)),
        Some((kvw, d)),
        Some((d, qw)),
        None,
        Some((i, d)),
        Some((i, d)),
        Some((d, i)),
    ]
}

fn device_weights(dims: &Dims, embed: &[f32], layers: &[[Vec<f32>; 9]]) -> DeviceWeights {
    let shapes = layer_shapes(dims);
    DeviceWeights {
        embed: pack(embed, dims.vocab, dims.hidden),
        layers: layers
            .iter()
            .map(|l| {
                std::array::from_fn(|i| match shapes[i] {
                    Some((rows, cols)) => pack(&l[i], rows, cols),
                    None => l[i].clone(),
                })
            })
            .collect(),
    }
}

fn rng(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15).wrapping_add(7);
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
    }
}

fn small_model(seed: u64) -> Model {
    model_with(seed, 37, 4, 2)
}

fn model_with(seed: u64, vocab: usize, q_heads: usize, kv_heads: usize) -> Model {
    let dims = Dims {
        vocab,
        hidden: 32,
        intermediate: 48,
        layers: 2,
        q_heads,
        kv_heads,
        head_dim: 8,
        rope_inv_freq: super::linalg::rope_inv_freq(10000.0, 8),
        rms_eps: 1e-5,
        max_len: 40,
        slots: 3,
        vocab_offset: 0,
        vocab_local: vocab,
    };
    let mut r = rng(seed);
    let mut v = |n: usize, scale: f32| (0..n).map(|_| r() * scale).collect::<Vec<f32>>();
    let (d, i, qw, kvw) = (
        dims.hidden,
        dims.intermediate,
        dims.q_heads * dims.head_dim,
        dims.kv_heads * dims.head_dim,
    );
    let embed = v(dims.vocab * d, 1.0);
    let layers: Vec<[Vec<f32>; 9]> = (0..dims.layers)
        .map(|_| {
            [
                v(d, 0.2).into_iter().map(|x| 1.0 + x).collect(),
                v(qw * d, 0.3),
                v(kvw * d, 0.3),
                v(kvw * d, 0.3),
                v(d * qw, 0.3),
                v(d, 0.2).into_iter().map(|x| 1.0 + x).collect(),
                v(i * d, 0.3),
                v(i * d, 0.3),
                v(d * i, 0.3),
            ]
        })
        .collect();
    let final_norm = v(d, 0.2).into_iter().map(|x| 1.0 + x).collect();
    let device = device_weights(&dims, &embed, &layers);
    Model {
        dims,
        embed,
        layers,
        final_norm,
        device,
    }
}

impl Model {
    fn weights(&self) -> Weights<'_> {
        let shapes = layer_shapes(&self.dims);
        let embed = Packed::new(&self.device.embed, self.dims.vocab, self.dims.hidden).unwrap();
        Weights {
            embed,
            layers: self
                .device
                .layers
                .iter()
                .map(|l| {
                    let m = |i: usize| {
                        let (rows, cols) = shapes[i].unwrap();
                        Packed::new(&l[i], rows, cols).unwrap()
                    };
                    LayerWeights {
                        input_norm: &l[0],
                        q_proj: m(1),
                        k_proj: m(2),
                        v_proj: m(3),
                        o_proj: m(4),
                        post_norm: &l[5],
                        gate_proj: m(6),
                        up_proj: m(7),
                        down_proj: m(8),
                    }
                })
                .collect(),
            final_norm: &self.final_norm,
            lm_head: embed,
        }
    }

    /// Rank `rank` of `ranks`: a slice of the heads and of the MLP, the vocabulary split too.
    fn shard(&self, rank: usize, ranks: usize) -> Model {
        let dm = &self.dims;
        let (d, hd) = (dm.hidden, dm.head_dim);
        let rows = |w: &[f32], cols: usize, from: usize, n: usize| {
            w[from * cols..(from + n) * cols].to_vec()
        };
        let cols = |w: &[f32], width: usize, from: usize, n: usize| {
            w.chunks_exact(width)
                .flat_map(|row| row[from..from + n].to_vec())
                .collect::<Vec<f32>>()
        };
        let (qh, kh, im) = (
            dm.q_heads / ranks,
            dm.kv_heads / ranks,
            dm.intermediate / ranks,
        );
        let layers: Vec<[Vec<f32>; 9]> = self
            .layers
            .iter()
            .map(|l| {
                [
                    l[0].clone(),
                    rows(&l[1], d, rank * qh * hd, qh * hd),
                    rows(&l[2], d, rank * kh * hd, kh * hd),
                    rows(&l[3], d, rank * kh * hd, kh * hd),
                    cols(&l[4], dm.q_heads * hd, rank * qh * hd, qh * hd),
                    l[5].clone(),
                    rows(&l[6], d, rank * im, im),
                    rows(&l[7], d, rank * im, im),
                    cols(&l[8], dm.intermediate, rank * im, im),
                ]
            })
            .collect();
        let vocab_local = if dm.vocab.is_multiple_of(ranks) {
            dm.vocab / ranks
        } else {
            dm.vocab
        };
        let vocab_offset = if vocab_local == dm.vocab {
            0
        } else {
            rank * vocab_local
        };
        let dims = Dims {
            intermediate: im,
            q_heads: qh,
            kv_heads: kh,
            vocab_offset,
            vocab_local,
            ..dm.clone()
        };
        let device = device_weights(&dims, &self.embed, &layers);
        Model {
            dims,
            embed: self.embed.clone(),
            layers,
            final_norm: self.final_norm.clone(),
            device,
        }
    }

    /// Reference logits for every position of `tokens`, from the crate's f64 reference.
    fn reference(&self, tokens: &[i32]) -> Vec<Vec<f64>> {
        let dm = &self.dims;
        let cfg = crate::reference::ReferenceConfig {
            vocab: dm.vocab,
            hidden: dm.hidden,
            intermediate: dm.intermediate,
            layers: dm.layers,
            heads: dm.q_heads,
            kv_heads: dm.kv_heads,
            head_dim: dm.head_dim,
            rope_inv_freq: dm.rope_inv_freq.clone(),
            rms_eps: dm.rms_eps as f64,
            tied_embeddings: true,
        };
        const NAMES: [&str; 9] = [
            "input_layernorm.weight",
            "self_attn.q_proj.weight",
            "self_attn.k_proj.weight",
            "self_attn.v_proj.weight",
            "self_attn.o_proj.weight",
            "post_attention_layernorm.weight",
            "mlp.gate_proj.weight",
            "mlp.up_proj.weight",
            "mlp.down_proj.weight",
        ];
        let weight = |name: &str| -> Vec<f32> {
            match name {
                "model.embed_tokens.weight" => self.embed.clone(),
                "model.norm.weight" => self.final_norm.clone(),
                _ => {
                    let rest = name.strip_prefix("model.layers.").unwrap();
                    let (l, param) = rest.split_once('.').unwrap();
                    let i = NAMES.iter().position(|n| *n == param).unwrap();
                    self.layers[l.parse::<usize>().unwrap()][i].clone()
                }
            }
        };
        let tokens: Vec<u32> = tokens.iter().map(|&t| t as u32).collect();
        crate::reference::logits(&cfg, &weight, &tokens)
    }
}

const TOLERANCE: f64 = 2e-4;

fn assert_close(actual: &[f32], expected: &[f64], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (*a as f64 - e).abs() <= TOLERANCE * (1.0 + e.abs()),
            "{what}[{i}]: {a} vs {e}"
        );
    }
}

/// Runs one pass with a single row; returns logits per output.
fn run(model: &Model, cache: &mut [f32], row: Row<'_>, at: OutputAt) -> Vec<Vec<f32>> {
    let tokens = row.tokens;
    let v = model.dims.vocab;
    let outputs = if at == OutputAt::All { tokens.len() } else { 1 };
    let mut logits = vec![0.0; outputs * v];
    let mut next = vec![0; outputs];
    forward(
        &model.dims,
        &model.weights(),
        cache,
        Batch {
            rows: &[row],
            output_at: at,
        },
        Outputs {
            at: &(0..outputs).collect::<Vec<_>>(),
            logits: Some(&mut logits),
            hidden: None,
            next_token: Some(&mut next),
        },
        &SingleRank,
        &mut Scratch::default(),
    )
    .unwrap();
    for (o, chunk) in logits.chunks(v).enumerate() {
        assert_eq!(next[o] as usize, super::linalg::argmax(chunk));
    }
    logits.chunks(v).map(<[f32]>::to_vec).collect()
}

fn row<'a>(
    slot: usize,
    cache_len: usize,
    tokens: &'a [i32],
    positions: &'a [i32],
    mask: Option<&'a [u8]>,
) -> Row<'a> {
    Row {
        slot,
        cache_len,
        tokens,
        positions,
        mask,
        width: tokens.len(),
    }
}

/// Runs one pass of `rows`, each row's output (at its last token) going to destination
/// `at[r]` of `logits` and, if given, `next`.
fn run_last(
    model: &Model,
    cache: &mut [f32],
    rows: &[Row<'_>],
    at: &[usize],
    logits: &mut [f32],
    next: Option<&mut [i32]>,
) {
    forward(
        &model.dims,
        &model.weights(),
        cache,
        Batch {
            rows,
            output_at: OutputAt::Last,
        },
        Outputs {
            at,
            logits: Some(logits),
            hidden: None,
            next_token: next,
        },
        &SingleRank,
        &mut Scratch::default(),
    )
    .unwrap();
}

fn positions(from: usize, n: usize) -> Vec<i32> {
    (from as i32..(from + n) as i32).collect()
}

#[test]
fn prefill_matches_the_reference_at_every_position() {
    let model = small_model(1);
    let tokens = [3, 17, 0, 36, 5, 5, 12];
    let mut cache = vec![0.0; model.dims.kv_cache_len()];
    let got = run(
        &model,
        &mut cache,
        row(0, 0, &tokens, &positions(0, 7), None),
        OutputAt::All,
    );
    let expected = model.reference(&tokens);
    for t in 0..tokens.len() {
        assert_close(&got[t], &expected[t], &format!("position {t}"));
    }
}

#[test]
fn cached_decoding_equals_a_full_prefill() {
    let model = small_model(2);
    let tokens = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    let expected = model.reference(&tokens);
    let mut cache = vec![0.0; model.dims.kv_cache_len()];
    let last = run(
        &model,
        &mut cache,
        row(1, 0, &tokens[..4], &positions(0, 4), None),
        OutputAt::Last,
    );
    assert_close(&last[0], &expected[3], "prefill");
    for t in 4..tokens.len() {
        let step = run(
            &model,
            &mut cache,
            row(1, t, &tokens[t..t + 1], &positions(t, 1), None),
            OutputAt::Last,
        );
        assert_close(&step[0], &expected[t], &format!("decode step {t}"));
    }
}

#[test]
fn long_passes_decode_exactly_as_short_ones() {
    // 36 tokens in one pass spread their per-token work (norms, rotations, the products'
    // copies, the argmax and the logits) over the pool; 6 at a time keep it on the calling
    // thread. A token's values must not depend on which.
    let model = small_model(6);
    let tokens: Vec<i32> = (0..36).map(|i| (i * 7 + 3) % 37).collect();
    let mut cache = vec![0.0; model.dims.kv_cache_len()];
    let long = run(
        &model,
        &mut cache,
        row(0, 0, &tokens, &positions(0, 36), None),
        OutputAt::All,
    );
    let mut short = Vec::new();
    for start in (0..36).step_by(6) {
        short.extend(run(
            &model,
            &mut cache,
            row(
                1,
                start,
                &tokens[start..start + 6],
                &positions(start, 6),
                None,
            ),
            OutputAt::All,
        ));
    }
    let bits = |x: &[Vec<f32>]| -> Vec<u32> { x.iter().flatten().map(|v| v.to_bits()).collect() };
    assert_eq!(bits(&long), bits(&short));
    // Two rows of 18 in one pass, their outputs written to destinations in reverse order.
    let v = model.dims.vocab;
    let (mut logits, mut next) = (vec![0.0; 2 * v], vec![0; 2]);
    let p = positions(0, 18);
    let rows = [
        row(2, 0, &tokens[..18], &p, None),
        row(0, 0, &tokens[18..], &p, None),
    ];
    run_last(
        &model,
        &mut cache,
        &rows,
        &[1, 0],
        &mut logits,
        Some(&mut next),
    );
    let alone = |t: &[i32]| {
        let mut cache = vec![0.0; model.dims.kv_cache_len()];
        run(&model, &mut cache, row(0, 0, t, &p, None), OutputAt::Last).remove(0)
    };
    let (a, b) = (alone(&tokens[..18]), alone(&tokens[18..]));
    let row_bits = |x: &[f32]| -> Vec<u32> { x.iter().map(|v| v.to_bits()).collect() };
    assert_eq!(row_bits(&logits[v..]), row_bits(&a), "row a");
    assert_eq!(row_bits(&logits[..v]), row_bits(&b), "row b");
    let best = |x: &[f32]| super::linalg::argmax(x) as i32;
    assert_eq!(next, [best(&b), best(&a)]);
}

/// A tree over 6 new tokens: 0 is the root, 1 and 2 its children, 3 child of 1, 4 and 5
/// children of 2. Parent of each node, and its depth.
const PARENT: [Option<usize>; 6] = [None, Some(0), Some(0), Some(1), Some(2), Some(2)];

fn tree_mask() -> (Vec<u8>, Vec<usize>) {
    let n = PARENT.len();
    let mut mask = vec![0u8; n * n];
    let mut depth = vec![0; n];
    for i in 0..n {
        let mut a = Some(i);
        while let Some(j) = a {
            mask[i * n + j] = 1;
            a = PARENT[j];
            if a.is_some() {
                depth[i] += 1;
            }
        }
    }
    (mask, depth)
}

fn path_to(node: usize) -> Vec<usize> {
    let mut path = vec![node];
    while let Some(p) = PARENT[*path.last().unwrap()] {
        path.push(p);
    }
    path.reverse();
    path
}

#[test]
fn tree_verify_equals_decoding_each_path() {
    let model = small_model(3);
    let prompt = [4, 8, 15, 16, 23];
    let tree = [30, 1, 2, 9, 11, 13];
    let (mask, depth) = tree_mask();
    let mut cache = vec![0.0; model.dims.kv_cache_len()];
    run(
        &model,
        &mut cache,
        row(2, 0, &prompt, &positions(0, 5), None),
        OutputAt::Last,
    );
    let pos: Vec<i32> = depth.iter().map(|d| (prompt.len() + d) as i32).collect();
    let got = run(
        &model,
        &mut cache,
        row(2, prompt.len(), &tree, &pos, Some(&mask)),
        OutputAt::All,
    );
    for (node, logits) in got.iter().enumerate() {
        let mut seq = prompt.to_vec();
        seq.extend(path_to(node).iter().map(|&j| tree[j]));
        let expected = model.reference(&seq);
        assert_close(logits, expected.last().unwrap(), &format!("node {node}"));
    }
}

#[test]
fn committing_a_path_then_decoding_equals_a_fresh_prefill() {
    let model = small_model(4);
    let prompt = [4, 8, 15, 16, 23];
    let tree = [30, 1, 2, 9, 11, 13];
    let (mask, depth) = tree_mask();
    let mut cache = vec![0.0; model.dims.kv_cache_len()];
    run(
        &model,
        &mut cache,
        row(0, 0, &prompt, &positions(0, 5), None),
        OutputAt::Last,
    );
    let pos: Vec<i32> = depth.iter().map(|d| (prompt.len() + d) as i32).collect();
    run(
        &model,
        &mut cache,
        row(0, prompt.len(), &tree, &pos, Some(&mask)),
        OutputAt::All,
    );
    // Accept the path root -> 2 -> 5.
    let accepted = [0, 2, 5];
    commit_kv(
        &model.dims.kv_layout(),
        &mut cache,
        0,
        prompt.len(),
        &accepted,
    )
    .unwrap();
    let mut seq = prompt.to_vec();
    seq.extend(accepted.iter().map(|&j| tree[j as usize]));
    let next = 7;
    let len = seq.len();
    let got = run(
        &model,
        &mut cache,
        row(0, len, &[next], &positions(len, 1), None),
        OutputAt::Last,
    );
    seq.push(next);
    let expected = model.reference(&seq);
    assert_close(&got[0], expected.last().unwrap(), "after commit");
}

#[test]
fn rows_of_a_batch_are_independent() {
    let model = small_model(5);
    let (a, b) = ([1, 2, 3, 4], [9, 8]);
    let mut cache = vec![0.0; model.dims.kv_cache_len()];
    let v = model.dims.vocab;
    let mut logits = vec![0.0; 2 * v];
    let (pa, pb) = (positions(0, 4), positions(0, 2));
    let rows = [
        Row {
            slot: 2,
            cache_len: 0,
            tokens: &a,
            positions: &pa,
            mask: None,
            width: 4,
        },
        Row {
            slot: 0,
            cache_len: 0,
            tokens: &b,
            positions: &pb,
            mask: None,
            width: 4,
        },
    ];
    run_last(&model, &mut cache, &rows, &[0, 1], &mut logits, None);
    assert_close(&logits[..v], model.reference(&a).last().unwrap(), "row a");
    assert_close(&logits[v..], model.reference(&b).last().unwrap(), "row b");
}

#[test]
fn bad_inputs_are_refused_before_anything_is_written() {
    let model = small_model(6);
    let mut cache = vec![0.0; model.dims.kv_cache_len()];
    let try_row = |cache: &mut [f32], row: Row<'_>| {
        forward(
            &model.dims,
            &model.weights(),
            cache,
            Batch {
                rows: &[row],
                output_at: OutputAt::Last,
            },
            Outputs {
                at: &[0],
                logits: None,
                hidden: None,
                next_token: None,
            },
            &SingleRank,
            &mut Scratch::default(),
        )
    };
    let p = positions(0, 2);
    let cases: Vec<(Row<'_>, &str)> = vec![
        (
            Row {
                slot: 3,
                cache_len: 0,
                tokens: &[1, 2],
                positions: &p,
                mask: None,
                width: 2,
            },
            "slot 3",
        ),
        (
            Row {
                slot: 0,
                cache_len: 39,
                tokens: &[1, 2],
                positions: &p,
                mask: None,
                width: 2,
            },
            "exceed",
        ),
        (
            Row {
                slot: 0,
                cache_len: 0,
                tokens: &[1, 37],
                positions: &p,
                mask: None,
                width: 2,
            },
            "token id 37",
        ),
        (
            Row {
                slot: 0,
                cache_len: 0,
                tokens: &[1, -1],
                positions: &p,
                mask: None,
                width: 2,
            },
            "token id -1",
        ),
        (
            Row {
                slot: 0,
                cache_len: 0,
                tokens: &[1, 2],
                positions: &p,
                mask: Some(&[1, 1, 1, 1]),
                width: 2,
            },
            "later token",
        ),
        (
            Row {
                slot: 0,
                cache_len: 0,
                tokens: &[1, 2],
                positions: &p,
                mask: Some(&[1, 0, 1, 0]),
                width: 2,
            },
            "itself",
        ),
    ];
    for (row, needle) in cases {
        let err = try_row(&mut cache, row).unwrap_err().to_string();
        assert!(err.contains(needle), "{err} should mention {needle}");
    }
    assert!(cache.iter().all(|&v| v == 0.0));
}

/// A world of threads meeting at a barrier, for the tensor-parallel test.
struct ThreadWorld {
    rank: usize,
    ranks: usize,
    barrier: Arc<Barrier>,
    slots: Arc<Mutex<Vec<Vec<f32>>>>,
}

impl ThreadWorld {
    fn exchange(&self, local: &[f32]) -> Vec<Vec<f32>> {
        self.slots.lock().unwrap()[self.rank] = local.to_vec();
        self.barrier.wait();
        let all = self.slots.lock().unwrap().clone();
        self.barrier.wait();
        all
    }
}

impl Collective for ThreadWorld {
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<(), CollectiveError> {
        let all = self.exchange(buf);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = all.iter().map(|part| part[i]).sum();
        }
        Ok(())
    }
    fn all_gather(&self, local: &[f32], out: &mut [f32]) -> Result<(), CollectiveError> {
        for (r, part) in self.exchange(local).iter().enumerate() {
            out[r * local.len()..(r + 1) * local.len()].copy_from_slice(part);
        }
        Ok(())
    }
    fn world_size(&self) -> usize {
        self.ranks
    }
}

#[test]
fn tensor_parallel_ranks_agree_with_one_rank() {
    // Vocabulary 40 splits across 2 and 4 ranks; 37 does not, so the head is replicated.
    for (vocab, ranks) in [(40, 2), (40, 4), (37, 2)] {
        check_tensor_parallel(vocab, ranks);
    }
}

fn check_tensor_parallel(vocab: usize, ranks: usize) {
    let model = model_with(7, vocab, 8, 4);
    let tokens = [5, 6, 7, 8, 9];
    let single = {
        let mut cache = vec![0.0; model.dims.kv_cache_len()];
        run(
            &model,
            &mut cache,
            row(0, 0, &tokens, &positions(0, 5), None),
            OutputAt::All,
        )
    };
    {
        let barrier = Arc::new(Barrier::new(ranks));
        let slots = Arc::new(Mutex::new(vec![Vec::new(); ranks]));
        let results: Vec<Vec<f32>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..ranks)
                .map(|rank| {
                    let shard = model.shard(rank, ranks);
                    let world = ThreadWorld {
                        rank,
                        ranks,
                        barrier: barrier.clone(),
                        slots: slots.clone(),
                    };
                    scope.spawn(move || {
                        let mut cache = vec![0.0; shard.dims.kv_cache_len()];
                        let v = shard.dims.vocab;
                        let mut logits = vec![0.0; tokens.len() * v];
                        let p = positions(0, 5);
                        let row = Row {
                            slot: 0,
                            cache_len: 0,
                            tokens: &tokens,
                            positions: &p,
                            mask: None,
                            width: 5,
                        };
                        forward(
                            &shard.dims,
                            &shard.weights_sharded(),
                            &mut cache,
                            Batch {
                                rows: &[row],
                                output_at: OutputAt::All,
                            },
                            Outputs {
                                at: &[0, 1, 2, 3, 4],
                                logits: Some(&mut logits),
                                hidden: None,
                                next_token: None,
                            },
                            &world,
                            &mut Scratch::default(),
                        )
                        .unwrap();
                        logits
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for logits in results {
            let expected: Vec<f64> = single.concat().iter().map(|&x| x as f64).collect();
            assert_close(&logits, &expected, &format!("tp={ranks}"));
        }
    }
}

impl Model {
    /// Weights of a shard, whose LM head is its slice of the (tied) embedding.
    fn weights_sharded(&self) -> Weights<'_> {
        let weights = self.weights();
        Weights {
            lm_head: weights
                .embed
                .slice_rows(self.dims.vocab_offset, self.dims.vocab_local),
            ..weights
        }
    }
}
