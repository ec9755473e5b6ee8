//! What the files of trained extras (Medusa heads, feature drafts) keep in their safetensors
//! `__metadata__` alike: the format's name, and a vocabulary of token ids.

use std::collections::BTreeMap;

/// Checks that `meta` names format `expected`; the error says what it names instead (`what`
/// is the kind of file, for the message: "a Medusa heads file").
pub(crate) fn check_format(
    meta: &BTreeMap<String, String>,
    expected: &str,
    what: &str,
) -> Result<(), String> {
    match meta.get("format").map(String::as_str) {
        Some(format) if format == expected => Ok(()),
        other => Err(format!(
            "is not {what} (metadata format is {other:?}, expected {expected:?})"
        )),
    }
}

/// Parses a `vocab` metadata value: a JSON list of token ids, not empty, strictly
/// increasing.
pub(crate) fn parse_vocab(text: &str) -> Result<Vec<u32>, String> {
    let ids: Vec<u32> = serde_json::from_str(text)
        .map_err(|e| format!("metadata `vocab` is not a list of token ids: {e}"))?;
    if ids.is_empty() {
        return Err("metadata `vocab` is empty".into());
    }
    if let Some(w) = ids.windows(2).find(|w| w[0] >= w[1]) {
        return Err(format!(
            "metadata `vocab` is not strictly increasing ({} then {})",
            w[0], w[1]
        ));
    }
    Ok(ids)
}
