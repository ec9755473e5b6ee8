//! The tokenizer: a Hugging Face `tokenizer.json` run by the `tokenizers` crate, with checked
//! ids and a streaming decoder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tokenizers::DecoderWrapper;

use super::stream::StreamDecoder;
use crate::error::{Error, Result};

/// A loaded tokenizer.
pub struct Tokenizer {
    path: PathBuf,
    inner: tokenizers::Tokenizer,
    /// Number of ids (model vocabulary and added tokens); every valid id is below it.
    id_count: u32,
    /// Ids of special added tokens (skipped by `skip_special_tokens`), sorted.
    special_ids: Vec<u32>,
    /// For byte-level tokenizers, the bytes each id decodes to (see [`StreamDecoder`]).
    byte_level: Option<ByteLevelTable>,
}

/// The exact bytes every token of a byte-level tokenizer stands for.
pub(crate) struct ByteLevelTable {
    pub(crate) bytes: Vec<Vec<u8>>,
    pub(crate) special: Vec<bool>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("path", &self.path)
            .field("id_count", &self.id_count)
            .field("byte_level", &self.byte_level.is_some())
            .finish()
    }
}

impl Tokenizer {
    /// Loads a `tokenizer.json`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be read, [`Error::Tokenizer`] if it is not a valid
    /// tokenizer.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, "read", e))?;
        Self::from_bytes(path, &bytes)
    }

    /// Loads a tokenizer from `tokenizer.json` contents; `path` is used in messages.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenizer`] if the bytes are not a valid tokenizer.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let added = inner.get_added_tokens_decoder();
        let max_id = inner
            .get_vocab(true)
            .values()
            .copied()
            .chain(added.keys().copied())
            .max()
            .unwrap_or(0);
        let id_count = max_id.saturating_add(1);
        let mut special_ids: Vec<u32> = added
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(&id, _)| id)
            .collect();
        special_ids.sort_unstable();
        let byte_level = matches!(inner.get_decoder(), Some(DecoderWrapper::ByteLevel(_)))
            .then(|| byte_level_table(&inner, id_count));
        Ok(Self {
            path: path.to_path_buf(),
            inner,
            id_count,
            special_ids,
            byte_level,
        })
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of token ids (vocabulary plus added tokens).
    pub fn vocab_size(&self) -> usize {
        self.id_count as usize
    }

    /// Encodes `text`. `add_special_tokens` applies the tokenizer's post-processor (for example
    /// a BOS token in front); special tokens written in the text (`<|im_start|>`) are always
    /// matched whole.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenizer`] if the tokenizer fails on the input.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(|e| self.error(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes `ids` to text; `skip_special_tokens` leaves out special tokens such as
    /// `<|im_end|>`.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenizer`] naming the first id that is not in the vocabulary.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.check_ids(ids)?;
        self.inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| self.error(e.to_string()))
    }

    /// A decoder for tokens arriving one at a time (generation), which emits text only once it
    /// is complete UTF-8.
    pub fn stream_decoder(&self, skip_special_tokens: bool) -> StreamDecoder<'_> {
        StreamDecoder::new(self, skip_special_tokens)
    }

    /// The id of a token string (including added tokens such as `<|im_end|>`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Whether `id` is a special added token (skipped by `skip_special_tokens`).
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.binary_search(&id).is_ok()
    }

    /// The underlying `tokenizers` tokenizer, for anything this wrapper does not cover.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    pub(crate) fn byte_level(&self) -> Option<&ByteLevelTable> {
        self.byte_level.as_ref()
    }

    /// Checks that every id is in the vocabulary.
    ///
    /// # Errors
    ///
    /// [`Error::Tokenizer`] naming the first id that is not.
    pub fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().find(|&&id| id >= self.id_count) {
            Some(id) => Err(self.error(format!(
                "token id {id} is not in the vocabulary (ids go up to {})",
                self.id_count - 1
            ))),
            None => Ok(()),
        }
    }

    pub(crate) fn error(&self, message: String) -> Error {
        Error::Tokenizer {
            path: self.path.clone(),
            message,
        }
    }
}

/// GPT-2's byte-level alphabet: each byte is shown as a printable character (printable
/// Latin-1 bytes as themselves, the others as U+0100 onwards, in byte order). This inverts it.
fn unicode_to_byte() -> HashMap<char, u8> {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut map = HashMap::with_capacity(256);
    let mut next = 256u32;
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            let c = char::from_u32(next).unwrap_or(char::REPLACEMENT_CHARACTER);
            next += 1;
            c
        };
        map.insert(c, b);
    }
    map
}

fn byte_level_table(inner: &tokenizers::Tokenizer, id_count: u32) -> ByteLevelTable {
    let added = inner.get_added_tokens_decoder();
    let to_byte = unicode_to_byte();
    let mut bytes = Vec::with_capacity(id_count as usize);
    let mut special = Vec::with_capacity(id_count as usize);
    for id in 0..id_count {
        if let Some(t) = added.get(&id) {
            // Added tokens decode as their literal content.
            bytes.push(t.content.as_bytes().to_vec());
            special.push(t.special);
        } else {
            let token = inner.id_to_token(id).unwrap_or_default();
            // A character outside the byte alphabet cannot come from byte-level BPE; keep it
            // as its UTF-8 so that nothing is silently lost.
            let mut b = Vec::with_capacity(token.len());
            for c in token.chars() {
                match to_byte.get(&c) {
                    Some(&byte) => b.push(byte),
                    None => b.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                }
            }
            bytes.push(b);
            special.push(false);
        }
    }
    ByteLevelTable { bytes, special }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_is_a_bijection() {
        let m = unicode_to_byte();
        assert_eq!(m.len(), 256);
        assert_eq!(m[&'Ġ'], b' ');
        assert_eq!(m[&'Ċ'], b'\n');
        assert_eq!(m[&'A'], b'A');
        assert_eq!(m[&'é'], 0xE9);
        let mut bytes: Vec<u8> = m.values().copied().collect();
        bytes.sort_unstable();
        assert_eq!(bytes, (0..=255).collect::<Vec<u8>>());
    }
}
