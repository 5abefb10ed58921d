//! Ids of the language model's added (special) tokens, read from the tokenizer files of a
//! model folder. vtower never tokenizes text; it only needs the ids of a few special tokens
//! that an engine must place around image embeddings and that `config.json` does not list
//! (e.g. Pixtral's `[IMG_BREAK]` and `[IMG_END]`).
//!
//! Where the ids are (checked with transformers 5.23 `save_pretrained` and the Hub files of
//! released checkpoints):
//! - `tokenizer.json` `added_tokens`: `[{"id": 12, "content": "[IMG_BREAK]", ...}, ...]`
//!   (written by every fast tokenizer, 4.x and 5.x);
//! - `tokenizer_config.json` `added_tokens_decoder`: `{"12": {"content": "[IMG_BREAK]", ...}}`
//!   (4.x saves; 5.x saves list only the token strings there, without ids).
//!
//! `tokenizer.json` wins where both give an id. The token *strings* of a multimodal processor
//! are in `processor_config.json` (e.g. `image_break_token`), not here.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::Path;

use serde::Deserialize;

use crate::log;

/// Tokenizer files larger than this are not read (real ones are a few tens of MB at most).
const MAX_TOKENIZER_BYTES: u64 = 256 << 20;

#[derive(Deserialize)]
struct AddedToken {
    id: i64,
    content: String,
}

#[derive(Deserialize)]
struct TokenizerJson {
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
}

#[derive(Deserialize)]
struct DecoderEntry {
    content: String,
}

#[derive(Deserialize)]
struct TokenizerConfigJson {
    #[serde(default)]
    added_tokens_decoder: HashMap<String, DecoderEntry>,
}

/// The added tokens of a model folder's tokenizer, by content.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddedTokens {
    ids: HashMap<String, i64>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    if !path.is_file() {
        return None;
    }
    let result = (|| -> std::result::Result<T, String> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        if len > MAX_TOKENIZER_BYTES {
            return Err(format!("{len} bytes is too large"));
        }
        serde_json::from_reader(BufReader::new(file)).map_err(|e| e.to_string())
    })();
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            log::warn(&format!(
                "{}: cannot read special token ids ({e}); they will be reported as unknown",
                path.display()
            ));
            None
        }
    }
}

impl AddedTokens {
    /// Reads `tokenizer.json` and `tokenizer_config.json` in `dir` when present. Never fails:
    /// an unreadable file is logged as a warning and contributes no ids (the vision tower
    /// itself does not need them).
    pub fn read(dir: &Path) -> AddedTokens {
        let mut ids = HashMap::new();
        if let Some(t) = read_json::<TokenizerJson>(&dir.join("tokenizer.json")) {
            for tok in t.added_tokens {
                ids.entry(tok.content).or_insert(tok.id);
            }
        }
        if let Some(c) = read_json::<TokenizerConfigJson>(&dir.join("tokenizer_config.json")) {
            let mut entries: Vec<(i64, String)> = c
                .added_tokens_decoder
                .into_iter()
                .filter_map(|(id, e)| id.parse::<i64>().ok().map(|id| (id, e.content)))
                .collect();
            entries.sort();
            for (id, content) in entries {
                ids.entry(content).or_insert(id);
            }
        }
        AddedTokens { ids }
    }

    /// From explicit `(content, id)` pairs.
    #[allow(dead_code, reason = "unused since crate-private (#19)")]
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, i64)>) -> AddedTokens {
        AddedTokens {
            ids: pairs.into_iter().map(|(s, i)| (s.to_string(), i)).collect(),
        }
    }

    /// The id of the added token whose text is `content`.
    pub fn id(&self, content: &str) -> Option<i64> {
        self.ids.get(content).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_files_tokenizer_json_first() {
        let dir = std::env::temp_dir().join(format!("vtower-tokenizer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(AddedTokens::read(&dir), AddedTokens::default());
        std::fs::write(
            dir.join("tokenizer.json"),
            r#"{"version": "1.0", "added_tokens": [{"id": 12, "content": "[IMG_BREAK]",
               "special": true}], "model": {"vocab": {"a": 1}}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("tokenizer_config.json"),
            r#"{"added_tokens_decoder": {"99": {"content": "[IMG_BREAK]"},
               "13": {"content": "[IMG_END]"}, "x": {"content": "bad id"}}}"#,
        )
        .unwrap();
        let t = AddedTokens::read(&dir);
        assert_eq!(t.id("[IMG_BREAK]"), Some(12));
        assert_eq!(t.id("[IMG_END]"), Some(13));
        assert_eq!(t.id("bad id"), None);
        assert_eq!(t.id("a"), None);
        std::fs::write(dir.join("tokenizer.json"), "{ not json").unwrap();
        assert_eq!(AddedTokens::read(&dir).id("[IMG_END]"), Some(13));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
