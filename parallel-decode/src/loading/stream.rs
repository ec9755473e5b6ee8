//! Decoding tokens as they are generated.
//!
//! One token is not always whole characters: with byte-level BPE an emoji's four UTF-8 bytes
//! may be spread over several tokens. Decoding each token on its own would print replacement
//! characters; the [`StreamDecoder`] holds back the bytes of an incomplete character until the
//! token that completes it arrives.

use tokenizers::tokenizer::DecodeStream;
use tokenizers::{
    DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
};

use super::tokenizer::Tokenizer;
use crate::error::Result;

type GenericStream<'a> = DecodeStream<
    'a,
    ModelWrapper,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// Turns a stream of token ids into text, emitting only complete UTF-8.
///
/// For byte-level tokenizers (GPT-2 style, which includes every GGUF import) it works on
/// bytes: each token's bytes are appended, the longest complete UTF-8 prefix is emitted, and an
/// incomplete trailing sequence (at most 3 bytes) waits for the next token. Bytes that can
/// never become valid UTF-8 are emitted as U+FFFD, as [`Tokenizer::decode`] does. For other
/// tokenizers it falls back to the `tokenizers` crate's incremental decoder.
///
/// The concatenation of everything emitted plus [`StreamDecoder::finish`] equals
/// [`Tokenizer::decode`] of all the ids (on the generic path, except that an incomplete
/// character at the very end is dropped rather than shown as U+FFFD).
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    skip_special_tokens: bool,
    pending: Vec<u8>,
    generic: Option<GenericStream<'a>>,
}

impl<'a> StreamDecoder<'a> {
    pub(crate) fn new(tokenizer: &'a Tokenizer, skip_special_tokens: bool) -> Self {
        let generic = match tokenizer.byte_level() {
            Some(_) => None,
            None => Some(tokenizer.inner().decode_stream(skip_special_tokens)),
        };
        Self {
            tokenizer,
            skip_special_tokens,
            pending: Vec::new(),
            generic,
        }
    }

    /// Adds one token; returns the text it completes, if any.
    ///
    /// # Errors
    ///
    /// [`crate::Error::Tokenizer`] if `id` is not in the vocabulary.
    pub fn step(&mut self, id: u32) -> Result<Option<String>> {
        self.tokenizer.check_ids(&[id])?;
        if let Some(generic) = &mut self.generic {
            return generic
                .step(id)
                .map_err(|e| self.tokenizer.error(e.to_string()));
        }
        let Some(table) = self.tokenizer.byte_level() else {
            return Ok(None);
        };
        let i = id as usize;
        if self.skip_special_tokens && table.special.get(i).copied().unwrap_or(false) {
            return Ok(None);
        }
        self.pending
            .extend_from_slice(table.bytes.get(i).map_or(&[][..], Vec::as_slice));
        let text = take_complete_utf8(&mut self.pending);
        Ok((!text.is_empty()).then_some(text))
    }

    /// Ends the stream, returning whatever is still held back (an incomplete character at the
    /// very end becomes U+FFFD).
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

/// Removes and returns the longest prefix of `pending` that is complete: valid UTF-8, with
/// invalid bytes replaced by U+FFFD. What stays is an incomplete but still possibly valid
/// character at the end.
fn take_complete_utf8(pending: &mut Vec<u8>) -> String {
    let mut out = String::new();
    let mut start = 0;
    loop {
        match std::str::from_utf8(&pending[start..]) {
            Ok(s) => {
                out.push_str(s);
                start = pending.len();
                break;
            }
            Err(e) => {
                let valid = start + e.valid_up_to();
                // The bytes before `valid` were just checked to be UTF-8.
                out.push_str(&String::from_utf8_lossy(&pending[start..valid]));
                match e.error_len() {
                    // Invalid sequence: replace it and go on after it.
                    Some(n) => {
                        out.push(char::REPLACEMENT_CHARACTER);
                        start = valid + n;
                    }
                    // Incomplete sequence at the end: wait for more bytes.
                    None => {
                        start = valid;
                        break;
                    }
                }
            }
        }
    }
    pending.drain(..start);
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A Llama-2-style tokenizer (SentencePiece BPE with byte fallback, `▁` for spaces): not
    /// byte-level, so streaming takes the generic path.
    fn byte_fallback_tokenizer() -> Tokenizer {
        let mut vocab = serde_json::Map::new();
        vocab.insert("<unk>".into(), 0.into());
        for b in 0..=255u32 {
            vocab.insert(format!("<0x{b:02X}>"), (b + 1).into());
        }
        for (i, t) in ["▁", "a", "b", "▁a"].iter().enumerate() {
            vocab.insert(t.to_string(), (257 + i).into());
        }
        let json = serde_json::json!({
            "version": "1.0", "added_tokens": [], "pre_tokenizer": null, "post_processor": null,
            "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": "▁"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"}, {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
            "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
                "continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": true,
                "byte_fallback": true, "ignore_merges": false, "vocab": vocab, "merges": [["▁", "a"]]},
        });
        Tokenizer::from_bytes(Path::new("llama2-style.json"), json.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn generic_path_streams_byte_fallback_tokens() {
        let tok = byte_fallback_tokenizer();
        assert!(tok.byte_level().is_none());
        let text = "a b 😀 ab";
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(&ids[..1], &[260], "▁a merged: {ids:?}");
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
        let mut stream = tok.stream_decoder(false);
        let mut out = String::new();
        for &id in &ids {
            if let Some(piece) = stream.step(id).unwrap() {
                assert!(
                    !piece.contains('\u{FFFD}'),
                    "partial character in {piece:?}"
                );
                out.push_str(&piece);
            }
        }
        out.push_str(&stream.finish());
        assert_eq!(out, text);
    }

    #[test]
    fn holds_back_incomplete_characters() {
        let emoji = "😀".as_bytes(); // F0 9F 98 80
        let mut p = b"a".to_vec();
        p.extend_from_slice(&emoji[..2]);
        assert_eq!(take_complete_utf8(&mut p), "a");
        assert_eq!(p, &emoji[..2]);
        p.extend_from_slice(&emoji[2..]);
        assert_eq!(take_complete_utf8(&mut p), "😀");
        assert!(p.is_empty());
    }

    #[test]
    fn replaces_bytes_that_can_never_be_valid() {
        let mut p = vec![b'x', 0xFF, b'y', 0xC3];
        assert_eq!(take_complete_utf8(&mut p), "x\u{FFFD}y");
        assert_eq!(p, vec![0xC3]);
        // A continuation byte that does not continue: C3 followed by 'z'.
        p.push(b'z');
        assert_eq!(take_complete_utf8(&mut p), "\u{FFFD}z");
        assert!(p.is_empty());
    }
}
