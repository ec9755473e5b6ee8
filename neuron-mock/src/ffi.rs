//! The C ABI: every function `neuron-sys/include/nrt_api.h` declares, plus three mock-only
//! helpers (`neuron_mock_*`).
//!
//! Each export only converts between C and Rust: it checks pointers and sizes, turns handles
//! into objects, calls the safe code in the other modules, and writes results back. Its body
//! runs under [`status`] or [`value`], which catch any panic (a bug here) and turn it, like
//! every other failure, into a status plus a line in the mock's log. No panic crosses the C
//! boundary.
//!
//! # Safety contract
//! The exports rely on what the C API documents of its callers: a non-NULL pointer points to
//! memory valid for the size the call is given (a `buf` of `size` bytes, an out-parameter of
//! its type, a NUL-terminated string), and an attached buffer outlives its tensor. NULL
//! pointers and bad handles are detected and refused; a dangling non-NULL pointer cannot be.

use std::any::Any;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::NonNull;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use neuron_sys::bindings::{
    NRT_STATUS, NrtLib, nrt_dtype_t, nrt_framework_type_t, nrt_instance_info_t, nrt_model_info_t,
    nrt_model_t, nrt_tensor_info_array_t, nrt_tensor_info_t, nrt_tensor_placement_t,
    nrt_tensor_set_t, nrt_tensor_t, nrt_version_t, nrt_vnc_memory_stats_t,
};

use crate::collectives::{Communicator, Rendezvous};
use crate::config::{MockVersion, Topology};
use crate::memory::Storage;
use crate::model::{Model, RankRequest};
use crate::runtime::{self, Fail, NrtResult, lock};
use crate::tensor::Tensor;
use crate::tensor_set::TensorSet;
use crate::testing::LiveHandles;

// ---------------------------------------------------------------------------------------------
// Guards and pointer helpers
// ---------------------------------------------------------------------------------------------

fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs an export's body under the panic guard. A failure is logged (and recorded as the
/// thread's last error) and becomes its status; a panic becomes `NRT_FAILURE`.
fn guarded<T>(
    function: &'static str,
    body: impl FnOnce() -> NrtResult<T>,
) -> Result<T, NRT_STATUS> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(fail)) => {
            crate::log::failure(function, &fail.message);
            Err(fail.status)
        }
        Err(payload) => {
            crate::log::failure(
                function,
                &format!(
                    "internal error (panic: {}); this is a bug in neuron-mock",
                    panic_message(payload.as_ref())
                ),
            );
            Err(NRT_STATUS::NRT_FAILURE)
        }
    }
}

/// For exports returning a status: `NRT_SUCCESS` or the failure's status.
fn status(function: &'static str, body: impl FnOnce() -> NrtResult<()>) -> NRT_STATUS {
    match guarded(function, body) {
        Ok(()) => NRT_STATUS::NRT_SUCCESS,
        Err(status) => status,
    }
}

/// For exports whose C return value carries no status (`void`, sizes, pointers): `fallback`
/// on failure.
fn plain<T>(function: &'static str, fallback: T, body: impl FnOnce() -> NrtResult<T>) -> T {
    guarded(function, body).unwrap_or(fallback)
}

/// A required out-parameter.
fn out<'a, T>(ptr: *mut T, what: &str) -> NrtResult<&'a mut std::mem::MaybeUninit<T>> {
    // SAFETY: a non-NULL out-parameter points to a writable T (the C API's contract);
    // MaybeUninit makes no claim about its current contents.
    unsafe { ptr.cast::<std::mem::MaybeUninit<T>>().as_mut() }
        .ok_or_else(|| Fail::invalid(format!("{what} is NULL")))
}

/// An optional NUL-terminated string (`None` for NULL), lossily as UTF-8.
fn opt_str(ptr: *const c_char) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: a non-NULL string argument is NUL-terminated (the C API's contract).
    let s = unsafe { CStr::from_ptr(ptr) };
    Some(s.to_string_lossy().into_owned())
}

/// A required NUL-terminated string's bytes.
fn req_bytes<'a>(ptr: *const c_char, what: &str) -> NrtResult<&'a [u8]> {
    if ptr.is_null() {
        return Err(Fail::invalid(format!("{what} is NULL")));
    }
    // SAFETY: a non-NULL string argument is NUL-terminated (the C API's contract).
    Ok(unsafe { CStr::from_ptr(ptr) }.to_bytes())
}

/// The checks a buffer argument can get: not NULL, and a size no allocation can have (which
/// would also break `slice::from_raw_parts`' precondition).
fn check_buffer(null: bool, len: usize, what: &str) -> NrtResult<()> {
    if null {
        return Err(Fail::invalid(format!(
            "{what} is NULL but the size is {len}"
        )));
    }
    if len > isize::MAX as usize {
        return Err(Fail::invalid(format!(
            "{what} size {len} is impossibly large"
        )));
    }
    Ok(())
}

/// A caller's input buffer of `len` bytes (NULL allowed only when `len` is 0).
fn in_buf<'a>(ptr: *const c_void, len: usize, what: &str) -> NrtResult<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    check_buffer(ptr.is_null(), len, what)?;
    // SAFETY: a non-NULL buffer argument is readable for the size given with it (the C API's
    // contract); the slice lives only for this call.
    Ok(unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) })
}

