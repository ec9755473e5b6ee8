//! A thin test client over the C API as neuron-sys binds it: every call goes through the
//! dynamic loader into the mock library, exactly as a real program's would. Shared by the
//! integration tests and the `nrt-mock-probe` binary (which includes this file by path).

#![allow(dead_code, clippy::unwrap_used, clippy::undocumented_unsafe_blocks)]

use std::ffi::{CStr, CString, c_void};
use std::ptr::null_mut;
use std::sync::{Mutex, MutexGuard};

use neuron_sys::Library;
use neuron_sys::bindings::{
    NRT_STATUS, nrt_framework_type_t, nrt_model_t, nrt_tensor_info_array_t, nrt_tensor_placement_t,
    nrt_tensor_set_t, nrt_tensor_t, nrt_vnc_memory_stats_t,
};

pub use neuron_sys::bindings::NRT_STATUS as Status;

pub const DEVICE: nrt_tensor_placement_t = nrt_tensor_placement_t::NRT_TENSOR_PLACEMENT_DEVICE;
pub const HOST: nrt_tensor_placement_t = nrt_tensor_placement_t::NRT_TENSOR_PLACEMENT_HOST;
pub const SUCCESS: Status = NRT_STATUS::NRT_SUCCESS;

/// Calls a libnrt function through the loaded library: `call!(lib, nrt_init, a, b, c)`.
macro_rules! call {
    ($lib:expr, $name:ident $(, $arg:expr)* $(,)?) => {{
        let f = neuron_sys::nrt_fn!($lib, $name).expect(stringify!($name));
        // SAFETY: arguments follow the C API; tests pass valid pointers or deliberate NULLs.
        unsafe { f($($arg),*) }
    }};
}

/// Whether [`lib`] loads what `NEURON_SYS_LIB` names (the probe, which may be pointed at any
/// libnrt) rather than the mock built from these sources (the tests, always).
pub static USE_ENV_LIBRARY: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The library for this process.
pub fn lib() -> &'static Library {
    if USE_ENV_LIBRARY.load(std::sync::atomic::Ordering::Relaxed) {
        neuron_sys::lib().expect("load libnrt (NEURON_SYS_LIB, or the system's)")
    } else {
        neuron_sys::load_from(neuron_mock::testing::library_path()).expect("load the mock library")
    }
}

static SERIAL: Mutex<()> = Mutex::new(());

/// The runtime is process-wide: tests in one binary take turns.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// An initialised runtime for one test; closes on drop.
pub struct Rt {
    pub lib: &'static Library,
    _turn: MutexGuard<'static, ()>,
}

impl Rt {
    pub fn init() -> Rt {
        Rt::try_init().unwrap_or_else(|(status, why)| panic!("nrt_init: {status}: {why}"))
    }

    /// `nrt_init`, or its status and the library's last error.
    pub fn try_init() -> Result<Rt, (Status, String)> {
        let turn = serial();
        let lib = lib();
        let status = call!(
            lib,
            nrt_init,
            nrt_framework_type_t::NRT_FRAMEWORK_TYPE_NO_FW,
            c"".as_ptr(),
            c"".as_ptr()
        );
        if status != SUCCESS {
            return Err((status, last_error(lib)));
        }
        Ok(Rt { lib, _turn: turn })
    }

    /// Fails the test if anything is still allocated.
    pub fn assert_no_leaks(&self) {
        let live = neuron_mock::testing::live_handles(self.lib).unwrap();
        assert!(live.is_empty(), "leaked: {live:?}");
        for vnc in 0..self.visible() {
            assert_eq!(self.memory(vnc).0, 0, "device bytes in use on core {vnc}");
        }
    }

    pub fn last_error(&self) -> String {
        last_error(self.lib)
    }

    pub fn visible(&self) -> u32 {
        let mut n = 0;
        assert_eq!(call!(self.lib, nrt_get_visible_vnc_count, &mut n), SUCCESS);
        n
    }

    /// (bytes used, bytes limit) of a core.
    pub fn memory(&self, vnc: u32) -> (usize, usize) {
        let mut stats = nrt_vnc_memory_stats_t {
            bytes_used: 0,
            bytes_limit: 0,
        };
        let mut written = 0;
        let status = call!(
            self.lib,
            nrt_get_vnc_memory_stats,
            vnc,
            &mut stats,
            size_of::<nrt_vnc_memory_stats_t>(),
            &mut written
        );
        assert_eq!(status, SUCCESS, "{}", self.last_error());
        assert_eq!(written, size_of::<nrt_vnc_memory_stats_t>());
        (stats.bytes_used, stats.bytes_limit)
    }

    pub fn alloc(
        &self,
        placement: nrt_tensor_placement_t,
        vnc: i32,
        size: usize,
        name: &str,
    ) -> Result<*mut nrt_tensor_t, Status> {
        let name = CString::new(name).unwrap();
        let mut t = null_mut();
        match call!(
            self.lib,
            nrt_tensor_allocate,
            placement,
            vnc,
            size,
            name.as_ptr(),
            &mut t
        ) {
            s if s == SUCCESS => Ok(t),
            s => Err(s),
        }
    }

