//! `neuron-decode train-heads` and `neuron-decode tune`, run as a user would run them, on a
//! tiny generated model and the mock device; and what the default model decodes with out of
//! the box.

#![allow(clippy::unwrap_used)] // Tests (helpers included) may unwrap.

use std::path::Path;
use std::process::{Command, Output};

use parallel_decode::loading::medusa_heads::MedusaHeads;
use parallel_decode::loading::synthetic::{TinyLlama, write_tiny_llama};

fn neuron_decode(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_neuron-decode"));
    c.arg("--no-progress")
        .arg("--lib")
        .arg(neuron_mock::testing::library_path())
        .env("NEURON_DECODE_HOME", home);
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the binary runs")
}

fn ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn one_error(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    lines[0].to_string()
}

#[test]
fn trains_heads_then_tunes_their_tree() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let model = dir.path().join("tiny");
    write_tiny_llama(&model, &TinyLlama::default()).unwrap();
    let prompts = dir.path().join("prompts.jsonl");
    let lines: Vec<String> = (0..12)
        .map(|i| format!("{{\"prompt\": \"question {i} about the tent\"}}"))
        .collect();
    std::fs::write(&prompts, lines.join("\n")).unwrap();
    let heads = dir.path().join("heads.safetensors");
    let train_command = |extra: &[&str]| {
        let mut c = neuron_decode(&home);
        c.args(["train-heads", "--model"])
            .arg(&model)
            .arg("--prompts")
            .arg(&prompts)
            .arg("--out")
            .arg(&heads)
            .args([
                "--heads",
                "2",
                "--epochs",
                "3",
                "--batch",
                "16",
                "--max-new-tokens",
                "10",
                "--rows",
                "3",
            ])
            .args(extra);
        c
    };
    let train = |extra: &[&str]| ok(&mut train_command(extra));
    let out = train(&[]);
    assert!(
        out.contains("answers to 0 prompts read from the cache")
            && out.contains("and to 12 generated"),
        "{out}"
    );
    assert!(out.contains("held-out accuracy (2 prompts"), "{out}");
    let first = std::fs::read(&heads).unwrap();
    // A rerun reads the cached data and, with the same seed, writes the same heads.
    let out = train(&[]);
    assert!(
        out.contains("answers to 12 prompts read") && out.contains("and to 0 generated"),
        "{out}"
    );
    assert_eq!(std::fs::read(&heads).unwrap(), first);
    assert!(dir.path().join("heads.eval.json").is_file());
    // Soft targets by default: the base model's distribution, scored from the stored states,
    // names the answers' own tokens. Without them (greedy tokens alone) other heads train.
    assert!(
        out.contains("soft targets (weight 0.5)")
            && out.contains("the answer's at 100.00% of the positions"),
        "{out}"
    );
    let out = train(&["--teacher-weight", "0"]);
    assert!(!out.contains("soft targets"), "{out}");
    assert_ne!(std::fs::read(&heads).unwrap(), first);
    // The products with the LM head in f32, then in bf16: on AMX they train (rounding makes
    // other heads); elsewhere bf16 is refused, before distilling, naming the option.
    let out = train(&["--matmul", "f32"]);
    assert!(out.contains("trained 2 heads"), "{out}");
    let f32_heads = std::fs::read(&heads).unwrap();
    let bf16 = run(&mut train_command(&["--matmul", "bf16"]));
    if bf16.status.success() {
        assert_ne!(std::fs::read(&heads).unwrap(), f32_heads);
    } else {
        let err = String::from_utf8_lossy(&bf16.stderr);
        assert!(err.contains("--matmul") && err.contains("AMX"), "{err}");
    }
    let err = one_error(&mut {
        let mut c = neuron_decode(&home);
        c.args(["train-heads", "--model"])
            .arg(&model)
            .arg("--prompts")
            .arg(&prompts)
            .args(["--max-new-tokens", "10", "--teacher-weight", "2"])
            .arg("--out")
            .arg(dir.path().join("unused.safetensors"));
        c
    });
    assert!(
        err.contains("--teacher-weight") && err.contains("must be between 0 and 1"),
        "{err}"
    );

    // A flat cost table: every observed path up to the width is worth taking.
    let table = dir.path().join("cost.json");
    std::fs::write(
        &table,
        r#"{"widths": [[1, 1.0], [2, 1.0], [4, 1.0], [8, 1.0]], "heads": 0.1}"#,
    )
    .unwrap();
    let tune = |extra: &[&str]| {
        let mut c = neuron_decode(&home);
        c.args(["tune", "--model"])
            .arg(&model)
            .arg("--heads")
            .arg(&heads)
            .args(extra);
        c
    };
    let out = ok(&mut tune(&[
        "--cost-table",
        table.to_str().unwrap(),
        "--max-nodes",
        "8",
    ]));
    assert!(
        out.contains("chosen tree") && out.contains("recorded tree"),
        "{out}"
    );
    // The table's costs are printed as given, in its own unit.
    assert!(
        out.contains("cost in the table's unit") && out.contains("      2     1.00      1.00"),
        "{out}"
    );
    let file = MedusaHeads::open(&heads, 16).unwrap();
    let tree = file.tree().expect("tune records the tree").clone();
    assert!(tree.len() <= 7 && tree.depth() <= 2);
    drop(file);

    // Measured on the mock, as JSON, without writing.
    let out = ok(&mut tune(&[
        "--dry-run",
        "--json",
        "--max-nodes",
        "4",
        "--repeats",
        "1",
    ]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    // The default verify buckets up to --max-nodes.
    let widths: Vec<u64> = v["cost"]["widths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w[0].as_u64().unwrap())
        .collect();
    assert_eq!(widths, [1, 2, 3, 4], "{v}");
    assert!(v["chosen"]["expected_tau"].as_f64().unwrap() >= 1.0);
    // The recorded tree starts with the chosen one.
    let (chosen, recorded) = (
        v["tree"].as_array().unwrap(),
        v["recorded"].as_array().unwrap(),
    );
    assert!(
        recorded.len() >= chosen.len() && recorded[..chosen.len()] == chosen[..],
        "{v}"
    );
    let file = MedusaHeads::open(&heads, 16).unwrap();
    assert_eq!(file.tree(), Some(&tree), "--dry-run leaves the file alone");
    drop(file);

    // Re-recording a vocabulary keeps the weights and the tuned tree.
    let weights = |path: &Path| {
        let file = MedusaHeads::open(path, 16).unwrap();
        parallel_decode::medusa::file::read_heads(&file, 16).unwrap()
    };
    let trained = weights(&heads);
    let out = train(&["--reuse-weights", "--vocab-size", "20"]);
    assert!(out.contains("kept the 2 heads"), "{out}");
    assert!(out.contains("heads vocabulary: the 20 tokens"), "{out}");
    assert_eq!(weights(&heads), trained);
    let file = MedusaHeads::open(&heads, 16).unwrap();
    assert_eq!(file.tree(), Some(&tree));
    assert_eq!(file.vocab().map(<[u32]>::len), Some(20));
    drop(file);

    // Measuring the heads on other prompts writes nothing and reports every prompt.
    let before = std::fs::read(&heads).unwrap();
    let eval_before = std::fs::read(dir.path().join("heads.eval.json")).unwrap();
    let other = dir.path().join("other.jsonl");
    std::fs::write(
        &other,
        "{\"prompt\": \"a new question\"}\n{\"prompt\": \"and another\"}\n",
    )
    .unwrap();
    let evaluate_only = |file: &Path| {
        let mut c = neuron_decode(&home);
        c.args(["train-heads", "--evaluate-only", "--model"])
            .arg(&model)
            .arg("--prompts")
            .arg(&other)
            .arg("--out")
            .arg(file)
            .args(["--max-new-tokens", "10", "--rows", "2"]);
        c
    };
    let out = ok(&mut evaluate_only(&heads));
    assert!(out.contains("and to 2 generated"), "{out}");
    assert!(
        out.contains("heads.safetensors on ") && out.contains("other.jsonl (2 prompts"),
        "{out}"
    );
    assert!(out.contains("chain"), "{out}");
    assert!(!out.contains("trained"), "{out}");
    assert_eq!(std::fs::read(&heads).unwrap(), before);
    assert_eq!(
        std::fs::read(dir.path().join("heads.eval.json")).unwrap(),
        eval_before
    );
    // No heads file to measure: one clear error naming it.
    let err = one_error(&mut evaluate_only(&dir.path().join("missing.safetensors")));
    assert!(err.contains("missing.safetensors"), "{err}");

    // Missing evaluation: one clear error naming the file.
    std::fs::remove_file(dir.path().join("heads.eval.json")).unwrap();
    let err = one_error(&mut tune(&["--cost-table", table.to_str().unwrap()]));
    assert!(err.contains("heads.eval.json"), "{err}");
}

/// `tune` with no `--heads`: the default model's shipped heads are tuned in a copy beside the
/// model (which the device commands prefer), the shipped copy in the cache stays as built; a
/// model without heads gets one error saying what to pass.
#[test]
fn tune_without_heads_tunes_a_copy_of_the_shipped_ones() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    // The default model, fetched into the shared test cache (scripts/test.sh), seen through
    // links from a directory of this test's own, so that what tune writes stays here.
    let mut fetch = Command::new(env!("CARGO_BIN_EXE_neuron-decode"));
    let fetched = ok(fetch.args(["--no-progress", "fetch"]));
    let model = dir.path().join("SmolLM2-135M-Instruct");
    std::fs::create_dir(&model).unwrap();
    for entry in std::fs::read_dir(fetched.trim()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with("medusa_heads") {
            std::os::unix::fs::symlink(entry.path(), model.join(name)).unwrap();
        }
    }
    let table = dir.path().join("cost.json");
    std::fs::write(&table, r#"{"widths": [[1, 1.0], [8, 1.0]], "heads": 0.03}"#).unwrap();
    let tune = |extra: &[&str]| {
        let mut c = neuron_decode(&home);
        c.args(["tune", "--model"])
            .arg(&model)
            .arg("--cost-table")
            .arg(&table)
            .args(["--max-nodes", "8"])
            .args(extra);
        c
    };
    let beside = model.join("medusa_heads.safetensors");
    let out = ok(&mut tune(&["--dry-run"]));
    assert!(out.contains("chosen tree"), "{out}");
    assert!(!beside.exists(), "--dry-run copies nothing");

    let o = run(&mut tune(&[]));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("tuning a copy of the shipped heads"));
    assert!(model.join("medusa_heads.eval.json").is_file());
    let tuned = MedusaHeads::open(&beside, 576).unwrap();
    let tree = tuned.tree().expect("the tree is recorded").clone();
    assert!(tree.len() <= 7, "{tree:?}");
    drop(tuned);
    let shipped = parallel_decode::medusa::default_heads::cached_path(&home);
    assert_eq!(
        std::fs::read(shipped).unwrap(),
        parallel_decode::medusa::default_heads::BYTES
    );
    // The copy is what a second run tunes.
    let o = run(&mut tune(&[]));
    assert!(o.status.success());
    assert!(!String::from_utf8_lossy(&o.stderr).contains("tuning a copy"));

    // A model that is not the default one and has no heads file.
    let tiny = dir.path().join("tiny");
    write_tiny_llama(&tiny, &TinyLlama::default()).unwrap();
    let err = one_error(
        neuron_decode(&home)
            .args(["tune", "--model"])
            .arg(&tiny)
            .arg("--cost-table")
            .arg(&table),
    );
    assert!(
        err.contains("has no heads file") && err.contains("--heads"),
        "{err}"
    );
}

/// `generate` on the default model with no strategy flags takes its built-in feature draft
/// (merged with prompt and answer lookup: `feature-hybrid`) where the CPU runs the draft's
/// 8-bit products with vector instructions, else the heads (`hybrid`); `--no-feature-draft`
/// takes the heads. Every output is the model's own greedy one.
#[test]
fn generate_on_the_default_model_uses_the_built_in_draft() {
    use parallel_decode::feature_draft::{DraftWeights, default_draft};
    // The default model and its compiled artifacts in the shared test cache (scripts/test.sh).
    let bin = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_neuron-decode"));
        c.arg("--no-progress")
            .arg("--lib")
            .arg(neuron_mock::testing::library_path());
        c
    };
    ok(bin().arg("fetch"));
    let generate = |extra: &[&str]| {
        let o = run(bin()
            .args(["generate", "--prompt", "Name three colours of a rainbow."])
            .args(["--max-tokens", "24"])
            .args(extra));
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{extra:?}: {err}");
        (String::from_utf8_lossy(&o.stdout).into_owned(), err)
    };
    let (plain, _) = generate(&["--strategy", "ar"]);
    assert!(!plain.trim().is_empty());
    let (out, err) = generate(&[]);
    assert_eq!(out, plain);
    let expected = if DraftWeights::fastest() == DraftWeights::Int8 {
        "[feature-hybrid]"
    } else {
        "[hybrid]"
    };
    assert!(err.contains(expected), "{err}");
    let (out, err) = generate(&["--no-feature-draft"]);
    assert_eq!(out, plain);
    assert!(err.contains("[hybrid]"), "{err}");
    // Asked for by name, the built-in draft is used on any CPU.
    let (out, err) = generate(&["--strategy", "feature-draft"]);
    assert_eq!(out, plain);
    assert!(err.contains("[feature-draft]"), "{err}");
    let home = parallel_decode::loading::cache::home_dir().unwrap();
    assert_eq!(
        std::fs::read(default_draft::DRAFT.cached_path(&home)).unwrap(),
        default_draft::DRAFT.bytes
    );
    let err = one_error(bin().args([
        "generate",
        "--prompt",
        "hi",
        "--no-feature-draft",
        "--feature-draft",
        "x.safetensors",
    ]));
    assert!(err.contains("--no-feature-draft"), "{err}");
}
