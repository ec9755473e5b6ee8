//! Opening Hugging Face model directories: the happy path on a tiny generated model, and every
//! file in it truncated or corrupted.

#![allow(clippy::unwrap_used)] // Tests (helpers included) may unwrap.

use std::path::Path;

use parallel_decode::loading::synthetic::{TinyLlama, write_tiny_llama};
use parallel_decode::loading::{Message, ModelDir};

fn tiny() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_tiny_llama(dir.path(), &TinyLlama::default()).unwrap();
    dir
}

fn open_err(dir: &Path) -> String {
    ModelDir::open(dir).unwrap_err().to_string()
}

fn edit(dir: &Path, file: &str, f: impl FnOnce(Vec<u8>) -> Vec<u8>) {
    let p = dir.join(file);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, f(bytes)).unwrap();
}

#[test]
fn opens_a_tiny_model() {
    let dir = tiny();
    let m = ModelDir::open(dir.path()).unwrap();
    assert_eq!(m.config().num_layers, 2);
    assert_eq!(
        m.weights().names().len(),
        m.config().expected_tensors().len()
    );
    let ids = m.encode_chat(&[Message::user("the ant")]).unwrap();
    assert_eq!(ids[0], 1, "<|im_start|> is one token");
    let text = m.tokenizer().decode(&ids, true).unwrap();
    assert_eq!(text, "user\nthe ant\nassistant\n");
}

#[test]
fn streams_multibyte_characters_split_over_tokens() {
    let dir = tiny();
    let m = ModelDir::open(dir.path()).unwrap();
    let tok = m.tokenizer();
    // The tiny vocabulary has no multi-byte tokens: each UTF-8 byte is its own token.
    let text = "é😀 ok";
    let ids = tok.encode(text, false).unwrap();
    // é: 2 bytes, 😀: 4 bytes, " ok": 3 (no merge applies).
    assert_eq!(ids.len(), 9, "{ids:?}");
    let mut stream = tok.stream_decoder(false);
    let pieces: Vec<Option<String>> = ids.iter().map(|&id| stream.step(id).unwrap()).collect();
    assert_eq!(pieces[0], None, "first byte of é alone is incomplete");
    assert_eq!(pieces[1].as_deref(), Some("é"));
    assert_eq!(&pieces[2..5], &[None, None, None]);
    assert_eq!(pieces[5].as_deref(), Some("😀"));
    let joined: String = pieces.into_iter().flatten().collect();
    assert_eq!(joined + &stream.finish(), text);
    // A stream cut inside a character ends with a replacement character, like decode does.
    let mut stream = tok.stream_decoder(false);
    assert_eq!(stream.step(ids[2]).unwrap(), None);
    assert_eq!(stream.finish(), "\u{FFFD}");
    assert!(tok.stream_decoder(false).step(100_000).is_err());
}

#[test]
fn truncated_or_corrupt_weights_are_named_errors() {
    let dir = tiny();
    edit(dir.path(), "model.safetensors", |b| {
        b[..b.len() - 10].to_vec()
    });
    let err = open_err(dir.path());
    assert!(
        err.contains("model.safetensors is not a valid safetensors file: tensor `"),
        "{err}"
    );
    assert!(err.contains("do not fit"), "{err}");

    let dir = tiny();
    edit(dir.path(), "model.safetensors", |b| b[..4].to_vec());
    assert!(open_err(dir.path()).contains("too short for the 8-byte header length"));

    let dir = tiny();
    edit(dir.path(), "model.safetensors", |mut b| {
        b[8] = b'#'; // the opening brace of the JSON header
        b
    });
    assert!(open_err(dir.path()).contains("header is not a JSON object"));

    let dir = tiny();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    assert!(
        open_err(dir.path())
            .contains("has neither model.safetensors nor model.safetensors.index.json")
    );
}