    pub fn device(&self, size: usize, name: &str) -> *mut nrt_tensor_t {
        self.alloc(DEVICE, 0, size, name)
            .unwrap_or_else(|s| panic!("allocate {name}: {s} {}", self.last_error()))
    }

    /// `nrt_tensor_allocate_slice`.
    pub fn slice(
        &self,
        t: *mut nrt_tensor_t,
        offset: usize,
        size: usize,
        name: &str,
    ) -> Result<*mut nrt_tensor_t, Status> {
        let name = CString::new(name).unwrap();
        let mut s = null_mut();
        match call!(
            self.lib,
            nrt_tensor_allocate_slice,
            t,
            offset,
            size,
            name.as_ptr(),
            &mut s
        ) {
            status if status == SUCCESS => Ok(s),
            status => Err(status),
        }
    }

    pub fn free(&self, mut t: *mut nrt_tensor_t) {
        call!(self.lib, nrt_tensor_free, &mut t);
        assert!(t.is_null(), "nrt_tensor_free nulls the pointer");
    }

    pub fn write(&self, t: *mut nrt_tensor_t, offset: usize, bytes: &[u8]) -> Status {
        call!(
            self.lib,
            nrt_tensor_write,
            t,
            bytes.as_ptr().cast::<c_void>(),
            offset,
            bytes.len()
        )
    }

    pub fn read(
        &self,
        t: *const nrt_tensor_t,
        offset: usize,
        len: usize,
    ) -> Result<Vec<u8>, Status> {
        let mut out = vec![0u8; len];
        match call!(
            self.lib,
            nrt_tensor_read,
            t,
            out.as_mut_ptr().cast::<c_void>(),
            offset,
            len
        ) {
            s if s == SUCCESS => Ok(out),
            s => Err(s),
        }
    }

    pub fn write_f32(&self, t: *mut nrt_tensor_t, values: &[f32]) {
        assert_eq!(
            self.write(t, 0, bytemuck::cast_slice(values)),
            SUCCESS,
            "{}",
            self.last_error()
        );
    }

