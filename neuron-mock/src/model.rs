//! Loaded models: NEFF loading, tensor information, and execution.
//!
//! Loading does all the work that depends only on the NEFF: parsing, checking, building the
//! kernel. Executing resolves the input and output sets to byte ranges ("a plan"), which is
//! cached per model and reused while the sets and the tensors in them are unchanged, so the
//! per-execution cost is a few lock acquisitions and one version check per bound tensor.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use neuron_sys::DTypeEncoding;
use neuron_sys::bindings::{NRT_STATUS, nrt_tensor_usage_t};

use crate::collectives::{Communicator, Rendezvous, WorldKey, Worlds};
use crate::kernels::{self, BuildCtx, ExecCtx, Kernel};
use crate::memory::{AliasError, Binding, Bindings};
use crate::neff::{self, NeffError, TensorSpec, Usage};
use crate::runtime::{DeviceCharge, Fail, NrtResult, Runtime, lock, next_id};
use crate::tensor::Tensor;
use crate::tensor_set::TensorSet;

/// Which world a model belongs to, when loaded with `nrt_load_collectives`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RankRequest {
    pub(crate) rank: u32,
    pub(crate) world_size: u32,
}

struct Membership {
    comm: Arc<Rendezvous>,
    rank: usize,
    worlds: Arc<Mutex<Worlds>>,
}

/// A loaded model.
pub(crate) struct Model {
    pub(crate) id: u64,
    pub(crate) name: String,
    /// API core index of the (first) core it occupies.
    pub(crate) core: u32,
    pub(crate) core_count: u32,
    /// All tensors in NEFF order (for tensor info), then split by usage.
    tensors: Vec<TensorSpec>,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    kernel: Box<dyn Kernel>,
    membership: Option<Membership>,
    exec_timeout: Duration,
    _charge: DeviceCharge,
    plan: Mutex<Option<Arc<Plan>>>,
}

impl Drop for Model {
    fn drop(&mut self) {
        if let Some(m) = &self.membership {
            lock(&m.worlds).leave(&m.comm, m.rank);
        }
    }
}

/// One tensor description for `nrt_get_model_tensor_info`.
pub(crate) struct InfoEntry<'a> {
    pub(crate) name: &'a str,
    pub(crate) usage: nrt_tensor_usage_t,
    pub(crate) size: usize,
    pub(crate) dtype: u32,
    pub(crate) shape: Vec<u32>,
}

fn neff_status(error: &NeffError) -> NRT_STATUS {
    match error {
        NeffError::UnsupportedVersion { .. }
        | NeffError::UnsupportedFeatures { .. }
        | NeffError::CompiledNeff { .. } => NRT_STATUS::NRT_UNSUPPORTED_NEFF_VERSION,
        _ => NRT_STATUS::NRT_INVALID,
    }
}

impl Model {
    /// `nrt_load` / `nrt_load_collectives`.
    pub(crate) fn load(
        rt: &Runtime,
        bytes: &[u8],
        vnc: i32,
        vnc_count: i32,
        world: Option<RankRequest>,
    ) -> NrtResult<Model> {
        if let Some((number, status)) = rt.faults.next_load() {
            return Err(Fail::new(
                status,
                format!("fault injected by NEURON_MOCK_FAULTS: load {number} fails"),
            ));
        }
        let parsed = neff::parse(bytes).map_err(|e| {
            Fail::new(
                neff_status(&e),
                format!("cannot load NEFF ({} bytes): {e}", bytes.len()),
            )
        })?;
        if rt.config.validate_hash {
            parsed
                .verify_hash()
                .map_err(|e| Fail::invalid(e.to_string()))?;
        }
        let name = if parsed.header.name.is_empty() {
            parsed.program.kernel.clone()
        } else {
            parsed.header.name.clone()
        };
        let lnc = rt.config.topology.lnc;
        if parsed.header.lnc_size != 0 && parsed.header.lnc_size != lnc {
            return Err(Fail::invalid(format!(
                "NEFF '{name}': LNC mismatch: compiled for logical core size {}, the runtime uses \
                 {lnc} (NEURON_LOGICAL_NC_CONFIG)",
                parsed.header.lnc_size
            )));
        }
        let (core, core_count) = choose_cores(rt, vnc, vnc_count, &name)?;
        let (rank, world_size) = match world {
            None => (0, 1),
            Some(w) if w.world_size == 0 || w.rank >= w.world_size => {
                return Err(Fail::invalid(format!(
                    "NEFF '{name}': rank {} is not in a world of {} ranks",
                    w.rank, w.world_size
                )));
            }
            Some(w) => (w.rank as usize, w.world_size as usize),
        };
        let program = &parsed.program;
        let inputs: Vec<TensorSpec> = program.inputs().cloned().collect();
        let outputs: Vec<TensorSpec> = program.outputs().cloned().collect();
        let build = BuildCtx::new(
            &program.kernel,
            &program.params,
            &inputs,
            &outputs,
            &parsed.files,
            rank,
            world_size,
        );
        let kernel = kernels::build(&program.kernel, &build)
            .map_err(|e| Fail::new(e.status(), format!("NEFF '{name}': {e}")))?;
        let memory = rt.core(i64::from(core))?;
        let charge = memory.charge(bytes.len() as u64).ok_or_else(|| {
            Fail::new(
                NRT_STATUS::NRT_RESOURCE,
                format!(
                    "NEFF '{name}': not enough device memory on NeuronCore {core} to load {} bytes \
                     ({} of {} in use)",
                    bytes.len(),
                    memory.used(),
                    memory.limit
                ),
            )
        })?;
        // NEURON_RT_EXEC_TIMEOUT is read at load, as the real runtime does.
        let exec_timeout =
            crate::config::exec_timeout().map_err(|m| Fail::new(NRT_STATUS::NRT_FAILURE, m))?;
        let membership = world.map(|_| {
            let mut hasher = DefaultHasher::new();
            bytes.hash(&mut hasher);
            let key = WorldKey {
                neff: hasher.finish(),
                size: world_size,
            };
            Membership {
                comm: lock(&rt.worlds).join(key, rank),
                rank,
                worlds: rt.worlds.clone(),
            }
        });
        log!(
            Info,
            "nrt_load",
            "loaded '{name}' (kernel {}) on NeuronCore {core}{}",
            program.kernel,
            world.map_or_else(String::new, |w| format!(
                " as rank {} of {}",
                w.rank, w.world_size
            ))
        );
        Ok(Model {
            id: next_id(),
            name,
            core,
            core_count,
            tensors: program.tensors.clone(),
            inputs,
            outputs,
            kernel,
            membership,
            exec_timeout,
            _charge: charge,
            plan: Mutex::new(None),
        })
    }