/// A caller's output buffer of `len` bytes (NULL allowed only when `len` is 0).
fn out_buf<'a>(ptr: *mut c_void, len: usize, what: &str) -> NrtResult<&'a mut [u8]> {
    if len == 0 {
        return Ok(&mut []);
    }
    check_buffer(ptr.is_null(), len, what)?;
    // SAFETY: a non-NULL buffer argument is writable for the size given with it (the C API's
    // contract); the slice lives only for this call.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), len) })
}

/// Copies the first `len` bytes of `value` to `dst` (size-negotiated structs).
fn write_prefix<T: Copy>(dst: *mut T, value: &T, len: usize, what: &str) -> NrtResult<usize> {
    let n = len.min(size_of::<T>());
    if n == 0 {
        return Ok(0);
    }
    if dst.is_null() {
        return Err(Fail::invalid(format!("{what} is NULL")));
    }
    // SAFETY: `dst` is non-NULL and, per the API, writable for the `len` bytes the caller gave,
    // of which we write n <= len; `value` is a live T of size_of::<T>() >= n bytes.
    unsafe { std::ptr::copy_nonoverlapping((value as *const T).cast::<u8>(), dst.cast::<u8>(), n) };
    Ok(n)
}

fn tensor_handle(ptr: *const nrt_tensor_t) -> usize {
    ptr as usize
}

// ---------------------------------------------------------------------------------------------
// Status names
// ---------------------------------------------------------------------------------------------

/// Returns the status code's name as a static string.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_get_status_as_str(status: NRT_STATUS) -> *const c_char {
    static NAMES: OnceLock<Vec<(u32, CString)>> = OnceLock::new();
    plain("nrt_get_status_as_str", c"NRT_FAILURE".as_ptr(), || {
        let names = NAMES.get_or_init(|| {
            (0..2000)
                .filter_map(|v| {
                    let name = NRT_STATUS(v).name()?;
                    Some((v, CString::new(name).ok()?))
                })
                .collect()
        });
        Ok(names
            .iter()
            .find(|(v, _)| *v == status.0)
            .map_or(c"NRT_UNKNOWN_STATUS".as_ptr(), |(_, name)| name.as_ptr()))
    })
}

// ---------------------------------------------------------------------------------------------
// Lifecycle and topology
// ---------------------------------------------------------------------------------------------

/// Starts the runtime; reads the environment (see the README).
#[unsafe(no_mangle)]
pub extern "C" fn nrt_init(
    framework: nrt_framework_type_t,
    fw_version: *const c_char,
    fal_version: *const c_char,
) -> NRT_STATUS {
    status("nrt_init", || {
        runtime::init()?;
        log!(
            Debug,
            "nrt_init",
            "framework {framework}, versions {:?} / {:?}",
            opt_str(fw_version).unwrap_or_default(),
            opt_str(fal_version).unwrap_or_default()
        );
        Ok(())
    })
}

/// Ends the runtime.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_close() {
    plain("nrt_close", (), || {
        runtime::close();
        Ok(())
    })
}

/// The topology of the running runtime, or as the environment describes it before init.
fn topology() -> NrtResult<Topology> {
    match runtime::current() {
        Some(rt) => Ok(rt.config.topology.clone()),
        None => Topology::from_env().map_err(|m| Fail::new(NRT_STATUS::NRT_FAILURE, m)),
    }
}

/// Total NeuronCores (deprecated name).
#[unsafe(no_mangle)]
pub extern "C" fn nrt_get_total_nc_count(nc_count: *mut u32) -> NRT_STATUS {
    status("nrt_get_total_nc_count", || {
        out(nc_count, "nc_count")?.write(topology()?.total());
        Ok(())
    })
}

/// Total logical NeuronCores; works before init.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_get_total_vnc_count(vnc_count: *mut u32) -> NRT_STATUS {
    status("nrt_get_total_vnc_count", || {
        out(vnc_count, "vnc_count")?.write(topology()?.total());
        Ok(())
    })
}

/// Visible NeuronCores (deprecated name).
#[unsafe(no_mangle)]
pub extern "C" fn nrt_get_visible_nc_count(nc_count: *mut u32) -> NRT_STATUS {
    status("nrt_get_visible_nc_count", || {
        out(nc_count, "nc_count")?.write(topology()?.visible);
        Ok(())
    })
}

/// Visible logical NeuronCores; works before init.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_get_visible_vnc_count(vnc_count: *mut u32) -> NRT_STATUS {
    status("nrt_get_visible_vnc_count", || {
        out(vnc_count, "vnc_count")?.write(topology()?.visible);
        Ok(())
    })
}

/// Instance family and size; copies at most `instance_info_len` bytes.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_get_instance_info(
    info: *mut nrt_instance_info_t,
    instance_info_len: usize,
) -> NRT_STATUS {
    status("nrt_get_instance_info", || {
        let rt = runtime::active()?;
        let profile = rt.config.topology.profile;
        let mut value = nrt_instance_info_t {
            family: profile.family.0,
            size: profile.size.0,
            arch_name: [0; 16],
            device_revision: [0; 8],
        };
        for (dst, &src) in value
            .arch_name
            .iter_mut()
            .zip(profile.arch_name.as_bytes().iter().take(15))
        {
            *dst = src as c_char;
        }
        for (dst, &src) in value.device_revision.iter_mut().zip(b"mock") {
            *dst = src as c_char;
        }
        write_prefix(info, &value, instance_info_len, "info")?;
        Ok(())
    })
}

