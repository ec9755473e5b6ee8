//! `neuron-decode info`: what the model is, and what device it would run on.

use serde_json::{Map, Value, json};

use super::{GlobalOpts, ModelArg};
use parallel_decode::loading::{ModelDir, RopeScaling};

/// Print facts about the model (and the Neuron runtime library, when one can be loaded).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArg,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args, global: &GlobalOpts) -> anyhow::Result<()> {
    let model = args.model.open(global)?;
    let (model_part, device_part) = (model_facts(&model)?, device_facts(global));
    if args.json {
        let report = json!({"model": model_part, "device": device_part});
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for (title, part) in [("model", &model_part), ("device", &device_part)] {
            println!("{title}:");
            print_text(part, 2);
        }
    }
    Ok(())
}

fn model_facts(model: &ModelDir) -> anyhow::Result<Value> {
    let c = model.config();
    let tok = model.tokenizer();
    let token = |id: u32| json!({"id": id, "token": tok.id_to_token(id)});
    let weights = model.weights();
    let mut dtypes: Vec<String> = weights
        .names()
        .iter()
        .filter_map(|n| weights.get(n).ok().map(|t| t.dtype().to_string()))
        .collect();
    dtypes.sort();
    dtypes.dedup();
    let rope_scaling = match c.rope_scaling {
        None => Value::Null,
        Some(RopeScaling::Linear { factor }) => json!(format!("linear x{factor}")),
        Some(RopeScaling::Llama3 { factor, .. }) => json!(format!("llama3 x{factor}")),
        Some(other) => json!(format!("{other:?}")),
    };
    Ok(json!({
        "path": model.path().display().to_string(),
        "architecture": "llama",
        "parameters": c.parameter_count(),
        "layers": c.num_layers,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "attention_heads": c.num_heads,
        "kv_heads": c.num_kv_heads,
        "head_dim": c.head_dim,
        "vocab_size": c.vocab_size,
        "max_position_embeddings": c.max_position_embeddings,
        "rope_theta": c.rope_theta,
        "rope_scaling": rope_scaling,
        "rms_norm_eps": c.rms_norm_eps,
        "tied_embeddings": c.tie_word_embeddings,
        "weights": {
            "tensors": weights.names().len(),
            "dtypes": dtypes,
            "bytes": weights.total_bytes(),
        },
        "tokenizer": {
            "ids": tok.vocab_size(),
            "bos": model.bos_token_id().map(token),
            "eos": model.eos_token_ids().iter().map(|&id| token(id)).collect::<Vec<_>>(),
            "chat_template": model.chat_template().is_some(),
        },
    }))
}

/// The Neuron runtime library this process uses and why, and the device as the runtime sees
/// it (instance, NeuronCores, device memory).
fn device_facts(global: &GlobalOpts) -> Value {
    let rt = match super::session::runtime(global) {
        Ok(rt) => rt,
        Err(e) => return json!({"library": Value::Null, "error": format!("{e:#}")}),
    };
    let cores = rt.visible_cores().ok();
    let memory = cores
        .and_then(|_| rt.memory_stats(0).ok())
        .map(|m| json!({"used_bytes": m.used, "limit_bytes": m.limit}));
    json!({
        "library": rt.library_path().display().to_string(),
        "chosen_by": rt.library_source().to_string(),
        "runtime_version": rt.version().map(|v| v.to_string()),
        "runtime_detail": rt.version().map(|v| v.detail.clone()),
        "instance": rt.instance_info().ok().and_then(|i| i.instance_type()),
        "total_cores": rt.total_cores().ok(),
        "visible_cores": cores,
        "memory_of_core_0": memory,
    })
}

fn print_text(value: &Value, indent: usize) {
    let Value::Object(map) = value else {
        return;
    };
    let pad = " ".repeat(indent);
    for (key, v) in map {
        match v {
            Value::Object(inner) if !is_token(inner) => {
                println!("{pad}{key}:");
                print_text(v, indent + 2);
            }
            _ => println!("{pad}{key}: {}", render(v)),
        }
    }
}

fn is_token(m: &Map<String, Value>) -> bool {
    m.contains_key("id") && m.contains_key("token")
}

fn render(v: &Value) -> String {
    match v {
        Value::Null => "none".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(render).collect::<Vec<_>>().join(", "),
        Value::Object(m) if is_token(m) => format!("{} {}", m["id"], m["token"]),
        other => other.to_string(),
    }
}
