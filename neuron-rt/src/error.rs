//! The crate's error type and the libnrt status codes as a Rust enum.

use std::fmt;
use std::path::PathBuf;

use crate::dtype::DType;
use crate::raw::{LoadError, MissingSymbol, NRT_STATUS};

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A libnrt status code.
///
/// Converted from the raw code with [`From<u32>`]; a code this crate does not know becomes
/// [`Status::Unknown`], so a newer runtime's new codes are reported, never misread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// `NRT_SUCCESS` (0).
    Success,
    /// `NRT_FAILURE` (1): failure with no more specific code.
    Failure,
    /// `NRT_INVALID` (2): bad input (malformed NEFF, tensor name or size not matching the model).
    Invalid,
    /// `NRT_INVALID_HANDLE` (3).
    InvalidHandle,
    /// `NRT_RESOURCE` (4): a resource (typically device memory) could not be allocated.
    Resource,
    /// `NRT_TIMEOUT` (5): did not finish in time (also a hung collective).
    Timeout,
    /// `NRT_HW_ERROR` (6).
    HwError,
    /// `NRT_QUEUE_FULL` (7).
    QueueFull,
    /// `NRT_LOAD_NOT_ENOUGH_NC` (9): too few NeuronCores to load the NEFF.
    LoadNotEnoughNc,
    /// `NRT_UNSUPPORTED_NEFF_VERSION` (10).
    UnsupportedNeffVersion,
    /// `NRT_FAIL_HOST_MEM_ALLOC` (11).
    FailHostMemAlloc,
    /// `NRT_UNINITIALIZED` (13): called before `nrt_init`.
    Uninitialized,
    /// `NRT_CLOSED` (14): called after `nrt_close`.
    Closed,
    /// `NRT_QUEUE_EMPTY` (15).
    QueueEmpty,
    /// `NRT_EXEC_UNIT_UNRECOVERABLE` (101): re-initialise or restart.
    ExecUnitUnrecoverable,
    /// `NRT_EXEC_BAD_INPUT` (1002).
    ExecBadInput,
    /// `NRT_EXEC_COMPLETED_WITH_NUM_ERR` (1003): produced NaN.
    ExecCompletedWithNumErr,
    /// `NRT_EXEC_COMPLETED_WITH_ERR` (1004).
    ExecCompletedWithErr,
    /// `NRT_EXEC_NC_BUSY` (1005).
    ExecNcBusy,
    /// `NRT_EXEC_OOB` (1006).
    ExecOob,
    /// `NRT_COLL_PENDING` (1100).
    CollPending,
    /// `NRT_EXEC_HW_ERR_COLLECTIVES` (1200): hung inside a collective.
    ExecHwErrCollectives,
    /// `NRT_EXEC_HW_ERR_HBM_UE` (1201).
    ExecHwErrHbmUe,
    /// `NRT_EXEC_HW_ERR_NC_UE` (1202).
    ExecHwErrNcUe,
    /// `NRT_EXEC_HW_ERR_DMA_ABORT` (1203).
    ExecHwErrDmaAbort,
    /// `NRT_EXEC_SW_NQ_OVERFLOW` (1204).
    ExecSwNqOverflow,
    /// `NRT_EXEC_HW_ERR_REPAIRABLE_HBM_UE` (1205).
    ExecHwErrRepairableHbmUe,
    /// `NRT_NETWORK_PROXY_FAILURE` (1206).
    NetworkProxyFailure,
    /// A code this crate does not know.
    Unknown(u32),
}