/// The runtime version (`NEURON_MOCK_RT_VERSION`); copies at most `size` bytes. The detail
/// string names the arithmetic of the weight products (`NEURON_MOCK_MATMUL`) as well, since
/// a model's outputs depend on it: callers that cache results key them on it.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_get_version(ver: *mut nrt_version_t, size: usize) -> NRT_STATUS {
    status("nrt_get_version", || {
        let version = match runtime::current() {
            Some(rt) => rt.config.version,
            None => MockVersion::from_env().map_err(|m| Fail::new(NRT_STATUS::NRT_FAILURE, m))?,
        };
        let mut value = nrt_version_t {
            rt_major: version.major,
            rt_minor: version.minor,
            rt_patch: version.patch,
            rt_maintenance: version.maintenance,
            rt_detail: [0; 128],
            git_hash: [0; 64],
        };
        let detail = format!(
            "neuron-mock {} (mock libnrt {version}, weight products in {})",
            env!("CARGO_PKG_VERSION"),
            crate::kernels::llama::packed::Precision::current().description()
        );
        for (dst, &src) in value
            .rt_detail
            .iter_mut()
            .zip(detail.as_bytes().iter().take(127))
        {
            *dst = src as c_char;
        }
        let hash = env!("NEURON_MOCK_BUILD_ID");
        for (dst, &src) in value
            .git_hash
            .iter_mut()
            .zip(hash.as_bytes().iter().take(63))
        {
            *dst = src as c_char;
        }
        write_prefix(ver, &value, size, "ver")?;
        Ok(())
    })
}

/// Device memory in use and available on core `vnc`; size-negotiated.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_get_vnc_memory_stats(
    vnc: u32,
    stats: *mut nrt_vnc_memory_stats_t,
    stats_size_in: usize,
    stats_size_out: *mut usize,
) -> NRT_STATUS {
    status("nrt_get_vnc_memory_stats", || {
        let rt = runtime::active()?;
        let core = rt.core(i64::from(vnc))?;
        let value = nrt_vnc_memory_stats_t {
            bytes_used: core.used() as usize,
            bytes_limit: core.limit as usize,
        };
        let written = write_prefix(stats, &value, stats_size_in, "stats")?;
        if !stats_size_out.is_null() {
            out(stats_size_out, "stats_size_out")?.write(written);
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------------------------

fn load(
    neff_bytes: *const c_void,
    size: usize,
    vnc: i32,
    vnc_count: i32,
    world: Option<RankRequest>,
    model: *mut *mut nrt_model_t,
) -> NrtResult<()> {
    let rt = runtime::active()?;
    let slot = out(model, "model")?;
    if size == 0 {
        return Err(Fail::invalid("the NEFF is empty (size 0)"));
    }
    let bytes = in_buf(neff_bytes, size, "neff_bytes")?;
    let loaded = Model::load(&rt, bytes, vnc, vnc_count, world)?;
    slot.write(rt.models.add(loaded) as *mut nrt_model_t);
    Ok(())
}

/// Loads a NEFF onto core `vnc` (-1: the least used visible core).
#[unsafe(no_mangle)]
pub extern "C" fn nrt_load(
    neff_bytes: *const c_void,
    size: usize,
    vnc: i32,
    vnc_count: i32,
    model: *mut *mut nrt_model_t,
) -> NRT_STATUS {
    status("nrt_load", || {
        load(neff_bytes, size, vnc, vnc_count, None, model)
    })
}

/// Loads a NEFF as rank `ctx_device_id` of a world of `ctx_device_count`.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_load_collectives(
    neff_bytes: *const c_void,
    size: usize,
    vnc: i32,
    vnc_count: i32,
    ctx_device_id: u32,
    ctx_device_count: u32,
    model: *mut *mut nrt_model_t,
) -> NRT_STATUS {
    status("nrt_load_collectives", || {
        let world = RankRequest {
            rank: ctx_device_id,
            world_size: ctx_device_count,
        };
        load(neff_bytes, size, vnc, vnc_count, Some(world), model)
    })
}

/// Unloads a model; executions in flight finish first on their own copy of it.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_unload(model: *mut nrt_model_t) -> NRT_STATUS {
    status("nrt_unload", || {
        let rt = runtime::active()?;
        let removed = rt.models.remove(model as usize)?;
        log!(Info, "nrt_unload", "unloaded '{}'", removed.name);
        Ok(())
    })
}

fn model_core_count(model: *const nrt_model_t, dst: *mut u32) -> NrtResult<()> {
    let rt = runtime::active()?;
    let model = rt.models.get(model as usize)?;
    out(dst, "vnc_count")?.write(model.core_count);
    Ok(())
}

/// Cores the model occupies (deprecated name).
#[unsafe(no_mangle)]
pub extern "C" fn nrt_get_model_nc_count(
    model: *const nrt_model_t,
    nc_count: *mut u32,
) -> NRT_STATUS {
    status("nrt_get_model_nc_count", || {
        model_core_count(model, nc_count)
    })
}

/// Logical cores the model occupies.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_get_model_vnc_count(
    model: *const nrt_model_t,
    vnc_count: *mut u32,
) -> NRT_STATUS {
    status("nrt_get_model_vnc_count", || {
        model_core_count(model, vnc_count)
    })
}

/// Creates the global communicator: checked and recorded; worlds form at load time.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_build_global_comm(
    vnc: i32,
    g_device_id: u32,
    g_device_count: u32,
) -> NRT_STATUS {
    status("nrt_build_global_comm", || {
        let rt = runtime::active()?;
        rt.core(i64::from(vnc))?;
        if g_device_count == 0 || g_device_id >= g_device_count {
            return Err(Fail::invalid(format!(
                "rank {g_device_id} is not in a world of {g_device_count}"
            )));
        }
        host_comm(&rt, g_device_count);
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Tensor sets
// ---------------------------------------------------------------------------------------------

/// Creates an empty tensor set.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_allocate_tensor_set(result: *mut *mut nrt_tensor_set_t) -> NRT_STATUS {
    status("nrt_allocate_tensor_set", || {
        let rt = runtime::active()?;
        let slot = out(result, "result")?;
        slot.write(rt.sets.add(TensorSet::new()) as *mut nrt_tensor_set_t);
        Ok(())
    })
}

/// Frees a tensor set (not its tensors) and writes NULL into `*tensor_set`.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_destroy_tensor_set(tensor_set: *mut *mut nrt_tensor_set_t) {
    plain("nrt_destroy_tensor_set", (), || {
        let Some(slot) = NonNull::new(tensor_set) else {
            return Err(Fail::invalid("tensor_set is NULL"));
        };
        // SAFETY: a non-NULL `tensor_set` points to the caller's handle variable.
        let handle = unsafe { slot.as_ptr().read() };
        if handle.is_null() {
            return Ok(());
        }
        // SAFETY: as above; the API says the variable is set to NULL.
        unsafe { slot.as_ptr().write(std::ptr::null_mut()) };
        runtime::active()?.sets.remove(handle as usize)?;
        Ok(())
    })
}

/// Inserts or replaces the set's entry for `tensor_name`.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_add_tensor_to_tensor_set(
    tensor_set: *mut nrt_tensor_set_t,
    tensor_name: *const c_char,
    tensor: *mut nrt_tensor_t,
) -> NRT_STATUS {
    status("nrt_add_tensor_to_tensor_set", || {
        let rt = runtime::active()?;
        let set = rt.sets.get(tensor_set as usize)?;
        let name = req_bytes(tensor_name, "tensor_name")?;
        let tensor = rt.tensors.get(tensor_handle(tensor))?;
        set.insert(name, tensor.id);
        Ok(())
    })
}

