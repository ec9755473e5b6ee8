//! Chat templates: the Jinja template a model ships to turn a conversation into its prompt.
//!
//! Rendered with minijinja configured as Hugging Face `transformers` configures Jinja for chat
//! templates: `trim_blocks` and `lstrip_blocks` on, loop controls, Python string and dict
//! methods (`.strip()`, `.items()`), `raise_exception(msg)` and `strftime_now(fmt)`, with
//! `messages`, `add_generation_prompt`, `bos_token` and `eos_token` in scope.

use std::path::{Path, PathBuf};

use minijinja::{Environment, ErrorKind, context};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const TEMPLATE_NAME: &str = "chat";

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl Message {
    /// A message with the given role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    path: PathBuf,
    source: String,
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("path", &self.path)
            .field("source_len", &self.source.len())
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `path` (where it came from) is used in messages. `bos_token` and
    /// `eos_token` are the strings templates see under those names.
    ///
    /// # Errors
    ///
    /// [`Error::ChatTemplate`] if the template does not parse.
    pub fn new(
        source: String,
        path: &Path,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, source.clone())
            .map_err(|e| template_error(path, &e))?;
        Ok(Self {
            path: path.to_path_buf(),
            source,
            env,
            bos_token: bos_token.unwrap_or_default(),
            eos_token: eos_token.unwrap_or_default(),
        })
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders a conversation. With `add_generation_prompt` the prompt ends with the opening
    /// of an assistant turn, ready for the model to answer.
    ///
    /// # Errors
    ///
    /// [`Error::ChatTemplate`] if rendering fails (including the template's own
    /// `raise_exception`, for example for roles it does not accept).
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| template_error(&self.path, &e))?;
        template
            .render(context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| template_error(&self.path, &e))
    }
}

/// The current UTC date formatted with the few `strftime` codes chat templates use (`%d`, `%m`,
/// `%Y`, `%b`, `%B`, `%H`, `%M`, `%S`, `%%`); templates use it to print today's date.
fn strftime_now(format: String) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format_utc(secs, &format)
}

fn format_utc(secs: u64, format: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let days = (secs / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    let tod = secs % 86_400;
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('B') => out.push_str(MONTHS[(m - 1) as usize]),
            Some('b') => out.push_str(&MONTHS[(m - 1) as usize][..3]),
            Some('H') => out.push_str(&format!("{:02}", tod / 3600)),
            Some('M') => out.push_str(&format!("{:02}", tod / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", tod % 60)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Gregorian (year, month 1..=12, day 1..=31) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days` algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn template_error(path: &Path, e: &minijinja::Error) -> Error {
    let mut message = e.to_string();
    if let Some(line) = e.line() {
        message.push_str(&format!(" (template line {line})"));
    }
    Error::ChatTemplate {
        path: path.to_path_buf(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SmolLM2 template as stored in its GGUF.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn template(src: &str) -> ChatTemplate {
        ChatTemplate::new(
            src.into(),
            Path::new("tokenizer_config.json"),
            Some("<s>".into()),
            Some("</s>".into()),
        )
        .unwrap()
    }

    #[test]
    fn renders_smollm2_conversations() {
        let t = template(SMOLLM2);
        assert_eq!(
            t.render(&[Message::user("Hi")], true).unwrap(),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.render(
                &[
                    Message::system("Be brief."),
                    Message::user("Hi"),
                    Message::assistant("Hello")
                ],
                false
            )
            .unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n"
        );
    }

    #[test]
    fn supports_what_hugging_face_templates_use() {
        // trim_blocks/lstrip_blocks, python string methods, bos/eos, loop controls.
        let src = "{{ bos_token }}\n{% for m in messages %}\n  {% if m.role == 'system' %}{% continue %}{% endif %}\n{{ m.content.strip() | upper }}{{ eos_token }}\n{% endfor %}";
        let t = template(src);
        let out = t
            .render(&[Message::system("x"), Message::user("  hi  ")], false)
            .unwrap();
        assert_eq!(out, "<s>\nHI</s>\n");
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let err =
            ChatTemplate::new("{% for %}".into(), Path::new("t.jinja"), None, None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("t.jinja: chat template error: "),
            "{err}"
        );
        let t = template(
            "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}",
        );
        let err = t
            .render(&[Message::assistant("x")], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("first message must be from the user"), "{err}");
    }

    #[test]
    fn formats_dates() {
        // 2024-02-29 13:05:09 UTC
        let secs = 1_709_211_909;
        assert_eq!(
            format_utc(secs, "%d %b %Y %H:%M:%S %%"),
            "29 Feb 2024 13:05:09 %"
        );
        assert_eq!(format_utc(0, "%B %d, %Y"), "January 01, 1970");
    }
}
