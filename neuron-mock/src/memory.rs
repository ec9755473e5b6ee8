//! Tensor memory: the storage behind tensors, and the views an execution hands to a kernel.
//!
//! This is one of the two modules with unsafe code (the other is `ffi.rs`, the C boundary).
//! Everything unsafe about memory lives here, behind safe functions whose checks make it sound:
//!
//! - [`Storage`] is either memory the mock allocated (zeroed, [`STORAGE_ALIGN`]-byte aligned, so
//!   any element type can be viewed in place) or a caller's buffer attached with
//!   `nrt_tensor_attach_buffer` (never freed here). Storage is shared through `Arc`: slices of a
//!   tensor hold the same `Arc`, and an execution in flight holds one too, so memory a kernel is
//!   using cannot go away under it, whatever the caller frees meanwhile.
//! - [`Bindings`] is the set of byte ranges one model execution binds. Building it checks the
//!   aliasing rules: outputs never overlap each other, and an input that overlaps an output must
//!   be exactly that output's range (a tensor bound as both, updated in place). Locking it
//!   ([`Bindings::lock`]) takes every output's storage for this execution alone, and
//!   [`ExecViews`] then hands out each output's `&mut [u8]` at most once and refuses a shared
//!   view of an input that aliases an output. So no two live views ever overlap unless both are
//!   shared.
//!
//! What this cannot prevent, as on the device: the host writing a tensor (`nrt_tensor_write`,
//! `memset`, `copy`) while an execution reads it, or an execution reading a tensor another
//! execution is writing. Both are races the caller must avoid; the results are unspecified.

use std::alloc::{self, Layout};
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Alignment of storage the mock allocates: a cache line, enough for every element type and
/// for SIMD loads.
pub const STORAGE_ALIGN: usize = 64;

/// A zero-sized, maximally aligned type whose dangling pointer stands in for empty storage.
#[repr(align(64))]
struct AlignedBlock;

/// Bytes behind one or more tensors.
pub(crate) struct Storage {
    ptr: NonNull<u8>,
    len: usize,
    /// The allocation to free on drop (`None` for a caller's attached buffer, or empty
    /// storage): its start and layout. `ptr` is this start rounded up to [`STORAGE_ALIGN`].
    owned: Option<(NonNull<u8>, Layout)>,
    /// Held by an execution that writes this storage.
    exec_busy: AtomicBool,
}

// SAFETY: `Storage` is a pointer to plain bytes plus an atomic. Moving it between threads
// moves no thread-bound state, and the memory is only touched through the methods below, which
// copy bytes with raw pointer operations (the race rules are in the module docs).
unsafe impl Send for Storage {}
// SAFETY: as above; shared access goes through raw copies and the atomic busy flag.
unsafe impl Sync for Storage {}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage")
            .field("addr", &format_args!("{:#x}", self.addr()))
            .field("len", &self.len)
            .field("owned", &self.owned.is_some())
            .finish()
    }
}

impl Storage {
    /// Allocates `len` zeroed bytes, or `None` if the host cannot provide them.
    ///
    /// The allocation asks for the allocator's natural alignment and `STORAGE_ALIGN` spare
    /// bytes, then rounds the start up: an over-aligned zeroed allocation would be
    /// `posix_memalign` plus `memset`, which touches every page, whereas this is `calloc`,
    /// which hands out fresh zero pages lazily. So a 16 GiB device tensor costs nothing until
    /// it is written, as on the device.
    pub(crate) fn allocate(len: usize) -> Option<Storage> {
        if len == 0 {
            return Some(Storage {
                ptr: NonNull::<AlignedBlock>::dangling().cast(),
                len: 0,
                owned: None,
                exec_busy: AtomicBool::new(false),
            });
        }
        let layout = Layout::from_size_align(len.checked_add(STORAGE_ALIGN)?, 16).ok()?;
        // SAFETY: `layout` has a non-zero size.
        let start = NonNull::new(unsafe { alloc::alloc_zeroed(layout) })?;
        let pad = start.as_ptr().align_offset(STORAGE_ALIGN);
        // SAFETY: pad < STORAGE_ALIGN, so start + pad .. + len lies within the allocation of
        // len + STORAGE_ALIGN bytes.
        let ptr = unsafe { start.add(pad) };
        Some(Storage {
            ptr,
            len,
            owned: Some((start, layout)),
            exec_busy: AtomicBool::new(false),
        })
    }