/// Looks `tensor_name` up; `NRT_FAILURE` when absent (and `*tensor` is left alone).
#[unsafe(no_mangle)]
pub extern "C" fn nrt_get_tensor_from_tensor_set(
    tensor_set: *mut nrt_tensor_set_t,
    tensor_name: *const c_char,
    tensor: *mut *mut nrt_tensor_t,
) -> NRT_STATUS {
    status("nrt_get_tensor_from_tensor_set", || {
        let rt = runtime::active()?;
        let set = rt.sets.get(tensor_set as usize)?;
        let name = req_bytes(tensor_name, "tensor_name")?;
        let slot = out(tensor, "tensor")?;
        let id = set.get(name).ok_or_else(|| {
            Fail::new(
                NRT_STATUS::NRT_FAILURE,
                format!(
                    "no tensor named '{}' in the set",
                    String::from_utf8_lossy(name)
                ),
            )
        })?;
        slot.write(runtime::handle(runtime::Kind::Tensor, id) as *mut nrt_tensor_t);
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Execution
// ---------------------------------------------------------------------------------------------

fn execute(
    model: *mut nrt_model_t,
    input_set: *const nrt_tensor_set_t,
    output_set: *mut nrt_tensor_set_t,
    repeat: usize,
) -> NrtResult<()> {
    let rt = runtime::active()?;
    let model = rt.models.get(model as usize)?;
    let inputs = rt.sets.get(input_set as usize)?;
    let outputs = rt.sets.get(output_set as usize)?;
    model.execute(&rt, &inputs, &outputs, repeat)
}

/// Runs the model once.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_execute(
    model: *mut nrt_model_t,
    input_set: *const nrt_tensor_set_t,
    output_set: *mut nrt_tensor_set_t,
) -> NRT_STATUS {
    status("nrt_execute", || execute(model, input_set, output_set, 1))
}

/// Runs the model `repeat_count` times with the same sets.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_execute_repeat(
    model: *mut nrt_model_t,
    input_set: *const nrt_tensor_set_t,
    output_set: *mut nrt_tensor_set_t,
    repeat_count: c_int,
) -> NRT_STATUS {
    status("nrt_execute_repeat", || {
        let repeat = usize::try_from(repeat_count)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| Fail::invalid(format!("repeat_count {repeat_count} is not positive")))?;
        execute(model, input_set, output_set, repeat)
    })
}

