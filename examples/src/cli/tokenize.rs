//! `neuron-decode tokenize`: text to token ids and back.

use std::io::Read;

use anyhow::{Context, bail};
use parallel_decode::loading::Message;

use super::{GlobalOpts, ModelArg};

/// Print the token ids of a text as a JSON array (or, with --decode, the text of token ids).
///
/// Special tokens written in the text, such as <|im_start|>, are matched whole.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelArg,
    /// The text (or with --decode the ids: a JSON array, or numbers separated by spaces or
    /// commas). Read from stdin when absent or "-".
    text: Option<String>,
    /// Decode token ids to text instead.
    #[arg(long)]
    decode: bool,
    /// With --decode: leave out special tokens such as <|im_end|>.
    #[arg(long, requires = "decode")]
    skip_special: bool,
    /// Wrap the text as a user message in the model's chat template (with the assistant turn
    /// opened) before tokenizing.
    #[arg(long, conflicts_with = "decode")]
    chat: bool,
    /// Do not let the tokenizer add its special tokens (such as a BOS token) around the text.
    #[arg(long, conflicts_with = "decode")]
    no_special: bool,
}

pub fn run(args: &Args, global: &GlobalOpts) -> anyhow::Result<()> {
    let input = match args.text.as_deref() {
        Some(t) if t != "-" => t.to_string(),
        _ => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the text from stdin")?;
            s
        }
    };
    // Check the user's input before the (possibly slow) model loading.
    let ids = if args.decode {
        Some(parse_ids(&input)?)
    } else {
        None
    };
    let model = args.model.open(global)?;
    let tokenizer = model.tokenizer();
    if let Some(ids) = ids {
        let text = tokenizer.decode(&ids, args.skip_special)?;
        println!("{text}");
        return Ok(());
    }
    let ids = if args.chat {
        model.encode_chat(&[Message::user(input)])?
    } else {
        tokenizer.encode(&input, !args.no_special)?
    };
    println!("{}", serde_json::to_string(&ids)?);
    Ok(())
}

/// Ids as a JSON array or as numbers separated by whitespace or commas.
fn parse_ids(input: &str) -> anyhow::Result<Vec<u32>> {
    let trimmed = input.trim();
    if trimmed.starts_with('[') {
        return serde_json::from_str(trimmed)
            .with_context(|| format!("{trimmed:?} is not a JSON array of token ids"));
    }
    let ids: Result<Vec<u32>, _> = trimmed
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect();
    match ids {
        Ok(ids) => Ok(ids),
        Err(_) => {
            bail!("{trimmed:?} is not a list of token ids (expected e.g. [1, 2, 3] or \"1 2 3\")")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_ids;

    #[test]
    fn parses_id_lists() {
        assert_eq!(parse_ids("[1, 2,3]").unwrap(), vec![1, 2, 3]);
        assert_eq!(parse_ids(" 4 5,6\n").unwrap(), vec![4, 5, 6]);
        assert!(parse_ids("1 x").is_err());
        assert!(parse_ids("[-1]").is_err());
    }
}