    /// Wraps a caller's buffer without taking ownership of it.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `len` bytes for as long as this storage (and
    /// every `Arc` of it) lives. That is the documented contract of `nrt_tensor_attach_buffer`:
    /// the buffer must outlive the tensor.
    pub(crate) unsafe fn attach(ptr: NonNull<u8>, len: usize) -> Storage {
        Storage {
            ptr,
            len,
            owned: None,
            exec_busy: AtomicBool::new(false),
        }
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Address of the first byte, for `nrt_tensor_get_va` and overlap checks.
    pub(crate) fn addr(&self) -> usize {
        self.ptr.as_ptr() as usize
    }

    /// Pointer to byte `offset`, which the caller has checked is within the storage.
    pub(crate) fn ptr_at(&self, offset: usize) -> *mut u8 {
        self.ptr.as_ptr().wrapping_add(offset)
    }

    /// Whether `[offset, offset + len)` lies within this storage.
    pub(crate) fn contains(&self, offset: usize, len: usize) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len)
    }

    /// Copies `dst.len()` bytes starting at `offset` into `dst`. False if out of bounds.
    pub(crate) fn read(&self, offset: usize, dst: &mut [u8]) -> bool {
        if !self.contains(offset, dst.len()) {
            return false;
        }
        // SAFETY: the source range is within this live storage (checked above) and `dst` is a
        // distinct, writable Rust slice of the same length; ptr::copy tolerates any overlap.
        unsafe { std::ptr::copy(self.ptr_at(offset), dst.as_mut_ptr(), dst.len()) };
        true
    }

    /// Copies `src` into the storage starting at `offset`. False if out of bounds.
    pub(crate) fn write(&self, offset: usize, src: &[u8]) -> bool {
        if !self.contains(offset, src.len()) {
            return false;
        }
        // SAFETY: the destination range is within this live storage (checked above); `src` is
        // readable for its length; ptr::copy tolerates a caller's buffer overlapping storage.
        unsafe { std::ptr::copy(src.as_ptr(), self.ptr_at(offset), src.len()) };
        true
    }

    /// Sets `len` bytes from `offset` to `value`. False if out of bounds.
    pub(crate) fn fill(&self, offset: usize, len: usize, value: u8) -> bool {
        if !self.contains(offset, len) {
            return false;
        }
        // SAFETY: the range is within this live storage (checked above).
        unsafe { std::ptr::write_bytes(self.ptr_at(offset), value, len) };
        true
    }

    /// Copies `len` bytes between two storages (or within one; ranges may overlap). False if
    /// either range is out of bounds.
    pub(crate) fn copy(
        src: &Storage,
        src_offset: usize,
        dst: &Storage,
        dst_offset: usize,
        len: usize,
    ) -> bool {
        if !src.contains(src_offset, len) || !dst.contains(dst_offset, len) {
            return false;
        }
        // SAFETY: both ranges are within live storages (checked above); ptr::copy is memmove,
        // so overlapping ranges of one storage are fine.
        unsafe { std::ptr::copy(src.ptr_at(src_offset), dst.ptr_at(dst_offset), len) };
        true
    }

    fn try_lock_exec(&self) -> bool {
        self.exec_busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    fn unlock_exec(&self) {
        self.exec_busy.store(false, Ordering::Release);
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some((start, layout)) = self.owned {
            // SAFETY: `start` was allocated by `allocate` with exactly this layout, and this is
            // the last owner (Drop of the last Arc).
            unsafe { alloc::dealloc(start.as_ptr(), layout) };
        }
    }
}

