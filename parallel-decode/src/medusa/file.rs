//! Writing heads files in the documented format ([`crate::loading::medusa_heads`]).

use std::collections::BTreeMap;
use std::path::Path;

use super::train::Head;
use crate::error::{Error, Result};
use crate::loading::Dtype;
use crate::loading::medusa_heads::{
    ANSWERS_TENSOR, Conditioning, HEADS_FORMAT, HeadTensors, MedusaHeads, encode_answers,
    tensor_name,
};
use crate::loading::safetensors::SafetensorsWriter;
use crate::strategy::medusa::MedusaTree;

/// What a heads file records beside the weights.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeadsMetadata {
    /// The candidate tree measured best for these heads.
    pub tree: Option<MedusaTree>,
    /// What the heads were trained for (for display).
    pub base_model: Option<String>,
    /// The tokens the heads score (strictly increasing ids), or `None` for all of them.
    pub vocab: Option<Vec<u32>>,
    /// The base model's answers the heads were trained on, for answer lookup
    /// ([`crate::strategy::answer_lookup`]); `None` to store none.
    pub answers: Option<Vec<Vec<u32>>>,
}

impl HeadsMetadata {
    /// What an opened heads file records beside its weights.
    ///
    /// # Errors
    /// When its answers tensor is malformed ([`crate::loading::medusa_heads::read_answers`]).
    pub fn of(file: &MedusaHeads) -> Result<Self> {
        Ok(HeadsMetadata {
            tree: file.tree().cloned(),
            base_model: file.base_model().map(str::to_string),
            vocab: file.vocab().map(<[u32]>::to_vec),
            // Any id an i32 holds: the file does not know the model's vocabulary size.
            answers: file.answers(i32::MAX as usize)?,
        })
    }
}

/// Writes `heads` to `path` as `dtype` (F32, F16 or BF16), replacing the file atomically.
///
/// # Errors
/// [`Error::Setting`] for no heads or heads of different widths; I/O errors naming the file.
pub fn write_heads(
    path: &Path,
    heads: &[Head],
    dtype: Dtype,
    metadata: &HeadsMetadata,
) -> Result<()> {
    let hidden = heads.first().map_or(0, |h| h.bias.len());
    let same_width = heads.iter().all(|h| {
        h.bias.len() == hidden
            && h.weight.dim() == (hidden, hidden)
            && h.token_weights.iter().all(|t| t.dim() == (hidden, hidden))
    });
    // The kind whose token matrices every head has (the oldest when several fit: one head
    // taking the path is one taking the next token).
    let conditioning = Conditioning::ALL.into_iter().find(|c| {
        heads
            .iter()
            .enumerate()
            .all(|(h, head)| head.token_weights.len() == c.token_parts(h).len())
    });
    let Some(conditioning) = conditioning.filter(|_| hidden > 0 && same_width) else {
        return Err(Error::Setting {
            field: "heads",
            message: "need at least one head, all of one width and all of one kind (seeing \
                      the hidden state only, taking the next token, or taking the path)"
                .into(),
        });
    };
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), HEADS_FORMAT.to_string());
    meta.insert("version".to_string(), conditioning.version().to_string());
    meta.insert("heads".to_string(), heads.len().to_string());
    meta.insert("hidden".to_string(), hidden.to_string());
    if let Some(tree) = &metadata.tree {
        let json = serde_json::to_string(tree.paths()).map_err(|e| Error::Setting {
            field: "medusa tree",
            message: e.to_string(),
        })?;
        meta.insert("tree".to_string(), json);
    }
    if let Some(base) = &metadata.base_model {
        meta.insert("base_model".to_string(), base.clone());
    }
    if let Some(vocab) = &metadata.vocab {
        if vocab.is_empty() || vocab.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::Setting {
                field: "heads vocabulary",
                message: "must be a non-empty list of strictly increasing token ids".into(),
            });
        }
        let json = serde_json::to_string(vocab).map_err(|e| Error::Setting {
            field: "heads vocabulary",
            message: e.to_string(),
        })?;
        meta.insert("vocab".to_string(), json);
    }
    // Every tensor with its values, in the order they are written.
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = heads
        .iter()
        .enumerate()
        .flat_map(|(h, head)| {
            let matrix = |m: &ndarray::Array2<f32>| m.iter().copied().collect::<Vec<f32>>();
            let mut t = vec![
                (
                    tensor_name(h, "weight"),
                    vec![hidden, hidden],
                    matrix(&head.weight),
                ),
                (tensor_name(h, "bias"), vec![hidden], head.bias.clone()),
            ];
            for (part, m) in conditioning.token_parts(h).iter().zip(&head.token_weights) {
                t.push((tensor_name(h, part), vec![hidden, hidden], matrix(m)));
            }
            t
        })
        .collect();
    // Checked here because the writer also takes I32 tensors (the answers).
    if !matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
        return Err(Error::Setting {
            field: "heads element type",
            message: format!("must be F32, F16 or BF16, not {dtype}"),
        });
    }
    let answers = metadata
        .answers
        .as_deref()
        .map(encode_answers)
        .transpose()?;
    let mut plan: Vec<(String, Vec<usize>, Dtype)> = tensors
        .iter()
        .map(|(name, shape, _)| (name.clone(), shape.clone(), dtype))
        .collect();
    if let Some(a) = &answers {
        plan.push((ANSWERS_TENSOR.to_string(), vec![a.len()], Dtype::I32));
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::Builder::new()
        .prefix(".medusa-heads-")
        .tempfile_in(parent)
        .map_err(|e| Error::io(parent, "create a temporary file", e))?;
    let mut w = SafetensorsWriter::create_mixed(tmp.path(), plan, &meta)?;
    for (name, _, values) in &tensors {
        w.write_next(name, values)?;
    }
    if let Some(a) = &answers {
        w.write_next_i32(ANSWERS_TENSOR, a)?;
    }
    w.finish()?;
    readable_by_all(tmp.as_file(), tmp.path())?;
    tmp.persist(path)
        .map_err(|e| Error::io(path, "replace", e.error))?;
    Ok(())
}