/// (status, code, C name): the one table both directions are read from.
const STATUS_TABLE: [(Status, u32, &str); 28] = [
    (Status::Success, 0, "NRT_SUCCESS"),
    (Status::Failure, 1, "NRT_FAILURE"),
    (Status::Invalid, 2, "NRT_INVALID"),
    (Status::InvalidHandle, 3, "NRT_INVALID_HANDLE"),
    (Status::Resource, 4, "NRT_RESOURCE"),
    (Status::Timeout, 5, "NRT_TIMEOUT"),
    (Status::HwError, 6, "NRT_HW_ERROR"),
    (Status::QueueFull, 7, "NRT_QUEUE_FULL"),
    (Status::LoadNotEnoughNc, 9, "NRT_LOAD_NOT_ENOUGH_NC"),
    (
        Status::UnsupportedNeffVersion,
        10,
        "NRT_UNSUPPORTED_NEFF_VERSION",
    ),
    (Status::FailHostMemAlloc, 11, "NRT_FAIL_HOST_MEM_ALLOC"),
    (Status::Uninitialized, 13, "NRT_UNINITIALIZED"),
    (Status::Closed, 14, "NRT_CLOSED"),
    (Status::QueueEmpty, 15, "NRT_QUEUE_EMPTY"),
    (
        Status::ExecUnitUnrecoverable,
        101,
        "NRT_EXEC_UNIT_UNRECOVERABLE",
    ),
    (Status::ExecBadInput, 1002, "NRT_EXEC_BAD_INPUT"),
    (
        Status::ExecCompletedWithNumErr,
        1003,
        "NRT_EXEC_COMPLETED_WITH_NUM_ERR",
    ),
    (
        Status::ExecCompletedWithErr,
        1004,
        "NRT_EXEC_COMPLETED_WITH_ERR",
    ),
    (Status::ExecNcBusy, 1005, "NRT_EXEC_NC_BUSY"),
    (Status::ExecOob, 1006, "NRT_EXEC_OOB"),
    (Status::CollPending, 1100, "NRT_COLL_PENDING"),
    (
        Status::ExecHwErrCollectives,
        1200,
        "NRT_EXEC_HW_ERR_COLLECTIVES",
    ),
    (Status::ExecHwErrHbmUe, 1201, "NRT_EXEC_HW_ERR_HBM_UE"),
    (Status::ExecHwErrNcUe, 1202, "NRT_EXEC_HW_ERR_NC_UE"),
    (Status::ExecHwErrDmaAbort, 1203, "NRT_EXEC_HW_ERR_DMA_ABORT"),
    (Status::ExecSwNqOverflow, 1204, "NRT_EXEC_SW_NQ_OVERFLOW"),
    (
        Status::ExecHwErrRepairableHbmUe,
        1205,
        "NRT_EXEC_HW_ERR_REPAIRABLE_HBM_UE",
    ),
    (
        Status::NetworkProxyFailure,
        1206,
        "NRT_NETWORK_PROXY_FAILURE",
    ),
];

impl Status {
    /// The numeric code.
    pub fn code(self) -> u32 {
        match self {
            Status::Unknown(code) => code,
            known => STATUS_TABLE
                .iter()
                .find(|(s, _, _)| *s == known)
                .map_or(u32::MAX, |&(_, code, _)| code),
        }
    }

    /// The C name (`NRT_EXEC_BAD_INPUT`), or `None` for [`Status::Unknown`].
    pub fn name(self) -> Option<&'static str> {
        STATUS_TABLE
            .iter()
            .find(|(s, _, _)| *s == self)
            .map(|&(_, _, name)| name)
    }

    /// Whether this is [`Status::Success`].
    pub fn is_success(self) -> bool {
        self == Status::Success
    }

    /// Whether the status says an execution waited for something that never came (a timeout
    /// or a hung collective): in a group of ranks, such a rank is usually a victim of a
    /// failure elsewhere rather than its cause.
    pub fn is_timeout(self) -> bool {
        matches!(
            self,
            Status::Timeout | Status::ExecHwErrCollectives | Status::CollPending
        )
    }
}

impl From<u32> for Status {
    fn from(code: u32) -> Status {
        STATUS_TABLE
            .iter()
            .find(|&&(_, c, _)| c == code)
            .map_or(Status::Unknown(code), |&(s, _, _)| s)
    }
}

impl From<NRT_STATUS> for Status {
    fn from(status: NRT_STATUS) -> Status {
        Status::from(status.0)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.code()),
            None => write!(f, "unknown status {}", self.code()),
        }
    }
}

/// The object a failed call was about, named in error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Subject {
    /// A model, by its name.
    Model(String),
    /// A tensor, by its name.
    Tensor(String),
    /// A logical NeuronCore, by its index among the visible cores.
    Core(u32),
    /// A tensor set.
    TensorSet,
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Model(name) => write!(f, "model {name:?}"),
            Subject::Tensor(name) => write!(f, "tensor {name:?}"),
            Subject::Core(core) => write!(f, "NeuronCore {core}"),
            Subject::TensorSet => f.write_str("tensor set"),
        }
    }
}

