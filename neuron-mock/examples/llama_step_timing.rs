//! Times one forward pass of a SmolLM2-sized random model for several token counts.
use neuron_mock::kernels::llama::forward::*;
use std::time::Instant;

fn main() {
    let dims = Dims {
        vocab: 49152,
        hidden: 576,
        intermediate: 1536,
        layers: 30,
        q_heads: 9,
        kv_heads: 3,
        head_dim: 64,
        rope_theta: 100000.0,
        rms_eps: 1e-5,
        max_len: 512,
        slots: 1,
        vocab_offset: 0,
        vocab_local: 49152,
    };
    let d = dims.hidden;
    let mut s = 1u32;
    let mut v = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 1000) as f32 / 20000.0 - 0.025
            })
            .collect()
    };
    let embed = v(dims.vocab * d);
    let layers_data: Vec<Vec<Vec<f32>>> = (0..dims.layers)
        .map(|_| {
            vec![
                vec![1.0; d],
                v(576 * 576),
                v(192 * 576),
                v(192 * 576),
                v(576 * 576),
                vec![1.0; d],
                v(1536 * 576),
                v(1536 * 576),
                v(576 * 1536),
            ]
        })
        .collect();
    let final_norm = vec![1.0; d];
    let weights = Weights {
        embed: &embed,
        layers: layers_data
            .iter()
            .map(|l| LayerWeights {
                input_norm: &l[0],
                q_proj: &l[1],
                k_proj: &l[2],
                v_proj: &l[3],
                o_proj: &l[4],
                post_norm: &l[5],
                gate_proj: &l[6],
                up_proj: &l[7],
                down_proj: &l[8],
            })
            .collect(),
        final_norm: &final_norm,
        lm_head: &embed,
    };
    let mut cache = vec![0.0; dims.kv_cache_len()];
    let mut scratch = Scratch::default();
    let bytes = (embed.len() + layers_data.iter().flatten().map(Vec::len).sum::<usize>()) * 4;
    println!("weights: {:.1} MB", bytes as f64 / 1e6);
    let mut base = 0.0;
    for t in [1usize, 2, 4, 8, 16, 32] {
        let tokens: Vec<i32> = (0..t as i32).map(|i| i * 7 + 1).collect();
        let positions: Vec<i32> = (100..100 + t as i32).collect();
        let mut logits = vec![0.0; t * dims.vocab];
        let mut best = f64::MAX;
        for _ in 0..5 {
            let row = Row {
                slot: 0,
                cache_len: 100,
                tokens: &tokens,
                positions: &positions,
                mask: None,
                width: t,
            };
            let start = Instant::now();
            forward(
                &dims,
                &weights,
                &mut cache,
                Batch {
                    rows: &[row],
                    output_at: OutputAt::All,
                },
                Outputs {
                    logits: Some(&mut logits),
                    hidden: None,
                    next_token: None,
                },
                &SingleRank,
                &mut scratch,
            )
            .unwrap();
            best = best.min(start.elapsed().as_secs_f64());
        }
        if t == 1 {
            base = best;
        }
        println!(
            "T={t:2}: {:7.2} ms  ({:.2}x)  {:.1} GB/s effective",
            best * 1e3,
            best / base,
            bytes as f64 / best / 1e9
        );
    }
}