/// One model tensor's bytes for an execution: a range of a storage.
#[derive(Debug, Clone)]
pub(crate) struct Binding {
    storage: Arc<Storage>,
    /// The first byte (within `storage`, computed once so that executions need not look at
    /// the storage to make a view).
    start: NonNull<u8>,
    len: usize,
}

// SAFETY: `start` points into `storage`, which the binding keeps alive; the binding never
// touches the bytes itself, and the views made from it follow ExecViews' exclusivity rules.
unsafe impl Send for Binding {}
// SAFETY: as above.
unsafe impl Sync for Binding {}

impl Binding {
    /// A binding of `len` bytes at `offset`, or `None` if that is outside the storage.
    pub(crate) fn new(storage: Arc<Storage>, offset: usize, len: usize) -> Option<Binding> {
        if !storage.contains(offset, len) {
            return None;
        }
        let start = NonNull::new(storage.ptr_at(offset))?;
        Some(Binding {
            storage,
            start,
            len,
        })
    }

    fn start(&self) -> usize {
        self.start.as_ptr() as usize
    }

    fn end(&self) -> usize {
        self.start() + self.len
    }

    fn overlaps(&self, other: &Binding) -> bool {
        self.len > 0 && other.len > 0 && self.start() < other.end() && other.start() < self.end()
    }

    fn same_range(&self, other: &Binding) -> bool {
        self.start() == other.start() && self.len == other.len
    }
}

/// Why a set of bindings breaks the aliasing rules; indices are model input/output positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AliasError {
    /// Two outputs share bytes.
    OutputsOverlap(usize, usize),
    /// An input shares some, but not exactly the same, bytes as an output.
    PartialOverlap { input: usize, output: usize },
}

/// Every tensor range one execution binds, checked against the aliasing rules.
#[derive(Debug)]
pub(crate) struct Bindings {
    inputs: Vec<Binding>,
    outputs: Vec<Binding>,
    /// For each input, the output it is exactly the same range as (updated in place).
    input_alias: Vec<Option<usize>>,
    /// Output positions in the order their storages are locked (by address, so that two
    /// executions never wait on each other in opposite orders); one entry per distinct storage.
    lock_order: Vec<usize>,
}

impl Bindings {
    /// Checks the aliasing rules (see the module docs).
    pub(crate) fn new(inputs: Vec<Binding>, outputs: Vec<Binding>) -> Result<Bindings, AliasError> {
        // Outputs sorted by start address: overlaps among them show up between neighbours.
        let mut by_start: Vec<usize> = (0..outputs.len()).collect();
        by_start.sort_by_key(|&j| (outputs[j].start(), outputs[j].len));
        for pair in by_start.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if outputs[a].overlaps(&outputs[b]) {
                return Err(AliasError::OutputsOverlap(a.min(b), a.max(b)));
            }
        }
        let mut input_alias = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            // Scan the outputs in address order up to the input's end: any output the input
            // overlaps must be exactly its range.
            let mut alias = None;
            for &j in &by_start {
                let output = &outputs[j];
                if output.start() >= input.end() && input.len > 0 {
                    break;
                }
                if !input.overlaps(output) {
                    continue;
                }
                if input.same_range(output) {
                    alias = Some(j);
                } else {
                    return Err(AliasError::PartialOverlap {
                        input: i,
                        output: j,
                    });
                }
            }
            input_alias.push(alias);
        }
        let mut lock_order: Vec<usize> = (0..outputs.len()).collect();
        lock_order.sort_by_key(|&j| outputs[j].storage.addr());
        lock_order.dedup_by_key(|j| Arc::as_ptr(&outputs[*j].storage));
        Ok(Bindings {
            inputs,
            outputs,
            input_alias,
            lock_order,
        })
    }

    /// The output an input is bound in place to, if any.
    pub(crate) fn input_alias(&self, input: usize) -> Option<usize> {
        self.input_alias.get(input).copied().flatten()
    }

    /// Takes every output storage for this execution, waiting until `deadline` for another
    /// execution that holds one. On timeout, returns the output position that stayed busy.
    pub(crate) fn lock(&self, deadline: Instant) -> Result<LockedBindings<'_>, usize> {
        let mut locked = 0;
        let mut pause = Duration::from_micros(5);
        while locked < self.lock_order.len() {
            let j = self.lock_order[locked];
            if self.outputs[j].storage.try_lock_exec() {
                locked += 1;
                continue;
            }
            if Instant::now() >= deadline {
                for &held in &self.lock_order[..locked] {
                    self.outputs[held].storage.unlock_exec();
                }
                return Err(j);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
        }
        Ok(LockedBindings { bindings: self })
    }
}