/// Writes `answers` alone to `path`: a safetensors file holding only the heads format's
/// `answers` tensor (what compiled artifacts carry for answer lookup).
///
/// # Errors
/// I/O errors naming the file; [`Error::Setting`] for a token id beyond i32.
pub fn write_answers(path: &Path, answers: &[Vec<u32>]) -> Result<()> {
    let values = encode_answers(answers)?;
    let plan = vec![(ANSWERS_TENSOR.to_string(), vec![values.len()], Dtype::I32)];
    let mut w = SafetensorsWriter::create_mixed(path, plan, &BTreeMap::new())?;
    w.write_next_i32(ANSWERS_TENSOR, &values)?;
    w.finish()
}

/// Gives a file written through a temporary file (created private) the usual permissions of
/// a data file.
///
/// # Errors
/// [`Error::Io`] when the permissions cannot be set.
pub(crate) fn readable_by_all(file: &std::fs::File, path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| Error::io(path, "set permissions", e))?;
    }
    #[cfg(not(unix))]
    let _ = (file, path);
    Ok(())
}

/// Reads every head of an opened heads file back as f32.
///
/// # Errors
/// As [`MedusaHeads::head`].
pub fn read_heads(file: &MedusaHeads, hidden: usize) -> Result<Vec<Head>> {
    (0..file.count())
        .map(|h| {
            let HeadTensors {
                weight,
                token_weights,
                bias,
            } = file.head(h)?;
            let matrix = |values: Vec<f32>| {
                ndarray::Array2::from_shape_vec((hidden, hidden), values).map_err(|e| {
                    Error::Artifacts {
                        path: file.path().to_path_buf(),
                        message: format!("head {h}: {e}"),
                    }
                })
            };
            Ok(Head {
                weight: matrix(weight)?,
                token_weights: token_weights
                    .into_iter()
                    .map(matrix)
                    .collect::<Result<_>>()?,
                bias,
            })
        })
        .collect()
}