/// Whether a tensor is a model input or a model output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Usage {
    /// A model input.
    Input,
    /// A model output.
    Output,
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Usage::Input => "input",
            Usage::Output => "output",
        })
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// libnrt could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),

    /// The loaded libnrt does not export a function this call needs.
    #[error("{symbol} is not exported by the loaded libnrt ({message})")]
    MissingSymbol {
        /// The C function.
        symbol: &'static str,
        /// The dynamic loader's message, naming the library.
        message: String,
    },

    /// A libnrt call returned a failure status.
    #[error("{call} failed{}: {status}", fmt_subject(.subject))]
    Nrt {
        /// The C function.
        call: &'static str,
        /// What it returned.
        status: Status,
        /// The model, tensor or core involved, where known.
        subject: Option<Subject>,
    },

    /// A libnrt call reported success but returned a null handle.
    #[error("{call} reported success but returned a null handle")]
    NullHandle {
        /// The C function.
        call: &'static str,
    },

    /// A typed read or write used an element type other than the tensor's.
    #[error("tensor {tensor:?} holds {expected} elements, not {got}")]
    DTypeMismatch {
        /// The tensor's name.
        tensor: String,
        /// The tensor's element type.
        expected: DType,
        /// The element type used.
        got: DType,
    },

    /// A tensor's size does not match what it is used for.
    #[error("{what} {tensor:?} must be {expected} bytes, but is {got} bytes")]
    SizeMismatch {
        /// What the size was checked for ("model input", "model output", "copy source", ...).
        what: &'static str,
        /// The tensor's name.
        tensor: String,
        /// The size needed, in bytes.
        expected: usize,
        /// The size found, in bytes.
        got: usize,
    },

    /// A read, write, copy or slice reaches past the end of a tensor.
    #[error(
        "tensor {tensor:?} is {size} bytes; bytes {offset}..{} are out of range",
        .offset.saturating_add(*.len)
    )]
    OutOfBounds {
        /// The tensor's name.
        tensor: String,
        /// Start of the range, in bytes.
        offset: usize,
        /// Length of the range, in bytes.
        len: usize,
        /// The tensor's size, in bytes.
        size: usize,
    },

    /// A byte count is not a whole number of elements.
    #[error("tensor {tensor:?}: {bytes} bytes is not a whole number of {dtype} elements")]
    Misaligned {
        /// The tensor's name.
        tensor: String,
        /// The byte count.
        bytes: usize,
        /// The element type.
        dtype: DType,
    },

    /// A shape's element count does not match the data or tensor it describes.
    #[error("shape {shape:?} of {tensor:?} has {} elements, but there are {elements}", .shape.iter().product::<usize>())]
    ShapeMismatch {
        /// The tensor's name.
        tensor: String,
        /// The shape given.
        shape: Vec<usize>,
        /// The number of elements there are.
        elements: usize,
    },

    /// A model tensor is missing from the tensor set passed for it.
    #[error("model {model:?} {usage} {tensor:?} is not in the {usage} tensor set")]
    MissingTensor {
        /// The model's name.
        model: String,
        /// The tensor's name.
        tensor: String,
        /// Whether it is an input or an output.
        usage: Usage,
    },

    /// A name that the model (or tensor set) does not have.
    #[error("{owner} has no tensor named {name:?}{}", fmt_known(.known))]
    UnknownTensor {
        /// The name asked for.
        name: String,
        /// Where it was looked up (a model or a tensor set).
        owner: Subject,
        /// The names that do exist (may be empty when not listed).
        known: Vec<String>,
    },

    /// A model tensor has an element type this crate cannot decode.
    #[error(
        "model {model:?} tensor {tensor:?} has element type code {code}, unknown to this crate"
    )]
    UnknownDType {
        /// The model's name.
        model: String,
        /// The tensor's name.
        tensor: String,
        /// The raw code.
        code: u32,
    },

    /// An argument that cannot be passed to libnrt (a name with a NUL byte, an index out of
    /// range, a count that does not fit the C type, ...).
    #[error("invalid {what}: {message}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// What is wrong with it.
        message: String,
    },

    /// Reading a file failed.
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },

    /// Bytes that cannot be a NEFF.
    #[error("{} is not a NEFF: {message}", .path.as_deref().map_or("input".into(), |p| p.display().to_string()))]
    Neff {
        /// The file, if the bytes came from one.
        path: Option<PathBuf>,
        /// What is wrong.
        message: String,
    },

    /// A [`Runtime`](crate::Runtime) is already live in this process.
    #[error(
        "a Runtime is already initialised in this process (libnrt is process-wide); \
         share it with Arc, or drop it before initialising another"
    )]
    RuntimeExists,

    /// [`Runtime::close`](crate::Runtime::close) while other objects still use the runtime.
    #[error(
        "the Runtime is still used by {holders} other object(s) (models, tensors, tensor sets \
         or clones of the Arc); drop them before closing it"
    )]
    RuntimeInUse {
        /// How many other `Arc<Runtime>` holders there are.
        holders: usize,
    },

    /// One or more ranks of a [`ModelGroup`](crate::ModelGroup) failed.
    #[error(
        "rank {rank} of {world} (model {model:?}) failed{}: {source}",
        fmt_others(*.rank, .failed)
    )]
    Rank {
        /// The group's name.
        model: String,
        /// The rank whose error is reported (the first failure that is not a timeout, else the
        /// lowest failing rank).
        rank: u32,
        /// The world size.
        world: u32,
        /// Every failing rank, ascending.
        failed: Vec<u32>,
        /// The reported rank's error.
        source: Box<Error>,
    },
}

