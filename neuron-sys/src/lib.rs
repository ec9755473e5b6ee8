//! Raw bindings to **libnrt**, the AWS Neuron runtime C library, loaded at run time.
//!
//! - The API is declared in the project's own clean-room header, `include/nrt_api.h`, written
//!   from the documented facts of the runtime API; [`bindings`] is generated from it by
//!   `scripts/gen-bindings.sh` in bindgen's dynamic-loading mode and committed, so building
//!   needs no libclang and no Neuron SDK.
//! - The library is opened at run time ([`lib`], [`load_from`]); the search order is given in
//!   [`lib`]. Every symbol resolves on its own: a function the loaded library
//!   lacks is a [`MissingSymbol`] error when it is looked up with [`nrt_fn!`], never a failure to
//!   load and never a panic.
//! - Values the library returns (status codes, dtypes, placements, usages) are integer
//!   newtypes with associated constants, never Rust enums; [`types`] gives them readable names
//!   and decodes dtypes by the runtime's version (the numbering changed at runtime 2.30).
//!
//! ```no_run
//! use neuron_sys::{bindings::NRT_STATUS, nrt_fn};
//!
//! let lib = neuron_sys::lib()?;
//! let get_count = nrt_fn!(lib, nrt_get_total_nc_count)?;
//! let mut cores = 0u32;
//! // SAFETY: `cores` is a valid u32 to write; the call works before nrt_init.
//! let status: NRT_STATUS = unsafe { get_count(&mut cores) };
//! println!("{status}: {cores} NeuronCores");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This crate is the unsafe bottom layer: use `neuron-rt` for a safe API.

pub mod bindings {
    //! Generated from `include/nrt_api.h` by `scripts/gen-bindings.sh`; see the crate docs.
    #![allow(
        non_camel_case_types,
        non_snake_case,
        non_upper_case_globals,
        missing_docs,
        unsafe_op_in_unsafe_fn,
        clippy::all,
        clippy::undocumented_unsafe_blocks,
        clippy::missing_safety_doc
    )]
    include!("bindings.rs");
}

mod env;
mod loader;
pub mod types;

pub use env::NEURON_SYS_LIB;
pub use loader::{
    Attempt, Library, LoadError, LoadSource, MissingSymbol, SDK_LIBRARY_PATH,
    SUPPORTED_MAJOR_VERSION, is_available, lib, load_from, loaded,
};
pub use types::{DType, DTypeEncoding, RuntimeVersion};

/// The SHA-256 of the header the committed bindings were generated from, as recorded in the
/// bindings' first lines. A test compares it with the header on disk, so an edited header
/// with stale bindings fails the test suite even where bindgen is not installed.
pub const BINDINGS_HEADER_SHA256: &str = {
    const TEXT: &str = include_str!("bindings.rs");
    const MARK: &str = "// header-sha256: ";
    const fn find(hay: &[u8], needle: &[u8]) -> usize {
        let mut i = 0;
        while i + needle.len() <= hay.len() {
            let mut j = 0;
            while j < needle.len() && hay[i + j] == needle[j] {
                j += 1;
            }
            if j == needle.len() {
                return i + needle.len();
            }
            i += 1;
        }
        panic!("bindings.rs has no header-sha256 line");
    }
    let start = find(TEXT.as_bytes(), MARK.as_bytes());
    let (_, rest) = TEXT.split_at(start);
    let (hash, _) = rest.split_at(64);
    hash
};