// ---------------------------------------------------------------------------------------------
// Tensors
// ---------------------------------------------------------------------------------------------

/// Allocates a tensor on core `vnc` (device) or on the host.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_tensor_allocate(
    tensor_placement: nrt_tensor_placement_t,
    vnc: c_int,
    size: usize,
    name: *const c_char,
    tensor: *mut *mut nrt_tensor_t,
) -> NRT_STATUS {
    status("nrt_tensor_allocate", || {
        let rt = runtime::active()?;
        let slot = out(tensor, "tensor")?;
        let name = opt_str(name).unwrap_or_default();
        let allocated = Tensor::allocate(&rt, tensor_placement, i64::from(vnc), size, &name)?;
        slot.write(rt.tensors.add(allocated) as *mut nrt_tensor_t);
        Ok(())
    })
}

/// Frees a tensor and writes NULL into `*tensor`.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_tensor_free(tensor: *mut *mut nrt_tensor_t) {
    plain("nrt_tensor_free", (), || {
        let Some(slot) = NonNull::new(tensor) else {
            return Err(Fail::invalid("tensor is NULL"));
        };
        // SAFETY: a non-NULL `tensor` points to the caller's handle variable.
        let handle = unsafe { slot.as_ptr().read() };
        if handle.is_null() {
            return Ok(());
        }
        // SAFETY: as above; the API says the variable is set to NULL.
        unsafe { slot.as_ptr().write(std::ptr::null_mut()) };
        runtime::active()?
            .tensors
            .remove(tensor_handle(handle))?
            .release();
        Ok(())
    })
}

/// Copies `size` bytes at `offset` of the tensor into `buf`.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_tensor_read(
    tensor: *const nrt_tensor_t,
    buf: *mut c_void,
    offset: usize,
    size: usize,
) -> NRT_STATUS {
    status("nrt_tensor_read", || {
        let rt = runtime::active()?;
        let tensor = rt.tensors.get(tensor_handle(tensor))?;
        tensor.read(offset as u64, out_buf(buf, size, "buf")?)
    })
}

/// Copies `size` bytes from `buf` into the tensor at `offset`.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_tensor_write(
    tensor: *mut nrt_tensor_t,
    buf: *const c_void,
    offset: usize,
    size: usize,
) -> NRT_STATUS {
    status("nrt_tensor_write", || {
        let rt = runtime::active()?;
        let tensor = rt.tensors.get(tensor_handle(tensor))?;
        tensor.write(offset as u64, in_buf(buf, size, "buf")?)
    })
}

/// Copies `size` bytes between tensors (device tensors: same chip).
#[unsafe(no_mangle)]
pub extern "C" fn nrt_tensor_copy(
    src: *const nrt_tensor_t,
    src_offset: usize,
    dst: *mut nrt_tensor_t,
    dst_offset: usize,
    size: usize,
) -> NRT_STATUS {
    status("nrt_tensor_copy", || {
        let rt = runtime::active()?;
        let from = rt.tensors.get(tensor_handle(src))?;
        let to = rt.tensors.get(tensor_handle(dst))?;
        Tensor::copy(&rt, &from, src_offset as u64, &to, dst_offset as u64, size)
    })
}

/// The tensor's size in bytes, 0 on error.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_tensor_get_size(tensor: *const nrt_tensor_t) -> usize {
    plain("nrt_tensor_get_size", 0, || {
        Ok(runtime::active()?
            .tensors
            .get(tensor_handle(tensor))?
            .size())
    })
}

/// Sets `size` bytes at `offset` to `value`.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_tensor_memset(
    tensor: *mut nrt_tensor_t,
    offset: u64,
    value: c_int,
    size: usize,
) -> NRT_STATUS {
    status("nrt_tensor_memset", || {
        let rt = runtime::active()?;
        let tensor = rt.tensors.get(tensor_handle(tensor))?;
        // memset semantics: the value is converted to unsigned char.
        tensor.fill(offset, value as u8, size)
    })
}

/// Creates a tensor without storage.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_tensor_allocate_empty(
    name: *const c_char,
    tensor: *mut *mut nrt_tensor_t,
) -> NRT_STATUS {
    status("nrt_tensor_allocate_empty", || {
        let rt = runtime::active()?;
        let slot = out(tensor, "tensor")?;
        let empty = Tensor::empty(&opt_str(name).unwrap_or_default());
        slot.write(rt.tensors.add(empty) as *mut nrt_tensor_t);
        Ok(())
    })
}

/// Makes the tensor use the caller's buffer, which stays the caller's.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_tensor_attach_buffer(
    tensor: *mut nrt_tensor_t,
    buffer: *mut c_void,
    size: usize,
) -> NRT_STATUS {
    status("nrt_tensor_attach_buffer", || {
        let rt = runtime::active()?;
        let tensor = rt.tensors.get(tensor_handle(tensor))?;
        let buffer =
            NonNull::new(buffer.cast::<u8>()).ok_or_else(|| Fail::invalid("buffer is NULL"))?;
        // SAFETY: the API requires the attached buffer to stay valid for `size` bytes for as
        // long as the tensor uses it; the storage never frees it.
        let storage = unsafe { Storage::attach(buffer, size) };
        tensor.attach(storage);
        Ok(())
    })
}