impl Error {
    /// The libnrt status, if this error carries one (directly or through a failed rank).
    pub fn status(&self) -> Option<Status> {
        match self {
            Error::Nrt { status, .. } => Some(*status),
            Error::Rank { source, .. } => source.status(),
            _ => None,
        }
    }
}

impl From<MissingSymbol> for Error {
    fn from(e: MissingSymbol) -> Error {
        Error::MissingSymbol {
            symbol: e.symbol,
            message: e.to_string(),
        }
    }
}

fn fmt_subject(subject: &Option<Subject>) -> String {
    subject
        .as_ref()
        .map_or_else(String::new, |s| format!(" for {s}"))
}

fn fmt_known(known: &[String]) -> String {
    if known.is_empty() {
        String::new()
    } else {
        format!(" (it has: {})", known.join(", "))
    }
}

fn fmt_others(rank: u32, failed: &[u32]) -> String {
    let others: Vec<String> = failed
        .iter()
        .filter(|&&r| r != rank)
        .map(u32::to_string)
        .collect();
    if others.is_empty() {
        String::new()
    } else {
        format!(" (ranks {} failed too)", others.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for &(status, code, name) in &STATUS_TABLE {
            assert_eq!(Status::from(code), status);
            assert_eq!(status.code(), code);
            assert_eq!(status.name(), Some(name));
        }
    }

    #[test]
    fn unknown_codes_are_kept() {
        for code in [8, 12, 16, 100, 1001, 1207, u32::MAX] {
            let status = Status::from(code);
            assert_eq!(status, Status::Unknown(code));
            assert_eq!(status.code(), code);
            assert_eq!(status.name(), None);
            assert_eq!(status.to_string(), format!("unknown status {code}"));
        }
    }

    #[test]
    fn table_agrees_with_the_bindings() {
        // Every name neuron-sys knows maps to the same Rust variant here.
        for &(status, code, name) in &STATUS_TABLE {
            assert_eq!(NRT_STATUS(code).name(), Some(name), "{status:?}");
        }
    }

    #[test]
    fn nrt_error_names_call_status_and_subject() {
        let e = Error::Nrt {
            call: "nrt_execute",
            status: Status::ExecBadInput,
            subject: Some(Subject::Model("decode".into())),
        };
        assert_eq!(
            e.to_string(),
            "nrt_execute failed for model \"decode\": NRT_EXEC_BAD_INPUT (1002)"
        );
        assert_eq!(e.status(), Some(Status::ExecBadInput));
    }

    #[test]
    fn rank_error_names_the_rank_and_the_others() {
        let e = Error::Rank {
            model: "tp".into(),
            rank: 1,
            world: 4,
            failed: vec![0, 1, 3],
            source: Box::new(Error::Nrt {
                call: "nrt_execute",
                status: Status::ExecCompletedWithErr,
                subject: None,
            }),
        };
        let text = e.to_string();
        assert!(text.starts_with("rank 1 of 4 (model \"tp\") failed (ranks 0, 3 failed too)"));
        assert!(
            text.contains("NRT_EXEC_COMPLETED_WITH_ERR (1004)"),
            "{text}"
        );
        assert_eq!(e.status(), Some(Status::ExecCompletedWithErr));
    }

    #[test]
    fn timeouts_are_recognised() {
        assert!(Status::Timeout.is_timeout());
        assert!(Status::ExecHwErrCollectives.is_timeout());
        assert!(!Status::ExecCompletedWithErr.is_timeout());
    }

    #[test]
    fn error_is_send_sync_static() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
    }
}
