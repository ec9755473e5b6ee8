//! GGUF: dequantization against an independent implementation, import round trips, and
//! corrupt or truncated files.

#![allow(clippy::unwrap_used)] // Tests (helpers included) may unwrap.

use std::path::Path;

use parallel_decode::loading::gguf::llama::gguf_tensor_name;
use parallel_decode::loading::gguf::quant::dequantize;
use parallel_decode::loading::gguf::{
    GgmlType, GgufFile, GgufWriter, ImportOptions, Value, import_gguf,
};
use parallel_decode::loading::synthetic::TinyLlama;
use parallel_decode::loading::{Dtype, FileBytes, ModelDir, NoProgress, Tensor};
use serde_json::Value as Json;

fn fixture(name: &str) -> Json {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn ggml_type(name: &str) -> GgmlType {
    match name {
        "F16" => GgmlType::F16,
        "BF16" => GgmlType::BF16,
        "Q4_0" => GgmlType::Q4_0,
        "Q4_1" => GgmlType::Q4_1,
        "Q5_0" => GgmlType::Q5_0,
        "Q5_1" => GgmlType::Q5_1,
        "Q8_0" => GgmlType::Q8_0,
        "Q4_K" => GgmlType::Q4_K,
        "Q5_K" => GgmlType::Q5_K,
        "Q6_K" => GgmlType::Q6_K,
        other => panic!("fixture type {other}"),
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Random blocks dequantized by the `gguf` Python package (scripts/fixtures/quant_blocks.py)
/// must dequantize to the same values here, bit for bit.
#[test]
fn dequantization_matches_the_gguf_package() {
    let f = fixture("gguf_quant_blocks.json");
    let cases = f["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 10);
    for case in cases {
        let ty = ggml_type(case["type"].as_str().unwrap());
        let bytes = hex(case["bytes_hex"].as_str().unwrap());
        let expected: Vec<f32> = case["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let mut out = vec![0f32; expected.len()];
        dequantize(ty, &bytes, &mut out).unwrap();
        for (i, (a, b)) in out.iter().zip(&expected).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "{ty} element {i}: {a} vs {b}");
        }
    }
}

// ---- Import round trip with quantized tensors -------------------------------------------------

/// A tensor whose values lie exactly on a quantization grid, so that quantizing it loses
/// nothing: per block of 32 along a row, a power-of-two scale `d`, an offset `m` (Q4_1 only) and
/// small integers.
struct GridTensor {
    rows: Vec<Vec<(f32, f32, [i32; 32])>>,
}

impl GridTensor {
    fn random(rows: usize, cols: usize, ty: GgmlType, seed: &mut u64) -> Self {
        let mut next = move || {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed
        };
        let rows = (0..rows)
            .map(|_| {
                (0..cols / 32)
                    .map(|_| {
                        let d = [0.25f32, 0.125, 0.0625, 0.5][(next() % 4) as usize];
                        let m = if ty == GgmlType::Q4_1 {
                            -((next() % 8) as f32) * 0.125
                        } else {
                            0.0
                        };
                        let mut q = [0i32; 32];
                        for v in &mut q {
                            *v = match ty {
                                GgmlType::Q8_0 => (next() % 255) as i32 - 127,
                                GgmlType::Q4_0 => (next() % 16) as i32 - 8,
                                _ => (next() % 16) as i32,
                            };
                        }
                        (d, m, q)
                    })
                    .collect()
            })
            .collect();
        Self { rows }
    }

    fn values(&self) -> Vec<f32> {
        self.rows
            .iter()
            .flat_map(|r| {
                r.iter()
                    .flat_map(|(d, m, q)| q.iter().map(move |&q| q as f32 * d + m))
            })
            .collect()
    }

    /// The GGML blocks, written from the block layouts.
    fn encode(&self, ty: GgmlType) -> Vec<u8> {
        let h = |v: f32| half::f16::from_f32(v).to_le_bytes();
        let mut out = Vec::new();
        for (d, m, q) in self.rows.iter().flatten() {
            out.extend(h(*d));
            match ty {
                GgmlType::Q8_0 => out.extend(q.iter().map(|&v| v as i8 as u8)),
                GgmlType::Q4_0 => {
                    out.extend((0..16).map(|j| ((q[j] + 8) | ((q[j + 16] + 8) << 4)) as u8))
                }
                GgmlType::Q4_1 => {
                    out.extend(h(*m));
                    out.extend((0..16).map(|j| (q[j] | (q[j + 16] << 4)) as u8));
                }
                other => panic!("{other}"),
            }
        }
        out
    }

    fn reordered(&self, order: &[usize]) -> Self {
        Self {
            rows: order.iter().map(|&src| self.rows[src].clone()).collect(),
        }
    }
}

/// The row order llama.cpp's converter gives q/k projections: within each head, the rows viewed
/// as [2, head_dim / 2] are transposed to [head_dim / 2, 2]. `order[stored_row] = hf_row`.
fn converter_row_order(rows: usize, heads: usize) -> Vec<usize> {
    let head_dim = rows / heads;
    let mut order = vec![0; rows];
    for h in 0..heads {
        for half in 0..2 {
            for j in 0..head_dim / 2 {
                order[h * head_dim + j * 2 + half] = h * head_dim + half * head_dim / 2 + j;
            }
        }
    }
    order
}

fn quantized_spec() -> TinyLlama {
    TinyLlama {
        hidden_size: 64,
        intermediate_size: 96,
        num_layers: 2,
        num_heads: 4,
        num_kv_heads: 2,
        tie_word_embeddings: false,
        seed: 7,
    }
}

/// Writes a GGUF whose tensors cycle through Q8_0, Q4_0, Q4_1, F16, BF16 and F32 with values
/// each type represents exactly; returns it and the expected Hugging Face weights.
fn quantized_gguf() -> (Vec<u8>, Vec<(String, Tensor)>) {
    let spec = quantized_spec();
    let config = spec.config().unwrap();
    let mut w = spec.gguf_metadata().unwrap();
    let mut expected = Vec::new();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let types = [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::F32,
    ];
    for (i, (name, Tensor { shape, .. })) in spec.weights().unwrap().into_iter().enumerate() {
        let (gname, heads) = gguf_tensor_name(&name, &config).unwrap();
        let ty = if shape.len() == 1 {
            types[3 + i % 3]
        } else {
            types[i % types.len()]
        };
        let (rows, cols) = if shape.len() == 2 {
            (shape[0], shape[1])
        } else {
            (1, shape[0])
        };
        let order = heads.map_or_else(|| (0..rows).collect(), |h| converter_row_order(rows, h));
        let t = GridTensor::random(rows, cols.next_multiple_of(32), ty, &mut seed);
        match ty {
            GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1 => {
                w.tensor(&gname, &shape, ty, t.reordered(&order).encode(ty));
                expected.push((
                    name,
                    Tensor {
                        shape,
                        data: t.values(),
                    },
                ));
            }
            _ => {
                // k / 8 with |k| < 128 is exact in f16 and bf16.
                let row_values = |r: usize| -> Vec<f32> {
                    t.rows[r]
                        .iter()
                        .flat_map(|(_, _, q)| q.iter().map(|&k| (k % 128) as f32 / 8.0))
                        .take(cols)
                        .collect()
                };
                let values: Vec<f32> = (0..rows).flat_map(row_values).collect();
                let stored: Vec<f32> = order.iter().flat_map(|&r| row_values(r)).collect();
                let bytes: Vec<u8> = match ty {
                    GgmlType::F16 => stored
                        .iter()
                        .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                        .collect(),
                    GgmlType::BF16 => stored
                        .iter()
                        .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                        .collect(),
                    _ => stored.iter().flat_map(|v| v.to_le_bytes()).collect(),
                };
                w.tensor(&gname, &shape, ty, bytes);
                expected.push((
                    name,
                    Tensor {
                        shape,
                        data: values,
                    },
                ));
            }
        }
    }
    (w.to_bytes(), expected)
}

#[test]
fn quantized_gguf_round_trips_through_import() {
    let (bytes, expected) = quantized_gguf();
    let file = GgufFile::parse(FileBytes::owned("quantized.gguf", bytes)).unwrap();
    let kinds: std::collections::BTreeSet<String> = file
        .tensors()
        .iter()
        .map(|t| t.ggml_type.to_string())
        .collect();
    assert_eq!(kinds.len(), 6, "{kinds:?}");
    let dir = tempfile::tempdir().unwrap();
    let summary = import_gguf(&file, dir.path(), &ImportOptions::default(), &NoProgress).unwrap();
    assert_eq!(summary.tensors, expected.len());
    let model = ModelDir::open(dir.path()).unwrap();
    assert_eq!(model.config(), &quantized_spec().config().unwrap());
    for (name, want) in &expected {
        let t = model.weights().f32(name, &want.shape).unwrap();
        assert_eq!(&t, want, "{name}");
        assert_eq!(model.weights().get(name).unwrap().dtype(), Dtype::F32);
    }
}

#[test]
fn bf16_import_rounds_and_refuses_to_overwrite() {
    let (bytes, expected) = quantized_gguf();
    let file = GgufFile::parse(FileBytes::owned("quantized.gguf", bytes)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bf16 = ImportOptions {
        dtype: Dtype::BF16,
        overwrite: false,
    };
    import_gguf(&file, dir.path(), &bf16, &NoProgress).unwrap();
    let model = ModelDir::open(dir.path()).unwrap();
    for (name, want) in &expected {
        let view = model.weights().get(name).unwrap();
        assert_eq!(view.dtype(), Dtype::BF16);
        let got = model.weights().f32(name, &want.shape).unwrap().data;
        for (g, v) in got.iter().zip(&want.data) {
            assert_eq!(*g, half::bf16::from_f32(*v).to_f32(), "{name}");
        }
    }
    let err = import_gguf(&file, dir.path(), &bf16, &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("a model is already there"), "{err}");
}

#[test]
fn imported_directory_has_the_hugging_face_files() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TinyLlama::default();
    parallel_decode::loading::synthetic::write_tiny_llama(dir.path(), &spec).unwrap();
    let read = |f: &str| -> Json {
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(f)).unwrap()).unwrap()
    };
    let config = read("config.json");
    assert_eq!(config["architectures"][0], "LlamaForCausalLM");
    assert_eq!(config["rms_norm_eps"], 1e-5);
    assert_eq!(config["tie_word_embeddings"], true);
    let tc = read("tokenizer_config.json");
    assert_eq!(tc["eos_token"], "<|im_end|>");
    assert_eq!(tc["bos_token"], "<|im_start|>");
    assert_eq!(tc["add_bos_token"], false);
    assert!(
        tc["chat_template"]
            .as_str()
            .unwrap()
            .contains("<|im_start|>")
    );
    let gc = read("generation_config.json");
    assert_eq!(
        (gc["bos_token_id"].clone(), gc["eos_token_id"].clone()),
        (Json::from(1), Json::from(2))
    );
    let tok = read("tokenizer.json");
    assert_eq!(tok["pre_tokenizer"]["pretokenizers"][0]["type"], "Digits");
    assert_eq!(tok["added_tokens"].as_array().unwrap().len(), 3);
    // Weights equal the spec's (F32 GGUF, so exactly), q/k un-permuted.
    let model = ModelDir::open(dir.path()).unwrap();
    for (name, t) in spec.weights().unwrap() {
        assert_eq!(model.weights().f32(&name, &t.shape).unwrap(), t, "{name}");
    }
    assert_eq!(model.eos_token_ids(), &[2]);
    assert_eq!(model.bos_token_id(), Some(1));
}

// ---- Unsupported and corrupt files ------------------------------------------------------------

fn tiny_gguf() -> Vec<u8> {
    TinyLlama::default().to_gguf().unwrap().to_bytes()
}

fn parse(bytes: Vec<u8>) -> parallel_decode::Result<GgufFile> {
    GgufFile::parse(FileBytes::owned("m.gguf", bytes))
}

fn parse_err(bytes: Vec<u8>) -> String {
    parse(bytes).unwrap_err().to_string()
}

#[test]
fn truncated_and_corrupt_headers_are_clear_errors() {
    let good = tiny_gguf();
    assert_eq!(parse(good.clone()).unwrap().version(), 3);
    // Version 2 has the same layout (64-bit counts): it reads the same.
    let mut v2 = good.clone();
    v2[4] = 2;
    let f = parse(v2).unwrap();
    assert_eq!(
        (f.version(), f.tensors().len()),
        (2, parse(good.clone()).unwrap().tensors().len())
    );
    assert_eq!(
        parse_err(vec![]),
        "m.gguf is not a valid GGUF file: at byte 0, the magic number needs 4 bytes but only 0 remain (the file is truncated)"
    );
    assert!(parse_err(b"PK\x03\x04rest".to_vec()).contains("not the GGUF magic"));
    let mut v1 = good.clone();
    v1[4] = 1;
    assert!(parse_err(v1).contains("version 1"));
    let mut be = good.clone();
    be[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(parse_err(be).contains("big-endian"));
    let mut huge = good.clone();
    huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(parse_err(huge).contains("the tensor count is 18446744073709551615, more than"));
    // Every truncation point gives an error, never a panic; past the header, the message says
    // which tensor runs past the end.
    for len in [10, 30, 100, 1000, good.len() / 2, good.len() - 1] {
        let err = parse_err(good[..len].to_vec());
        assert!(
            err.starts_with("m.gguf is not a valid GGUF file: "),
            "{err}"
        );
        assert!(err.contains("truncated"), "{len}: {err}");
    }
}

#[test]
fn bad_metadata_and_tensor_infos_are_clear_errors() {
    let with = |f: &dyn Fn(&mut GgufWriter)| {
        let mut w = GgufWriter::new();
        f(&mut w);
        parse_err(w.to_bytes())
    };
    assert!(
        with(&|w| {
            w.metadata("a", Value::U8(1)).metadata("a", Value::U8(2));
        })
        .contains("metadata key `a` appears twice")
    );
    assert!(
        with(&|w| {
            w.metadata("general.alignment", Value::U32(3));
        })
        .contains("must be a power of two")
    );
    assert!(
        with(&|w| {
            w.tensor("t", &[31], GgmlType::Q8_0, vec![0; 34]);
        })
        .contains("rows of 31 elements are not a whole number of Q8_0 blocks of 32")
    );
    assert!(
        with(&|w| {
            w.tensor("t", &[4], GgmlType(99), vec![0; 16]);
        })
        .contains("tensor `t` has unknown GGML type 99")
    );
    assert!(
        with(&|w| {
            w.tensor("t", &[2, 1, 1, 1, 1], GgmlType::F32, vec![0; 8]);
        })
        .contains("5 dimensions")
    );
    assert!(
        with(&|w| {
            w.tensor_f32("t", &[1], &[1.0])
                .tensor_f32("t", &[1], &[1.0]);
        })
        .contains("tensor `t` appears twice")
    );
    assert!(
        with(&|w| {
            w.tensor("t", &[64], GgmlType::F32, vec![0; 8]);
        })
        .contains("tensor `t` (256 bytes at data offset 0) runs past the end of the file")
    );
    // A bool byte other than 0/1, and a value type code that does not exist.
    // Header (24 bytes), key length (8), key (1), value type (4), then the value.
    let mut bytes = GgufWriter::new()
        .metadata("b", Value::Bool(true))
        .to_bytes();
    assert_eq!(bytes[37], 1);
    bytes[37] = 7;
    assert!(parse_err(bytes).contains("bool byte 7"));
    let mut bytes = GgufWriter::new().metadata("k", Value::U8(0)).to_bytes();
    bytes[33..37].copy_from_slice(&77u32.to_le_bytes());
    assert!(parse_err(bytes).contains("unknown value type 77"));
}

#[test]
fn unsupported_models_name_what_is_unsupported() {
    let import = |w: &GgufWriter| -> String {
        let file = parse(w.to_bytes()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        import_gguf(&file, dir.path(), &ImportOptions::default(), &NoProgress)
            .unwrap_err()
            .to_string()
    };
    let spec = TinyLlama::default();
    let mut w = spec.to_gguf().unwrap();
    w.metadata("general.architecture", Value::String("qwen2".into()));
    // The later duplicate key makes the file invalid, so build from scratch instead.
    let err = parse_err(w.to_bytes());
    assert!(err.contains("appears twice"));

    let mut w = GgufWriter::new();
    w.metadata("general.architecture", Value::String("qwen2".into()));
    assert!(
        import(&w)
            .ends_with("architecture \"qwen2\" (only \"llama\" can be imported) is not supported")
    );

    let mut w = spec.to_gguf().unwrap();
    w.tensor_f32("rope_freqs.weight", &[2], &[1.0, 1.0]);
    assert!(import(&w).contains("rope frequency factors"));

    let mut w = spec.to_gguf().unwrap();
    w.tensor_f32("blk.0.ffn_gate_exps.weight", &[2], &[1.0, 1.0]);
    assert!(import(&w).contains(
        "tensor `blk.0.ffn_gate_exps.weight` (not part of a Llama model) is not supported"
    ));

    let mut w = spec.gguf_metadata().unwrap();
    w.tensor_f32("token_embd.weight", &[2, 2], &[0.0; 4]);
    assert!(
        import(&w)
            .contains("m.gguf: tensor `token_embd.weight` has shape [2, 2], expected [265, 16]")
    );

    let mut w = spec.gguf_metadata().unwrap();
    w.tensor_f32("token_embd.weight", &[265, 16], &vec![0.0; 265 * 16]);
    assert!(import(&w).contains(
        "tensor `model.layers.0.input_layernorm.weight (GGUF tensor for it)` is missing"
    ));

    let mut w = spec.to_gguf().unwrap();
    w.tensor("blk.0.extra", &[256], GgmlType::Q2_K, vec![0; 84]);
    assert!(import(&w).contains("blk.0.extra"));
}

// ---- Fuzzing: random mutations of a small GGUF ------------------------------------------------

/// Mutates the tiny model's GGUF at random (byte overwrites, truncation, splices) and checks
/// that parsing and importing return, never panic. Prints how many inputs ran.
#[test]
fn random_mutations_never_panic() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use std::cell::Cell;

    let good = tiny_gguf();
    let len = good.len();
    let cases = 3000;
    let mutation = (
        prop::collection::vec((0..len, any::<u8>()), 1..8),
        prop::option::of(0..len),
        prop::option::of((0..len, prop::collection::vec(any::<u8>(), 1..16))),
    );
    let (ran, parsed, imported) = (Cell::new(0u32), Cell::new(0u32), Cell::new(0u32));
    let dir = tempfile::tempdir().unwrap();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&mutation, |(writes, truncate, splice)| {
            let mut bytes = good.clone();
            for (at, b) in writes {
                bytes[at] = b;
            }
            if let Some((at, insert)) = splice {
                bytes.splice(at..at, insert);
            }
            if let Some(t) = truncate {
                bytes.truncate(t);
            }
            ran.set(ran.get() + 1);
            if let Ok(file) = GgufFile::parse(FileBytes::owned("fuzz.gguf", bytes)) {
                parsed.set(parsed.get() + 1);
                let options = ImportOptions {
                    overwrite: true,
                    ..ImportOptions::default()
                };
                if import_gguf(&file, dir.path(), &options, &NoProgress).is_ok() {
                    imported.set(imported.get() + 1);
                    let _ = ModelDir::open(dir.path());
                }
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "GGUF fuzz: {} mutated inputs ran, {} parsed, {} imported (the rest were rejected with errors)",
        ran.get(),
        parsed.get(),
        imported.get()
    );
    assert_eq!(ran.get(), cases);
}