    pub fn read_f32(&self, t: *const nrt_tensor_t, n: usize) -> Vec<f32> {
        let bytes = self
            .read(t, 0, n * 4)
            .unwrap_or_else(|s| panic!("read: {s}"));
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    /// A device tensor holding `values`.
    pub fn f32_tensor(&self, name: &str, values: &[f32]) -> *mut nrt_tensor_t {
        let t = self.device(values.len() * 4, name);
        self.write_f32(t, values);
        t
    }

    pub fn set(&self) -> *mut nrt_tensor_set_t {
        let mut s = null_mut();
        assert_eq!(call!(self.lib, nrt_allocate_tensor_set, &mut s), SUCCESS);
        s
    }

    pub fn destroy(&self, mut s: *mut nrt_tensor_set_t) {
        call!(self.lib, nrt_destroy_tensor_set, &mut s);
        assert!(s.is_null(), "nrt_destroy_tensor_set nulls the pointer");
    }

    pub fn add(&self, set: *mut nrt_tensor_set_t, name: &str, t: *mut nrt_tensor_t) {
        let name = CString::new(name).unwrap();
        assert_eq!(
            call!(
                self.lib,
                nrt_add_tensor_to_tensor_set,
                set,
                name.as_ptr(),
                t
            ),
            SUCCESS,
            "{}",
            self.last_error()
        );
    }

    pub fn load(&self, neff: &[u8], vnc: i32) -> Result<*mut nrt_model_t, Status> {
        let mut m = null_mut();
        match call!(
            self.lib,
            nrt_load,
            neff.as_ptr().cast::<c_void>(),
            neff.len(),
            vnc,
            -1,
            &mut m
        ) {
            s if s == SUCCESS => Ok(m),
            s => Err(s),
        }
    }

    pub fn load_rank(
        &self,
        neff: &[u8],
        vnc: i32,
        rank: u32,
        world: u32,
    ) -> Result<*mut nrt_model_t, Status> {
        let mut m = null_mut();
        match call!(
            self.lib,
            nrt_load_collectives,
            neff.as_ptr().cast::<c_void>(),
            neff.len(),
            vnc,
            -1,
            rank,
            world,
            &mut m
        ) {
            s if s == SUCCESS => Ok(m),
            s => Err(s),
        }
    }

    pub fn unload(&self, m: *mut nrt_model_t) {
        assert_eq!(
            call!(self.lib, nrt_unload, m),
            SUCCESS,
            "{}",
            self.last_error()
        );
    }

    pub fn execute(
        &self,
        m: *mut nrt_model_t,
        ins: *mut nrt_tensor_set_t,
        outs: *mut nrt_tensor_set_t,
    ) -> Status {
        call!(self.lib, nrt_execute, m, ins, outs)
    }

    /// (name, usage, size, dtype code, shape) of every model tensor.
    pub fn tensor_info(&self, m: *mut nrt_model_t) -> Vec<(String, u32, usize, u32, Vec<u32>)> {
        let mut info: *mut nrt_tensor_info_array_t = null_mut();
        assert_eq!(
            call!(self.lib, nrt_get_model_tensor_info, m, &mut info),
            SUCCESS,
            "{}",
            self.last_error()
        );
        let mut out = Vec::new();
        // SAFETY: the mock returned a valid array of tensor_count entries.
        unsafe {
            let array = &*info;
            for entry in array.tensor_array.as_slice(array.tensor_count as usize) {
                let name = CStr::from_ptr(entry.name.as_ptr())
                    .to_string_lossy()
                    .into_owned();
                let shape = if entry.ndim == 0 {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(entry.shape, entry.ndim as usize).to_vec()
                };
                out.push((name, entry.usage.0, entry.size, entry.dtype.0, shape));
            }
        }
        assert_eq!(call!(self.lib, nrt_free_model_tensor_info, info), SUCCESS);
        out
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        call!(self.lib, nrt_close);
    }
}

pub fn last_error(lib: &Library) -> String {
    neuron_mock::testing::last_error(lib).unwrap_or_default()
}

/// The name of a status, through the library's own nrt_get_status_as_str.
pub fn status_name(lib: &Library, status: Status) -> String {
    let p = call!(lib, nrt_get_status_as_str, status);
    // SAFETY: the library returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// A NEFF computing `c = a + b` over `n` f32s.
pub fn add_neff(n: usize) -> Vec<u8> {
    use neuron_sys::DType;
    neuron_mock::neff::MockNeff::new("add")
        .input("a", DType::F32, &[n])
        .input("b", DType::F32, &[n])
        .output("c", DType::F32, &[n])
        .to_bytes()
        .unwrap()
}

/// A loaded model with its input and output sets and the tensors bound in them.
pub struct Bound {
    pub model: *mut nrt_model_t,
    pub ins: *mut nrt_tensor_set_t,
    pub outs: *mut nrt_tensor_set_t,
    /// Every bound tensor by the name it is bound under (a tensor in both sets appears once).
    pub tensors: Vec<(String, *mut nrt_tensor_t)>,
}

// SAFETY: the pointers are opaque handles of the mock, whose calls may come from any thread.
unsafe impl Send for Bound {}
// SAFETY: as above; the struct is only read.
unsafe impl Sync for Bound {}

impl Bound {
    /// Binds `inputs` and `outputs` (name, tensor) to new sets for `model`.
    pub fn new(
        rt: &Rt,
        model: *mut nrt_model_t,
        inputs: &[(&str, *mut nrt_tensor_t)],
        outputs: &[(&str, *mut nrt_tensor_t)],
    ) -> Bound {
        let (ins, outs) = (rt.set(), rt.set());
        let mut tensors: Vec<(String, *mut nrt_tensor_t)> = Vec::new();
        for (set, list) in [(ins, inputs), (outs, outputs)] {
            for &(name, t) in list {
                rt.add(set, name, t);
                if !tensors.iter().any(|(_, u)| *u == t) {
                    tensors.push((name.to_string(), t));
                }
            }
        }
        Bound {
            model,
            ins,
            outs,
            tensors,
        }
    }

    /// The tensor bound under `name`.
    pub fn t(&self, name: &str) -> *mut nrt_tensor_t {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no tensor bound as {name}"))
            .1
    }

    pub fn run(&self, rt: &Rt) -> Status {
        rt.execute(self.model, self.ins, self.outs)
    }

    /// Frees the tensors, destroys the sets, unloads the model.
    pub fn teardown(self, rt: &Rt) {
        for (_, t) in self.tensors {
            rt.free(t);
        }
        rt.destroy(self.ins);
        rt.destroy(self.outs);
        rt.unload(self.model);
    }
}

/// Executes every bound model once, each from its own thread (the ranks of a world).
pub fn run_parallel(rt: &Rt, bound: &[Bound]) -> Vec<Status> {
    std::thread::scope(|s| {
        let handles: Vec<_> = bound.iter().map(|b| s.spawn(move || b.run(rt))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// The add NEFF over `a.len()` floats, loaded on core 0, with tensors `a`, `b` (holding the
/// values given) and `c` bound.
pub fn add_setup(rt: &Rt, a: &[f32], b: &[f32]) -> Bound {
    let model = rt
        .load(&add_neff(a.len()), 0)
        .unwrap_or_else(|s| panic!("load: {s} {}", rt.last_error()));
    let (ta, tb) = (rt.f32_tensor("a", a), rt.f32_tensor("b", b));
    let tc = rt.device(a.len() * 4, "c");
    Bound::new(rt, model, &[("a", ta), ("b", tb)], &[("c", tc)])
}