/// [`Bindings`] whose output storages this execution holds; released on drop.
pub(crate) struct LockedBindings<'a> {
    bindings: &'a Bindings,
}

impl LockedBindings<'_> {
    /// The views for one run of the kernel (one per repetition of `nrt_execute_repeat`).
    pub(crate) fn views(&self) -> ExecViews<'_> {
        ExecViews {
            bindings: self.bindings,
            taken: (0..self.bindings.outputs.len())
                .map(|_| AtomicBool::new(false))
                .collect(),
        }
    }
}

impl Drop for LockedBindings<'_> {
    fn drop(&mut self) {
        for &j in &self.bindings.lock_order {
            self.bindings.outputs[j].storage.unlock_exec();
        }
    }
}

/// Why a kernel cannot have a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ViewError {
    /// No such input or output position.
    OutOfRange,
    /// The input is the same tensor as this output; use the output's view.
    Aliased { output: usize },
    /// The output's view was already handed out in this run.
    AlreadyTaken,
}

/// Hands out a kernel's byte views for one run: shared views of inputs, and each output's
/// exclusive view at most once. The taken flags are atomic, so a kernel may run on a thread
/// of the pool and ask for its views there.
pub(crate) struct ExecViews<'a> {
    bindings: &'a Bindings,
    taken: Box<[AtomicBool]>,
}

impl<'a> ExecViews<'a> {
    /// The output input `i` is bound in place to, if any.
    pub(crate) fn input_alias(&self, i: usize) -> Option<usize> {
        self.bindings.input_alias(i)
    }