/// Records `tree` in the heads file at `path`, keeping its weights (re-encoded in their own
/// element type, which is exact) and its other metadata.
///
/// # Errors
/// When the file does not open as a heads file for width `hidden`, or cannot be rewritten.
pub fn set_tree(path: &Path, hidden: usize, tree: &MedusaTree) -> Result<()> {
    let file = MedusaHeads::open(path, hidden)?;
    let heads = read_heads(&file, hidden)?;
    let dtype = file.dtype();
    let metadata = HeadsMetadata {
        tree: Some(tree.clone()),
        ..HeadsMetadata::of(&file)?
    };
    drop(file);
    write_heads(path, &heads, dtype, &metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_heads_open_and_round_trip_with_their_tree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.safetensors");
        let mut a = Head::zero(4, 0, Conditioning::HiddenOnly);
        a.weight[[1, 2]] = 0.5;
        a.bias[3] = -0.25;
        let heads = vec![a, Head::zero(4, 1, Conditioning::HiddenOnly)];
        let meta = HeadsMetadata {
            tree: None,
            base_model: Some("tiny".into()),
            vocab: Some(vec![0, 2, 3]),
            answers: Some(vec![vec![5, 6, 7], vec![], vec![9]]),
        };
        write_heads(&path, &heads, Dtype::F16, &meta).unwrap();
        let file = MedusaHeads::open(&path, 4).unwrap();
        assert_eq!(file.count(), 2);
        assert_eq!(file.answers(10).unwrap(), meta.answers);
        let err = file.answers(8).unwrap_err().to_string();
        assert!(err.contains("holds 9 at 5"), "{err}");
        assert!(file.tree().is_none());
        assert_eq!(read_heads(&file, 4).unwrap(), heads);
        drop(file);
        let tree = MedusaTree::new(vec![vec![0], vec![0, 0], vec![1]]).unwrap();
        set_tree(&path, 4, &tree).unwrap();
        let file = MedusaHeads::open(&path, 4).unwrap();
        assert_eq!(file.tree(), Some(&tree));
        assert_eq!(file.base_model(), Some("tiny"));
        assert_eq!(
            file.vocab(),
            Some(&[0, 2, 3][..]),
            "set_tree keeps the vocabulary"
        );
        assert_eq!(file.dtype(), Dtype::F16);
        assert_eq!(file.answers(10).unwrap(), meta.answers, "and the answers");
        assert_eq!(read_heads(&file, 4).unwrap(), heads);
        assert!(write_heads(&path, &[], Dtype::F16, &meta).is_err());
        let unsorted = HeadsMetadata {
            vocab: Some(vec![3, 2]),
            ..meta
        };
        assert!(write_heads(&path, &heads, Dtype::F16, &unsorted).is_err());
    }

    #[test]
    fn malformed_answers_are_refused_with_the_reason() {
        use crate::loading::safetensors::{SafetensorsFile, SafetensorsWriter};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.safetensors");
        let write = |dtype: Dtype, values: &[i32]| {
            let plan = vec![(ANSWERS_TENSOR.to_string(), vec![values.len()], dtype)];
            let mut w = SafetensorsWriter::create_mixed(&path, plan, &Default::default()).unwrap();
            if dtype == Dtype::I32 {
                w.write_next_i32(ANSWERS_TENSOR, values).unwrap();
            } else {
                let floats: Vec<f32> = values.iter().map(|&v| v as f32).collect();
                w.write_next(ANSWERS_TENSOR, &floats).unwrap();
            }
            w.finish().unwrap();
            crate::loading::medusa_heads::read_answers(&SafetensorsFile::open(&path).unwrap(), 100)
        };
        assert_eq!(
            write(Dtype::I32, &[1, 2, -1, 3, -1]).unwrap(),
            Some(vec![vec![1, 2], vec![3]])
        );
        let err = |dtype, values: &[i32]| write(dtype, values).unwrap_err().to_string();
        assert!(err(Dtype::I32, &[1, 2]).contains("truncated"));
        assert!(err(Dtype::I32, &[1, -2, -1]).contains("holds -2 at 1"));
        assert!(err(Dtype::I32, &[100, -1]).contains("below 100"));
        assert!(err(Dtype::F32, &[1, -1]).contains("1-D I32"));
    }

    #[test]
    fn heads_that_take_tokens_round_trip_as_versions_2_and_3() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.safetensors");
        for conditioning in [Conditioning::NextToken, Conditioning::Path] {
            let mut heads: Vec<Head> = (0..3).map(|h| Head::zero(4, h, conditioning)).collect();
            heads[0].token_weights[0][[0, 3]] = 1.5;
            heads[2].token_weights.last_mut().unwrap()[[1, 1]] = -2.0;
            write_heads(&path, &heads, Dtype::F32, &HeadsMetadata::default()).unwrap();
            let file = MedusaHeads::open(&path, 4).unwrap();
            assert_eq!(file.conditioning(), conditioning);
            assert_eq!(file.head(0).unwrap().token_weights[0][3], 1.5);
            let parts = conditioning.token_parts(2);
            assert_eq!(file.head(2).unwrap().token_weights.len(), parts.len());
            assert_eq!(read_heads(&file, 4).unwrap(), heads);
        }
        assert_eq!(
            Conditioning::Path.token_parts(2),
            ["next_token.weight", "path.0.weight", "path.1.weight"]
        );
        // All heads of one kind.
        let mixed = vec![
            Head::zero(4, 0, Conditioning::NextToken),
            Head::zero(4, 1, Conditioning::HiddenOnly),
        ];
        assert!(write_heads(&path, &mixed, Dtype::F32, &HeadsMetadata::default()).is_err());
    }
}