    /// The model's tensors as `nrt_get_model_tensor_info` reports them, dtypes in `encoding`.
    pub(crate) fn tensor_info(&self, encoding: DTypeEncoding) -> Vec<InfoEntry<'_>> {
        self.tensors
            .iter()
            .map(|t| InfoEntry {
                name: &t.name,
                usage: match t.usage {
                    Usage::Input => nrt_tensor_usage_t::NRT_TENSOR_USAGE_INPUT,
                    Usage::Output => nrt_tensor_usage_t::NRT_TENSOR_USAGE_OUTPUT,
                },
                size: t.size_bytes(),
                // A dtype the legacy numbering lacks (fp8, fp32r) is reported as UNKNOWN (0).
                dtype: encoding.encode(t.dtype).unwrap_or(0),
                shape: t.shape.iter().map(|&d| d as u32).collect(),
            })
            .collect()
    }

    /// `nrt_execute` (`repeat` = 1) and `nrt_execute_repeat`.
    pub(crate) fn execute(
        &self,
        rt: &Runtime,
        inputs: &TensorSet,
        outputs: &TensorSet,
        repeat: usize,
    ) -> NrtResult<()> {
        let plan = self.plan(rt, inputs, outputs)?;
        let fault = rt.faults.next_execution();
        if let Some(delay) = fault.delay {
            std::thread::sleep(delay);
        }
        if let Some(status) = fault.fail {
            return Err(Fail::new(
                status,
                format!(
                    "model '{}': fault injected by NEURON_MOCK_FAULTS: execution {} fails with {status}",
                    self.name, fault.number
                ),
            ));
        }
        let started = Instant::now();
        let locked = plan
            .bindings
            .lock(started + self.exec_timeout)
            .map_err(|j| {
                Fail::new(
                    NRT_STATUS::NRT_TIMEOUT,
                    format!(
                        "model '{}': output '{}' stayed in use by another execution for {:?} \
                     (NEURON_RT_EXEC_TIMEOUT)",
                        self.name, self.outputs[j].name, self.exec_timeout
                    ),
                )
            })?;
        // A world of one rank (a model loaded with `nrt_load_collectives` for one core, as
        // `neuron-rt`'s model groups load every model) has no one to wait for: its collectives
        // are the identity, and it runs as a model loaded alone.
        let world = self.membership.as_ref().filter(|m| m.comm.size() > 1);
        for _ in 0..repeat {
            let deadline = Instant::now() + self.exec_timeout;
            let comm = match world {
                Some(m) => Communicator::new(&m.comm, m.rank, deadline),
                None => Communicator::single(),
            };
            let ctx = ExecCtx::new(&self.inputs, &self.outputs, locked.views(), comm);
            let run = || self.kernel.run(&ctx);
            let result = if world.is_none() {
                // On a thread of the pool, a kernel's parallel products run partly on that
                // thread and wake only the other workers; from this (the client's) thread each
                // would hand all its work over and sleep until it is done. A SmolLM2-135M
                // verify pass is 7-8% faster so (`cargo bench -p neuron-mock --bench
                // forward`). Ranks of a collective world stay on their own threads: each blocks
                // in its collectives, and blocked pool threads could leave a rank none to run on.
                rayon::scope(|_| run())
            } else {
                run()
            };
            result.map_err(|e| {
                Fail::new(
                    e.status(),
                    format!("model '{}': execution failed: {e}", self.name),
                )
            })?;
        }
        Ok(())
    }

    /// The cached plan if the sets and their tensors are unchanged, else a new one.
    fn plan(&self, rt: &Runtime, inputs: &TensorSet, outputs: &TensorSet) -> NrtResult<Arc<Plan>> {
        let key = PlanKey {
            inputs: (inputs.id, inputs.version()),
            outputs: (outputs.id, outputs.version()),
        };
        // Read before the versions are checked: a change after this forces a check next time.
        let mutations = crate::tensor::mutations();
        let mut cached = lock(&self.plan);
        if let Some(plan) = cached.as_ref()
            && plan.key == key
            && (plan.checked_at.load(Ordering::Relaxed) == mutations
                || plan.tensors.iter().all(|(t, v)| t.version() == *v))
        {
            plan.checked_at.store(mutations, Ordering::Relaxed);
            return Ok(plan.clone());
        }
        let plan = Arc::new(self.build_plan(rt, key, mutations, inputs, outputs)?);
        *cached = Some(plan.clone());
        Ok(plan)
    }

    fn build_plan(
        &self,
        rt: &Runtime,
        key: PlanKey,
        mutations: u64,
        inputs: &TensorSet,
        outputs: &TensorSet,
    ) -> NrtResult<Plan> {
        let mut tensors = Vec::with_capacity(self.inputs.len() + self.outputs.len());
        let mut bind = |specs: &[TensorSpec], set: &TensorSet, which: &str| {
            let ids = set.get_all(specs.iter().map(|s| s.name.as_str()));
            let mut bound = Vec::with_capacity(specs.len());
            for (spec, id) in specs.iter().zip(ids) {
                let problem = |why: String| {
                    Fail::invalid(format!(
                        "model '{}': {which} '{}' ({} {:?}, {} bytes) {why}",
                        self.name,
                        spec.name,
                        spec.dtype,
                        spec.shape,
                        spec.size_bytes()
                    ))
                };
                let Some(id) = id else {
                    return Err(problem(format!(
                        "is missing from the {which} set (it has: {})",
                        list(&set.names())
                    )));
                };
                let tensor = rt
                    .tensors
                    .by_id(id)
                    .ok_or_else(|| problem("is bound to a tensor that was freed".into()))?;
                let version = tensor.version();
                let binding = tensor.binding(spec.size_bytes()).map_err(|why| {
                    problem(format!(
                        "is bound to tensor {}, which {why}",
                        tensor.label()
                    ))
                })?;
                tensors.push((tensor, version));
                bound.push(binding);
            }
            Ok::<Vec<Binding>, Fail>(bound)
        };
        let in_bindings = bind(&self.inputs, inputs, "input")?;
        let out_bindings = bind(&self.outputs, outputs, "output")?;
        let bindings = Bindings::new(in_bindings, out_bindings).map_err(|e| {
            Fail::invalid(match e {
                AliasError::OutputsOverlap(a, b) => format!(
                    "model '{}': outputs '{}' and '{}' are bound to overlapping memory",
                    self.name, self.outputs[a].name, self.outputs[b].name
                ),
                AliasError::PartialOverlap { input, output } => format!(
                    "model '{}': input '{}' partly overlaps output '{}'; to update a tensor in \
                     place bind the same tensor to both",
                    self.name, self.inputs[input].name, self.outputs[output].name
                ),
            })
        })?;
        Ok(Plan {
            key,
            tensors,
            checked_at: AtomicU64::new(mutations),
            bindings,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PlanKey {
    /// (set id, set version)
    inputs: (u64, u64),
    outputs: (u64, u64),
}

/// How one pair of sets binds a model's tensors.
struct Plan {
    key: PlanKey,
    /// Every bound tensor and its version when the plan was made.
    tensors: Vec<(Arc<Tensor>, u64)>,
    /// The count of tensor changes (`tensor::mutations`) when the versions last matched.
    checked_at: AtomicU64,
    bindings: Bindings,
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "nothing".into();
    }
    let shown: Vec<String> = names.iter().take(20).map(|n| format!("'{n}'")).collect();
    let more = names.len().saturating_sub(20);
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Picks the core(s) for a load: `vnc` -1 is the visible core with the fewest models.
fn choose_cores(rt: &Runtime, vnc: i32, vnc_count: i32, name: &str) -> NrtResult<(u32, u32)> {
    let visible = rt.cores.len() as i64;
    let count = i64::from(vnc_count.max(1));
    let first = if vnc == -1 {
        let counts = rt.models_per_core();
        counts
            .iter()
            .enumerate()
            .min_by_key(|&(i, c)| (*c, i))
            .map_or(0, |(i, _)| i as i64)
    } else {
        i64::from(vnc)
    };
    if first < 0 || first + count > visible {
        return Err(Fail::new(
            NRT_STATUS::NRT_LOAD_NOT_ENOUGH_NC,
            format!(
                "NEFF '{name}': cannot load on NeuronCore {vnc} (count {vnc_count}): {visible} \
                 NeuronCores are visible (0-{})",
                visible - 1
            ),
        ));
    }
    Ok((first as u32, count as u32))
}