    /// Input `i`'s bytes.
    pub(crate) fn input(&self, i: usize) -> Result<&'a [u8], ViewError> {
        let binding = self.bindings.inputs.get(i).ok_or(ViewError::OutOfRange)?;
        if let Some(output) = self.bindings.input_alias(i) {
            return Err(ViewError::Aliased { output });
        }
        // SAFETY: the range is within the storage (checked when the binding was made) and the
        // storage is alive for 'a (the Bindings hold an Arc). This input overlaps no output
        // (Bindings::new rejected partial overlaps and it has no alias), so no &mut view of
        // these bytes exists in this run; other executions write only their own locked outputs.
        Ok(unsafe { std::slice::from_raw_parts(binding.start.as_ptr(), binding.len) })
    }

    /// Output `j`'s bytes, once per run.
    pub(crate) fn output(&self, j: usize) -> Result<&'a mut [u8], ViewError> {
        let binding = self.bindings.outputs.get(j).ok_or(ViewError::OutOfRange)?;
        let flag = self.taken.get(j).ok_or(ViewError::OutOfRange)?;
        // One swap: of any threads asking at once, exactly one sees `false`.
        if flag.swap(true, Ordering::AcqRel) {
            return Err(ViewError::AlreadyTaken);
        }
        // SAFETY: in range and alive as for inputs. Exclusive: outputs do not overlap each
        // other (Bindings::new), inputs overlapping this output are never handed out as shared
        // views (`input` refuses aliased inputs), this view is handed out once per run (the
        // flag above), and the storage is locked against other executions (LockedBindings).
        Ok(unsafe { std::slice::from_raw_parts_mut(binding.start.as_ptr(), binding.len) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn storage(len: usize) -> Arc<Storage> {
        Arc::new(Storage::allocate(len).unwrap())
    }

    #[test]
    fn allocation_is_aligned_and_zeroed() {
        for len in [0, 1, 3, 64, 1000] {
            let s = Storage::allocate(len).unwrap();
            assert_eq!(s.addr() % STORAGE_ALIGN, 0, "len {len}");
            let mut out = vec![1u8; len];
            assert!(s.read(0, &mut out));
            assert!(out.iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn bounds_are_checked() {
        let s = Storage::allocate(8).unwrap();
        assert!(s.write(4, &[1, 2, 3, 4]));
        assert!(!s.write(5, &[1, 2, 3, 4]));
        assert!(!s.write(usize::MAX, &[1]));
        assert!(!s.fill(0, 9, 0));
        let mut out = [0u8; 2];
        assert!(s.read(6, &mut out));
        assert_eq!(out, [3, 4]);
        assert!(!s.read(7, &mut out));
        assert!(!Storage::copy(&s, 0, &s, 7, 2));
        assert!(Storage::copy(&s, 4, &s, 2, 4));
        let mut all = [0u8; 8];
        s.read(0, &mut all);
        assert_eq!(all, [0, 0, 1, 2, 3, 4, 3, 4]);
    }

    #[test]
    fn aliasing_rules() {
        let a = storage(64);
        let b = storage(64);
        let bind = |s: &Arc<Storage>, off, len| Binding::new(s.clone(), off, len).unwrap();
        // In place: input 1 is exactly output 0.
        let ok = Bindings::new(
            vec![bind(&a, 0, 16), bind(&b, 0, 32)],
            vec![bind(&b, 0, 32), bind(&b, 32, 32)],
        )
        .unwrap();
        assert_eq!(ok.input_alias(0), None);
        assert_eq!(ok.input_alias(1), Some(0));
        assert_eq!(ok.lock_order.len(), 1, "one storage, locked once");
        // Overlapping outputs.
        assert_eq!(
            Bindings::new(vec![], vec![bind(&a, 0, 16), bind(&a, 8, 16)]).unwrap_err(),
            AliasError::OutputsOverlap(0, 1)
        );
        // An input spanning two outputs is a partial overlap with the first.
        assert!(matches!(
            Bindings::new(
                vec![bind(&a, 0, 64)],
                vec![bind(&a, 0, 32), bind(&a, 32, 32)]
            ),
            Err(AliasError::PartialOverlap { input: 0, .. })
        ));
        // Inputs may overlap each other freely.
        Bindings::new(
            vec![bind(&a, 0, 32), bind(&a, 16, 32)],
            vec![bind(&b, 0, 8)],
        )
        .unwrap();
    }

    #[test]
    fn views_enforce_exclusivity() {
        let a = storage(16);
        let bindings = Bindings::new(
            vec![Binding::new(a.clone(), 0, 16).unwrap()],
            vec![Binding::new(a.clone(), 0, 16).unwrap()],
        )
        .unwrap();
        let locked = bindings.lock(Instant::now()).unwrap();
        // A second execution cannot take the same output meanwhile.
        assert_eq!(bindings.lock(Instant::now()).err(), Some(0));
        let views = locked.views();
        assert_eq!(views.input(0), Err(ViewError::Aliased { output: 0 }));
        let out = views.output(0).unwrap();
        out[0] = 7;
        assert_eq!(views.output(0), Err(ViewError::AlreadyTaken));
        assert_eq!(views.input(1), Err(ViewError::OutOfRange));
        drop(views);
        drop(locked);
        assert!(bindings.lock(Instant::now()).is_ok(), "released on drop");
    }
}