/// Creates a tensor viewing `size` bytes at `offset` of another, sharing its storage.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_tensor_allocate_slice(
    tensor_source: *const nrt_tensor_t,
    offset: usize,
    size: usize,
    name: *const c_char,
    tensor_slice: *mut *mut nrt_tensor_t,
) -> NRT_STATUS {
    status("nrt_tensor_allocate_slice", || {
        let rt = runtime::active()?;
        let slot = out(tensor_slice, "tensor_slice")?;
        let source = rt.tensors.get(tensor_handle(tensor_source))?;
        let slice = source.slice(offset, size, &opt_str(name).unwrap_or_default())?;
        slot.write(rt.tensors.add(slice) as *mut nrt_tensor_t);
        Ok(())
    })
}

/// The address of the tensor's bytes (host memory in the mock), NULL on error.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_tensor_get_va(tensor: *const nrt_tensor_t) -> *mut c_void {
    plain("nrt_tensor_get_va", std::ptr::null_mut(), || {
        let rt = runtime::active()?;
        let tensor = rt.tensors.get(tensor_handle(tensor))?;
        Ok(tensor
            .address()
            .map_or(std::ptr::null_mut(), |p| p.cast::<c_void>()))
    })
}

// ---------------------------------------------------------------------------------------------
// Model tensor information
// ---------------------------------------------------------------------------------------------

/// Tensor-info arrays handed out and not yet freed: (address, layout). Process-wide, so an
/// array stays valid (and freeable) across `nrt_close`. Few are alive at once: a list will do.
static TENSOR_INFOS: Mutex<Vec<(usize, std::alloc::Layout)>> = Mutex::new(Vec::new());

/// Describes every input and output of the model in one allocated block.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_get_model_tensor_info(
    model: *mut nrt_model_t,
    tensor_info: *mut *mut nrt_tensor_info_array_t,
) -> NRT_STATUS {
    status("nrt_get_model_tensor_info", || {
        let rt = runtime::active()?;
        let slot = out(tensor_info, "tensor_info")?;
        let model = rt.models.get(model as usize)?;
        let entries = model.tensor_info(rt.config.version.dtype_encoding());
        slot.write(allocate_tensor_info(&entries)?);
        Ok(())
    })
}

/// One block: the count, the entries, then every entry's shape.
fn allocate_tensor_info(
    entries: &[crate::model::InfoEntry<'_>],
) -> NrtResult<*mut nrt_tensor_info_array_t> {
    let entry_size = size_of::<nrt_tensor_info_t>();
    let header = size_of::<nrt_tensor_info_array_t>();
    let dims: usize = entries.iter().map(|e| e.shape.len()).sum();
    let total = header + entries.len() * entry_size + dims * size_of::<u32>();
    let layout = std::alloc::Layout::from_size_align(total, align_of::<nrt_tensor_info_array_t>())
        .map_err(|_| Fail::new(NRT_STATUS::NRT_RESOURCE, "tensor info too large"))?;
    // SAFETY: `total` >= 8 (the header), so the layout is non-zero-sized.
    let base = unsafe { std::alloc::alloc_zeroed(layout) };
    if base.is_null() {
        return Err(Fail::new(
            NRT_STATUS::NRT_RESOURCE,
            "cannot allocate the tensor info",
        ));
    }
    let array = base.cast::<nrt_tensor_info_array_t>();
    let mut shapes = base
        .wrapping_add(header + entries.len() * entry_size)
        .cast::<u32>();
    // SAFETY: `array` is the start of a zeroed, 8-aligned block of `total` bytes.
    unsafe { (*array).tensor_count = entries.len() as u64 };
    for (i, entry) in entries.iter().enumerate() {
        let mut name = [0 as c_char; 256];
        for (dst, &src) in name.iter_mut().zip(entry.name.as_bytes().iter().take(255)) {
            *dst = src as c_char;
        }
        let shape = if entry.shape.is_empty() {
            std::ptr::null_mut()
        } else {
            shapes
        };
        for &dim in &entry.shape {
            // SAFETY: the shape area holds `dims` u32s after the entries, 4-aligned (the
            // entries are 296 bytes each after an 8-byte header); this writes within it.
            unsafe { shapes.write(dim) };
            shapes = shapes.wrapping_add(1);
        }
        // SAFETY: entry i lies within the block, at an 8-aligned offset.
        unsafe {
            (*array)
                .tensor_array
                .as_mut_ptr()
                .add(i)
                .write(nrt_tensor_info_t {
                    name,
                    usage: entry.usage,
                    size: entry.size,
                    dtype: nrt_dtype_t(entry.dtype),
                    shape,
                    ndim: entry.shape.len() as u32,
                });
        }
    }
    lock(&TENSOR_INFOS).push((base as usize, layout));
    Ok(array)
}

/// Frees an array from `nrt_get_model_tensor_info`.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_free_model_tensor_info(
    tensor_info: *mut nrt_tensor_info_array_t,
) -> NRT_STATUS {
    status("nrt_free_model_tensor_info", || {
        if tensor_info.is_null() {
            return Err(Fail::invalid("tensor_info is NULL"));
        }
        let layout = {
            let mut infos = lock(&TENSOR_INFOS);
            let found = infos
                .iter()
                .position(|&(addr, _)| addr == tensor_info as usize);
            found.map(|i| infos.swap_remove(i).1)
        }
        .ok_or_else(|| {
            Fail::invalid(format!(
                "{tensor_info:p} is not a tensor info array from nrt_get_model_tensor_info \
                     (freed twice?)"
            ))
        })?;
        // SAFETY: the address was allocated by allocate_tensor_info with this layout and is
        // removed from the table, so it is freed exactly once.
        unsafe { std::alloc::dealloc(tensor_info.cast::<u8>(), layout) };
        Ok(())
    })
}

