//! The files the Medusa tools read (prompt sets, cached training data, cost tables, heads
//! evaluations, answers files) under random mutation: every read returns a value or an
//! error, never a panic.
#![allow(clippy::unwrap_used, missing_docs)]

use std::cell::Cell;
use std::path::Path;

use parallel_decode::medusa::data::{Dataset, DistilledSequence};
use parallel_decode::medusa::prompts::parse_prompts;
use parallel_decode::medusa::tune::CostModel;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Byte overwrites, a truncation, and an insertion.
type Mutation = (Vec<(usize, u8)>, Option<usize>, Option<(usize, Vec<u8>)>);

/// Random mutations of an input of `len` bytes, as the GGUF fuzz test makes them.
fn mutations(len: usize) -> impl Strategy<Value = Mutation> {
    (
        prop::collection::vec((0..len, any::<u8>()), 1..6),
        prop::option::of(0..len),
        prop::option::of((0..len, prop::collection::vec(any::<u8>(), 1..12))),
    )
}

fn mutate(good: &[u8], m: &Mutation) -> Vec<u8> {
    let mut bytes = good.to_vec();
    for &(at, b) in &m.0 {
        bytes[at] = b;
    }
    if let Some((at, insert)) = &m.2 {
        bytes.splice(*at..*at, insert.iter().copied());
    }
    if let Some(t) = m.1 {
        bytes.truncate(t.min(bytes.len()));
    }
    bytes
}

fn run(name: &str, good: &[u8], cases: u32, check: impl Fn(&[u8]) -> bool) {
    let (ran, accepted) = (Cell::new(0u32), Cell::new(0u32));
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&mutations(good.len()), |m| {
            ran.set(ran.get() + 1);
            if check(&mutate(good, &m)) {
                accepted.set(accepted.get() + 1);
            }
            Ok(())
        })
        .unwrap();
    eprintln!(
        "{name}: {} mutated inputs, {} still accepted",
        ran.get(),
        accepted.get()
    );
    assert_eq!(ran.get(), cases);
}

#[test]
fn mutated_prompt_files_never_panic() {
    let good = b"{\"prompt\": \"How heavy is it?\", \"kind\": \"open\"}\n{\"prompt\": \"Caf\\u00e9 \\\"latte\\\"?\"}\n";
    run("prompts", good, 2000, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        parse_prompts(Path::new("p.jsonl"), &text).is_ok()
    });
}

#[test]
fn mutated_cost_tables_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cost.json");
    let good = br#"{"widths": [[1, 0.027], [2, 0.026], [4, 0.027], [8, 0.042]], "heads": 0.004}"#;
    run("cost tables", good, 1500, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        match CostModel::read(&path) {
            Ok(m) => m.pass(1).is_some(),
            Err(e) => {
                assert!(e.to_string().contains("cost.json"), "{e}");
                false
            }
        }
    });
}

#[test]
fn mutated_training_data_caches_never_panic() {
    let good = Dataset {
        hidden: 2,
        states: vec![0.5, -1.0, 2.0, 0.25, 1.0, 1.0],
        sequences: vec![
            DistilledSequence {
                prompt: 0,
                tokens: vec![5, 6],
                first_state: 0,
            },
            DistilledSequence {
                prompt: 1,
                tokens: vec![7],
                first_state: 2,
            },
        ],
    };
    let dir = tempfile::tempdir().unwrap();
    good.save(dir.path()).unwrap();
    assert_eq!(Dataset::load(dir.path()).unwrap(), good);
    for file in ["sequences.json", "states.safetensors"] {
        let path = dir.path().join(file);
        let original = std::fs::read(&path).unwrap();
        run(file, &original, 1500, |bytes| {
            std::fs::write(&path, bytes).unwrap();
            Dataset::load(dir.path()).is_ok()
        });
        std::fs::write(&path, &original).unwrap();
    }
}

#[test]
fn mutated_answers_files_never_panic() {
    use parallel_decode::loading::medusa_heads::read_answers;
    use parallel_decode::loading::safetensors::SafetensorsFile;
    use parallel_decode::medusa::file::write_answers;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("answers.safetensors");
    let answers = vec![vec![5, 6, 7], vec![], vec![9, 3]];
    write_answers(&path, &answers).unwrap();
    let read = |path: &Path| read_answers(&SafetensorsFile::open(path)?, 10);
    assert_eq!(read(&path).unwrap(), Some(answers));
    let original = std::fs::read(&path).unwrap();
    run("answers", &original, 1500, |bytes| {
        std::fs::write(&path, bytes).unwrap();
        match read(&path) {
            Ok(Some(a)) => a.iter().flatten().all(|&t| t < 10),
            Ok(None) => false,
            Err(e) => {
                assert!(e.to_string().contains("answers.safetensors"), "{e}");
                false
            }
        }
    });
}