#[test]
fn configs_that_disagree_with_the_weights_are_named_errors() {
    let dir = tiny();
    edit(dir.path(), "config.json", |b| {
        String::from_utf8(b)
            .unwrap()
            .replace("\"intermediate_size\": 32", "\"intermediate_size\": 48")
            .into_bytes()
    });
    let err = open_err(dir.path());
    assert!(
        err.contains(
            "tensor `model.layers.0.mlp.gate_proj.weight` has shape [32, 16], expected [48, 16]"
        ),
        "{err}"
    );

    let dir = tiny();
    edit(dir.path(), "config.json", |b| {
        String::from_utf8(b)
            .unwrap()
            .replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3")
            .into_bytes()
    });
    assert!(
        open_err(dir.path()).ends_with("tensor `model.layers.2.input_layernorm.weight` is missing")
    );

    let dir = tiny();
    edit(dir.path(), "config.json", |b| b[..b.len() / 2].to_vec());
    let err = open_err(dir.path());
    assert!(
        err.contains("config.json is not valid: EOF while parsing"),
        "{err}"
    );

    let dir = tiny();
    edit(dir.path(), "config.json", |b| {
        String::from_utf8(b)
            .unwrap()
            .replace("\"vocab_size\": 265", "\"vocab_size\": 100")
            .into_bytes()
    });
    assert!(
        open_err(dir.path()).ends_with(
            "tensor `model.embed_tokens.weight` has shape [265, 16], expected [100, 16]"
        )
    );
}

#[test]
fn broken_tokenizer_files_are_named_errors() {
    let dir = tiny();
    edit(dir.path(), "tokenizer.json", |b| b[..b.len() / 3].to_vec());
    let err = open_err(dir.path());
    assert!(err.contains("tokenizer.json: tokenizer error"), "{err}");

    let dir = tiny();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    assert!(open_err(dir.path()).contains("tokenizer.json: read failed"));

    let dir = tiny();
    edit(dir.path(), "tokenizer_config.json", |b| {
        String::from_utf8(b)
            .unwrap()
            .replace("{% endfor %}", "{% endfor")
            .into_bytes()
    });
    let err = open_err(dir.path());
    assert!(
        err.contains("tokenizer_config.json: chat template error"),
        "{err}"
    );

    let dir = tiny();
    std::fs::write(
        dir.path().join("generation_config.json"),
        "{\"eos_token_id\": 99999}",
    )
    .unwrap();
    assert!(
        open_err(dir.path()).contains(
            "generation_config.json: `eos_token_id` (99999) is not below vocab_size (265)"
        )
    );
}

#[test]
fn a_separate_chat_template_file_takes_precedence() {
    let dir = tiny();
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "{% for m in messages %}[{{ m.role }}] {{ m.content }}\n{% endfor %}",
    )
    .unwrap();
    let m = ModelDir::open(dir.path()).unwrap();
    assert_eq!(
        m.render_chat(&[Message::user("hi")], false).unwrap(),
        "[user] hi\n"
    );
}

/// Random byte changes in the safetensors header and the JSON files: opening returns an error
/// or a model, never panics. Prints how many inputs ran.
#[test]
fn random_corruption_never_panics() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let dir = tiny();
    let files = [
        "model.safetensors",
        "config.json",
        "tokenizer_config.json",
        "generation_config.json",
    ];
    let originals: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(dir.path().join(f)).unwrap())
        .collect();
    let cases = 400;
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let (ran, opened) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    let strategy = (
        0..files.len(),
        prop::collection::vec((0usize..4096, any::<u8>()), 1..6),
        prop::option::of(0usize..4096),
    );
    runner
        .run(&strategy, |(which, writes, truncate)| {
            let mut bytes = originals[which].clone();
            // Aim at the headers: the first 4 KiB hold every JSON byte and the safetensors header.
            let span = bytes.len().min(4096);
            for (at, b) in writes {
                bytes[at % span] = b;
            }
            if let Some(cut) = truncate {
                bytes.truncate(cut);
            }
            std::fs::write(dir.path().join(files[which]), &bytes).unwrap();
            ran.set(ran.get() + 1);
            if ModelDir::open(dir.path()).is_ok() {
                opened.set(opened.get() + 1);
            }
            std::fs::write(dir.path().join(files[which]), &originals[which]).unwrap();
            Ok(())
        })
        .unwrap();
    eprintln!(
        "model directory fuzz: {} corrupted inputs ran, {} still opened",
        ran.get(),
        opened.get()
    );
    assert_eq!(ran.get(), cases);
}