/// The model's placement; size-negotiated.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_get_model_info(
    model: *const nrt_model_t,
    info: *mut nrt_model_info_t,
    info_size_in: usize,
    info_size_out: *mut usize,
) -> NRT_STATUS {
    status("nrt_get_model_info", || {
        let rt = runtime::active()?;
        let model = rt.models.get(model as usize)?;
        let value = nrt_model_info_t { vnc: model.core };
        let written = write_prefix(info, &value, info_size_in, "info")?;
        if !info_size_out.is_null() {
            out(info_size_out, "info_size_out")?.write(written);
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Host-driven collectives
// ---------------------------------------------------------------------------------------------

fn host_comm(rt: &runtime::Runtime, size: u32) -> std::sync::Arc<Rendezvous> {
    lock(&rt.host_comms)
        .entry(size)
        .or_insert_with(|| std::sync::Arc::new(Rendezvous::new(size as usize)))
        .clone()
}

fn host_collective(
    vnc: i32,
    g_device_id: u32,
    g_device_count: u32,
    run: impl FnOnce(Communicator<'_>) -> Result<(), crate::collectives::CollectiveError>,
) -> NrtResult<()> {
    let rt = runtime::active()?;
    if vnc != -1 {
        rt.core(i64::from(vnc))?;
    }
    if g_device_count == 0 || g_device_id >= g_device_count {
        return Err(Fail::invalid(format!(
            "rank {g_device_id} is not in a world of {g_device_count}"
        )));
    }
    let comm = host_comm(&rt, g_device_count);
    let deadline = Instant::now() + rt.config.exec_timeout;
    run(Communicator::new(&comm, g_device_id as usize, deadline))
        .map_err(|e| Fail::new(e.status(), e.to_string()))
}

/// Waits for every rank of the world.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_barrier(vnc: i32, g_device_id: u32, g_device_count: u32) -> NRT_STATUS {
    status("nrt_barrier", || {
        host_collective(vnc, g_device_id, g_device_count, |c| c.barrier())
    })
}

/// Gathers `rank_input_size` bytes from every rank into `output`, in rank order.
#[unsafe(no_mangle)]
pub extern "C" fn nrt_all_gather(
    vnc: i32,
    g_device_id: u32,
    g_device_count: u32,
    rank_input_size: u32,
    input: *mut c_void,
    output: *mut c_void,
) -> NRT_STATUS {
    status("nrt_all_gather", || {
        let len = rank_input_size as usize;
        let mine = in_buf(input, len, "input")?;
        let all = out_buf(output, len * g_device_count as usize, "output")?;
        host_collective(vnc, g_device_id, g_device_count, |c| {
            c.all_gather(mine, all)
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Mock-only helpers (not part of libnrt)
// ---------------------------------------------------------------------------------------------

/// The build id of this library (a hash of the sources it was built from).
#[unsafe(no_mangle)]
pub extern "C" fn neuron_mock_build_id() -> *const c_char {
    static ID: OnceLock<CString> = OnceLock::new();
    ID.get_or_init(|| CString::new(env!("NEURON_MOCK_BUILD_ID")).unwrap_or_default())
        .as_ptr()
}

/// Counts of live objects and device bytes in use (zeros when the runtime is not active).
#[unsafe(no_mangle)]
pub extern "C" fn neuron_mock_live_handles(
    out_counts: *mut LiveHandles,
    size: usize,
) -> NRT_STATUS {
    status("neuron_mock_live_handles", || {
        let live = runtime::current().map(|rt| rt.live()).unwrap_or_default();
        let infos = lock(&TENSOR_INFOS).len();
        let value = LiveHandles {
            models: live.models,
            tensors: live.tensors,
            tensor_sets: live.tensor_sets,
            tensor_infos: infos as u64,
            device_bytes: live.device_bytes,
        };
        write_prefix(out_counts, &value, size, "out_counts")?;
        Ok(())
    })
}

/// Copies the calling thread's last failure message ("function: message") into `buf`
/// (NUL-terminated, cut to `len`); returns its full length in bytes.
#[unsafe(no_mangle)]
pub extern "C" fn neuron_mock_last_error(buf: *mut c_char, len: usize) -> usize {
    plain("neuron_mock_last_error", 0, || {
        let message = crate::log::last_error();
        if len > 0 {
            let dst = out_buf(buf.cast(), len, "buf")?;
            let n = message.len().min(len - 1);
            dst[..n].copy_from_slice(&message.as_bytes()[..n]);
            dst[n] = 0;
        }
        Ok(message.len())
    })
}

// ---------------------------------------------------------------------------------------------
// Compile-time check against the header
// ---------------------------------------------------------------------------------------------

/// Never called: it only compiles if every export has exactly the type of the matching field
/// of neuron-sys's generated function table, so a signature that drifts from
/// `neuron-sys/include/nrt_api.h` fails the build. (That every field has an export is checked
/// by the `exports` test, which looks each one up in the built library.)
#[allow(dead_code)]
fn exports_match_the_header(lib: &NrtLib) {
    fn same<T>(_field: &Result<T, libloading::Error>, _export: T) {}
    same(&lib.nrt_get_status_as_str, nrt_get_status_as_str);
    same(&lib.nrt_init, nrt_init);
    same(&lib.nrt_close, nrt_close);
    same(&lib.nrt_get_total_nc_count, nrt_get_total_nc_count);
    same(&lib.nrt_get_total_vnc_count, nrt_get_total_vnc_count);
    same(&lib.nrt_get_visible_nc_count, nrt_get_visible_nc_count);
    same(&lib.nrt_get_visible_vnc_count, nrt_get_visible_vnc_count);
    same(&lib.nrt_get_instance_info, nrt_get_instance_info);
    same(&lib.nrt_get_version, nrt_get_version);
    same(&lib.nrt_get_vnc_memory_stats, nrt_get_vnc_memory_stats);
    same(&lib.nrt_load, nrt_load);
    same(&lib.nrt_load_collectives, nrt_load_collectives);
    same(&lib.nrt_unload, nrt_unload);
    same(&lib.nrt_get_model_nc_count, nrt_get_model_nc_count);
    same(&lib.nrt_get_model_vnc_count, nrt_get_model_vnc_count);
    same(&lib.nrt_build_global_comm, nrt_build_global_comm);
    same(&lib.nrt_allocate_tensor_set, nrt_allocate_tensor_set);
    same(&lib.nrt_destroy_tensor_set, nrt_destroy_tensor_set);
    same(
        &lib.nrt_add_tensor_to_tensor_set,
        nrt_add_tensor_to_tensor_set,
    );
    same(
        &lib.nrt_get_tensor_from_tensor_set,
        nrt_get_tensor_from_tensor_set,
    );
    same(&lib.nrt_execute, nrt_execute);
    same(&lib.nrt_execute_repeat, nrt_execute_repeat);
    same(&lib.nrt_tensor_allocate, nrt_tensor_allocate);
    same(&lib.nrt_tensor_free, nrt_tensor_free);
    same(&lib.nrt_tensor_read, nrt_tensor_read);
    same(&lib.nrt_tensor_write, nrt_tensor_write);
    same(&lib.nrt_tensor_copy, nrt_tensor_copy);
    same(&lib.nrt_tensor_get_size, nrt_tensor_get_size);
    same(&lib.nrt_tensor_memset, nrt_tensor_memset);
    same(&lib.nrt_tensor_allocate_empty, nrt_tensor_allocate_empty);
    same(&lib.nrt_tensor_attach_buffer, nrt_tensor_attach_buffer);
    same(&lib.nrt_tensor_allocate_slice, nrt_tensor_allocate_slice);
    same(&lib.nrt_tensor_get_va, nrt_tensor_get_va);
    same(&lib.nrt_get_model_tensor_info, nrt_get_model_tensor_info);
    same(&lib.nrt_free_model_tensor_info, nrt_free_model_tensor_info);
    same(&lib.nrt_get_model_info, nrt_get_model_info);
    same(&lib.nrt_barrier, nrt_barrier);
    same(&lib.nrt_all_gather, nrt_all_gather);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_turns_failures_and_panics_into_statuses() {
        assert_eq!(status("nrt_test", || Ok(())), NRT_STATUS::NRT_SUCCESS);
        assert_eq!(
            status("nrt_test", || Err(Fail::new(
                NRT_STATUS::NRT_TIMEOUT,
                "slow"
            ))),
            NRT_STATUS::NRT_TIMEOUT
        );
        assert_eq!(crate::log::last_error(), "nrt_test: slow");
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let after_panic = status("nrt_test", || panic!("kernel bug"));
        let fallback = plain("nrt_test", 7usize, || -> NrtResult<usize> {
            panic!("oops")
        });
        std::panic::set_hook(hook);
        assert_eq!(after_panic, NRT_STATUS::NRT_FAILURE);
        assert_eq!(fallback, 7);
        assert!(crate::log::last_error().contains("panic: oops"));
    }

    #[test]
    fn null_and_empty_buffers() {
        assert!(in_buf(std::ptr::null(), 0, "buf").unwrap().is_empty());
        assert!(in_buf(std::ptr::null(), 1, "buf").is_err());
        assert!(out_buf(std::ptr::null_mut(), 4, "buf").is_err());
        let mut byte = 0u8;
        let huge = out_buf((&raw mut byte).cast(), usize::MAX, "buf").unwrap_err();
        assert!(huge.message.contains("impossibly large"));
        assert!(out::<u32>(std::ptr::null_mut(), "count").is_err());
        assert_eq!(opt_str(std::ptr::null()), None);
        assert_eq!(opt_str(c"name".as_ptr()).as_deref(), Some("name"));
    }
}
