/*
 * nrt_api.h: this project's own declaration of the libnrt C API.
 *
 * Written by the neuron-decode team from the documented facts of the AWS Neuron runtime API
 * (function signatures, enum values and struct layouts as listed in shared/docs/libnrt-api.md).
 * No vendor header text is used here; the vendor headers are not open source.
 *
 * This file is the only input to scripts/gen-bindings.sh, which turns it into
 * neuron-sys/src/bindings.rs. Edit this file, then regenerate; never edit the bindings by hand.
 *
 * All sizes and offsets assume x86_64 Linux (LP64). Every enum is 4 bytes wide with
 * non-negative values; the bindings treat them as integer newtypes because the runtime may
 * return values that are not listed here.
 */
#ifndef NEURON_SYS_NRT_API_H
#define NEURON_SYS_NRT_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Status codes                                                                               */
/* ------------------------------------------------------------------------------------------ */

/** Result of almost every libnrt call. Values 8 and 12 are unused. */
typedef enum NRT_STATUS {
    /** The call succeeded. */
    NRT_SUCCESS = 0,
    /** The call failed and no more specific code applies. */
    NRT_FAILURE = 1,
    /** Bad input: malformed NEFF, or a tensor name or size that does not match the model. */
    NRT_INVALID = 2,
    /** Bad handle (documented as obsolete). */
    NRT_INVALID_HANDLE = 3,
    /** A resource could not be allocated, for example device memory ran out. */
    NRT_RESOURCE = 4,
    /** The operation did not finish in time; also reported for hangs. */
    NRT_TIMEOUT = 5,
    /** The hardware reported an error. */
    NRT_HW_ERROR = 6,
    /** The execution input queue is full. */
    NRT_QUEUE_FULL = 7,
    /** Not enough NeuronCores are available to load the NEFF. */
    NRT_LOAD_NOT_ENOUGH_NC = 9,
    /** The NEFF version or a feature it uses is not supported. */
    NRT_UNSUPPORTED_NEFF_VERSION = 10,
    /** Host memory allocation failed (kept for backward compatibility only). */
    NRT_FAIL_HOST_MEM_ALLOC = 11,
    /** The call was made before nrt_init. */
    NRT_UNINITIALIZED = 13,
    /** The call was made after nrt_close. */
    NRT_CLOSED = 14,
    /** A queue was empty, for example no debug-stream event was waiting. */
    NRT_QUEUE_EMPTY = 15,
    /** An execution unit is in a fatal state; re-initialise or restart the process. */
    NRT_EXEC_UNIT_UNRECOVERABLE = 101,
    /** An execution was given invalid input. */
    NRT_EXEC_BAD_INPUT = 1002,
    /** The execution finished but produced a numerical error (NaN). */
    NRT_EXEC_COMPLETED_WITH_NUM_ERR = 1003,
    /** The execution finished with another logical or physical error. */
    NRT_EXEC_COMPLETED_WITH_ERR = 1004,
    /** The NeuronCore is held by another model or process. */
    NRT_EXEC_NC_BUSY = 1005,
    /** An indirect memory copy or embedding update went out of bounds. */
    NRT_EXEC_OOB = 1006,
    /** A collective operation has not completed yet. */
    NRT_COLL_PENDING = 1100,
    /** An execution hung inside a collective; the root cause may be on another worker. */
    NRT_EXEC_HW_ERR_COLLECTIVES = 1200,
    /** Uncorrectable device memory (HBM) error that cannot be repaired. */
    NRT_EXEC_HW_ERR_HBM_UE = 1201,
    /** Parity error in NeuronCore on-chip memory. */
    NRT_EXEC_HW_ERR_NC_UE = 1202,
    /** Unrecoverable DMA engine error. */
    NRT_EXEC_HW_ERR_DMA_ABORT = 1203,
    /** A software notification queue overflowed. */
    NRT_EXEC_SW_NQ_OVERFLOW = 1204,
    /** Uncorrectable device memory (HBM) error that can be repaired. */
    NRT_EXEC_HW_ERR_REPAIRABLE_HBM_UE = 1205,
    /** An operation of the EFA network proxy failed. */
    NRT_NETWORK_PROXY_FAILURE = 1206
} NRT_STATUS;

/**
 * Returns the name of a status code as a static string owned by the library.
 * The caller must not free it.
 */
const char *nrt_get_status_as_str(NRT_STATUS status);

/* ------------------------------------------------------------------------------------------ */
/* Enumerations                                                                               */
/* ------------------------------------------------------------------------------------------ */

/** Where a tensor's storage lives. */
typedef enum nrt_tensor_placement_t {
    /** Device memory (HBM) of a NeuronCore. */
    NRT_TENSOR_PLACEMENT_DEVICE = 0,
    /** DMA-capable host memory (deprecated by the runtime, at most 4 MB). */
    NRT_TENSOR_PLACEMENT_HOST = 1,
    /** Ordinary host memory; removed in runtime 2.32. Attached buffers report this. */
    NRT_TENSOR_PLACEMENT_VIRTUAL = 2
} nrt_tensor_placement_t;

/** The framework an application reports at nrt_init; used only to label the process. */
typedef enum nrt_framework_type_t {
    /** Not a valid framework. */
    NRT_FRAMEWORK_TYPE_INVALID = 0,
    /** No framework: plain C or Rust applications pass this. */
    NRT_FRAMEWORK_TYPE_NO_FW = 1,
    /** TensorFlow. */
    NRT_FRAMEWORK_TYPE_TENSORFLOW = 2,
    /** PyTorch. */
    NRT_FRAMEWORK_TYPE_PYTORCH = 3,
    /** MXNet. */
    NRT_FRAMEWORK_TYPE_MXNET = 4,
    /** Neuron node precheck (runtime 2.29 and later). */
    NRT_FRAMEWORK_TYPE_PRECHECK = 5
} nrt_framework_type_t;

/** Whether a model tensor is an input or an output. */
typedef enum nrt_tensor_usage_t {
    /** A model input. */
    NRT_TENSOR_USAGE_INPUT = 0,
    /** A model output. */
    NRT_TENSOR_USAGE_OUTPUT = 1
} nrt_tensor_usage_t;

/**
 * Element types, in the encoding of runtime 2.30 and later.
 * Runtimes up to 2.29 use the numbering of nrt_dtype_legacy_t instead; decode by the version
 * that nrt_get_version reports. Only INT32 and UINT32 agree between the two.
 */
typedef enum nrt_dtype_t {
    /** Unknown or invalid element type. */
    NRT_DTYPE_UNKNOWN = 0x0,
    /** 64-bit unsigned integer. */
    NRT_DTYPE_UINT64 = 0x1,
    /** 8-bit signed integer. */
    NRT_DTYPE_INT8 = 0x2,
    /** 8-bit unsigned integer. */
    NRT_DTYPE_UINT8 = 0x3,
    /** 16-bit signed integer. */
    NRT_DTYPE_INT16 = 0x4,
    /** 16-bit unsigned integer. */
    NRT_DTYPE_UINT16 = 0x5,
    /** bfloat16. */
    NRT_DTYPE_BFLOAT16 = 0x6,
    /** IEEE half precision. */
    NRT_DTYPE_FLOAT16 = 0x7,
    /** 32-bit signed integer. */
    NRT_DTYPE_INT32 = 0x8,
    /** 32-bit unsigned integer. */
    NRT_DTYPE_UINT32 = 0x9,
    /** IEEE single precision. */
    NRT_DTYPE_FLOAT32 = 0xA,
    /** Single precision with reduced-precision arithmetic. */
    NRT_DTYPE_FP32R = 0xB,
    /** 64-bit signed integer. */
    NRT_DTYPE_INT64 = 0xC,
    /** 8-bit float, E3 variant. */
    NRT_DTYPE_FP8_E3 = 0xD,
    /** 8-bit float, E4 variant. */
    NRT_DTYPE_FP8_E4 = 0xE,
    /** 8-bit float, E5 variant. */
    NRT_DTYPE_FP8_E5 = 0xF
} nrt_dtype_t;

/**
 * Element types in the encoding of runtimes up to 2.29.
 * Not a vendor declaration: this project names the older numbering so that both can be decoded.
 */
typedef enum nrt_dtype_legacy_t {
    /** Unknown element type. */
    NRT_DTYPE_LEGACY_UNKNOWN = 0,
    /** IEEE single precision. */
    NRT_DTYPE_LEGACY_FLOAT32 = 1,
    /** IEEE half precision. */
    NRT_DTYPE_LEGACY_FLOAT16 = 2,
    /** bfloat16. */
    NRT_DTYPE_LEGACY_BFLOAT16 = 3,
    /** 8-bit signed integer. */
    NRT_DTYPE_LEGACY_INT8 = 4,
    /** 8-bit unsigned integer. */
    NRT_DTYPE_LEGACY_UINT8 = 5,
    /** 16-bit signed integer. */
    NRT_DTYPE_LEGACY_INT16 = 6,
    /** 16-bit unsigned integer. */
    NRT_DTYPE_LEGACY_UINT16 = 7,
    /** 32-bit signed integer. */
    NRT_DTYPE_LEGACY_INT32 = 8,
    /** 32-bit unsigned integer. */
    NRT_DTYPE_LEGACY_UINT32 = 9,
    /** 64-bit signed integer. */
    NRT_DTYPE_LEGACY_INT64 = 10,
    /** 64-bit unsigned integer. */
    NRT_DTYPE_LEGACY_UINT64 = 11
} nrt_dtype_legacy_t;

/**
 * Instance family codes stored in nrt_instance_info_t.family.
 * (Anonymous in the vendor API; named here so that the bindings get a newtype.)
 */
typedef enum nrt_instance_family_t {
    /** Unknown family. */
    NRT_INSTANCE_UNKNOWN = 0,
    /** Inf1. */
    NRT_INSTANCE_INF1 = 1,
    /** Trn1. */
    NRT_INSTANCE_TRN1 = 2,
    /** Trn1n. */
    NRT_INSTANCE_TRN1N = 3,
    /** Inf2. */
    NRT_INSTANCE_INF2 = 4,
    /** Trn2. */
    NRT_INSTANCE_TRN2 = 5,
    /** Trn2n. */
    NRT_INSTANCE_TRN2N = 6,
    /** Inf2e. */
    NRT_INSTANCE_INF2E = 7,
    /** Trn2p. */
    NRT_INSTANCE_TRN2P = 8,
    /** Trn2u. */
    NRT_INSTANCE_TRN2U = 9,
    /** Trn2e. */
    NRT_INSTANCE_TRN2E = 10,
    /** Trn2eu. */
    NRT_INSTANCE_TRN2EU = 11,
    /** Trn2ac. */
    NRT_INSTANCE_TRN2AC = 12,
    /** Trn2uac. */
    NRT_INSTANCE_TRN2UAC = 13,
    /** Trn3. */
    NRT_INSTANCE_TRN3 = 14,
    /** Trn3 PDS98. */
    NRT_INSTANCE_TRN3PDS98 = 15
} nrt_instance_family_t;

/**
 * Instance size codes stored in nrt_instance_info_t.size.
 * New sizes are inserted before UNKNOWN, so UNKNOWN's value may grow in later runtimes.
 */
typedef enum nrt_instance_size_t {
    /** xlarge. */
    NRT_INSTANCE_SIZE_1XL = 0,
    /** 2xlarge. */
    NRT_INSTANCE_SIZE_2XL = 1,
    /** 4xlarge. */
    NRT_INSTANCE_SIZE_4XL = 2,
    /** 6xlarge. */
    NRT_INSTANCE_SIZE_6XL = 3,
    /** 8xlarge. */
    NRT_INSTANCE_SIZE_8XL = 4,
    /** 24xlarge. */
    NRT_INSTANCE_SIZE_24XL = 5,
    /** 32xlarge. */
    NRT_INSTANCE_SIZE_32XL = 6,
    /** 48xlarge. */
    NRT_INSTANCE_SIZE_48XL = 7,
    /** 3xlarge. */
    NRT_INSTANCE_SIZE_3XL = 8,
    /** Unknown size (as of runtime 2.30). */
    NRT_INSTANCE_SIZE_UNKNOWN = 9
} nrt_instance_size_t;

/* ------------------------------------------------------------------------------------------ */
/* Opaque handles and structures                                                              */
/* ------------------------------------------------------------------------------------------ */

/** A loaded model (NEFF). Opaque; created by nrt_load, released by nrt_unload. */
typedef struct nrt_model nrt_model_t;

/** A tensor. Opaque; created by the nrt_tensor_allocate family, released by nrt_tensor_free. */
typedef struct nrt_tensor nrt_tensor_t;

/** A map from tensor names to tensors. It never owns the tensors it refers to. */
typedef void nrt_tensor_set_t;

/** Length of the detail string in nrt_version_t. */
#define RT_VERSION_DETAIL_LEN 128
/** Length of the git hash string in nrt_version_t. */
#define GIT_HASH_LEN 64

/** Runtime library version (224 bytes). */
typedef struct nrt_version {
    /** Major version (2 for every released runtime so far). */
    uint64_t rt_major;
    /** Minor version; 30 and above use the current dtype encoding. */
    uint64_t rt_minor;
    /** Patch version. */
    uint64_t rt_patch;
    /** Maintenance version. */
    uint64_t rt_maintenance;
    /** Free-form version detail, NUL-terminated. */
    char rt_detail[RT_VERSION_DETAIL_LEN];
    /** Git hash of the build, NUL-terminated. */
    char git_hash[GIT_HASH_LEN];
} nrt_version_t;

/**
 * Instance description (32 bytes since runtime 2.30; older runtimes know only the first 8).
 * nrt_get_instance_info copies no more than the length the caller passes.
 */
typedef struct nrt_instance_info {
    /** An nrt_instance_family_t code. */
    uint32_t family;
    /** An nrt_instance_size_t code. */
    uint32_t size;
    /** Architecture name, NUL-terminated. */
    char arch_name[16];
    /** Device revision, NUL-terminated. */
    char device_revision[8];
} nrt_instance_info_t;

/** Longest tensor name, including the terminating NUL. */
#define NRT_TENSOR_NAME_MAX 256

/** Description of one model input or output (296 bytes). */
typedef struct nrt_tensor_info {
    /** Tensor name, NUL-terminated; the key to use in tensor sets. */
    char name[NRT_TENSOR_NAME_MAX];
    /** Input or output. */
    nrt_tensor_usage_t usage;
    /** Size in bytes. */
    size_t size;
    /** Element type, in the encoding of the loaded runtime's version. */
    nrt_dtype_t dtype;
    /** ndim dimensions, owned by the enclosing array. */
    uint32_t *shape;
    /** Number of dimensions. */
    uint32_t ndim;
} nrt_tensor_info_t;

/** Array of tensor descriptions returned by nrt_get_model_tensor_info. */
typedef struct nrt_tensor_info_array {
    /** Number of entries that follow. */
    uint64_t tensor_count;
    /** The entries: inputs and outputs together; filter on usage. */
    nrt_tensor_info_t tensor_array[];
} nrt_tensor_info_array_t;

/** Model placement information; fields may be appended in later runtimes. */
typedef struct nrt_model_info {
    /** The first logical NeuronCore the model occupies. */
    uint32_t vnc;
} nrt_model_info_t;

/** Device memory use of one logical NeuronCore; fields may be appended in later runtimes. */
typedef struct nrt_vnc_memory_stats {
    /** Bytes of device memory in use. */
    size_t bytes_used;
    /** Bytes of device memory available to the core in total. */
    size_t bytes_limit;
} nrt_vnc_memory_stats_t;

/* ------------------------------------------------------------------------------------------ */
/* Runtime lifecycle and topology                                                             */
/* ------------------------------------------------------------------------------------------ */

/**
 * Initialises the runtime and reserves the visible NeuronCores for this process.
 * Applications without a framework pass NRT_FRAMEWORK_TYPE_NO_FW and two empty strings.
 * Reads NEURON_RT_VISIBLE_CORES, NEURON_RT_NUM_CORES and the other NEURON_RT_* variables.
 */
NRT_STATUS nrt_init(nrt_framework_type_t framework, const char *fw_version,
                    const char *fal_version);

/** Releases the NeuronCores and tears down runtime state. Unload every model first. */
void nrt_close(void);

/** Total NeuronCores on the instance (deprecated name of nrt_get_total_vnc_count). */
NRT_STATUS nrt_get_total_nc_count(uint32_t *nc_count);

/** Total logical NeuronCores on the instance, ignoring visibility settings. Works before init. */
NRT_STATUS nrt_get_total_vnc_count(uint32_t *vnc_count);

/** NeuronCores this process may use (deprecated name of nrt_get_visible_vnc_count). */
NRT_STATUS nrt_get_visible_nc_count(uint32_t *nc_count);

/** Logical NeuronCores this process may use after NEURON_RT_VISIBLE_CORES / NUM_CORES. */
NRT_STATUS nrt_get_visible_vnc_count(uint32_t *vnc_count);

/** Fills at most instance_info_len bytes of *info; pass sizeof(nrt_instance_info_t). */
NRT_STATUS nrt_get_instance_info(nrt_instance_info_t *info, size_t instance_info_len);

/** Fills at most size bytes of *ver; pass sizeof(nrt_version_t). Works before init. */
NRT_STATUS nrt_get_version(nrt_version_t *ver, size_t size);

/**
 * Device memory statistics of logical core vnc. stats_size_in is the caller's struct size;
 * the library writes the number of bytes it filled into *stats_size_out.
 */
NRT_STATUS nrt_get_vnc_memory_stats(uint32_t vnc, nrt_vnc_memory_stats_t *stats,
                                    size_t stats_size_in, size_t *stats_size_out);

/* ------------------------------------------------------------------------------------------ */
/* Models                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/**
 * Parses, validates and loads a NEFF held in memory onto logical core vnc (relative to the
 * visible cores; -1 picks the first free core). vnc_count is deprecated: pass -1.
 * The library does not keep a reference to neff_bytes.
 */
NRT_STATUS nrt_load(const void *neff_bytes, size_t size, int32_t vnc, int32_t vnc_count,
                    nrt_model_t **model);

/**
 * Like nrt_load, for NEFFs that contain collective operations: loads this process's copy as
 * rank ctx_device_id of a world of ctx_device_count ranks.
 */
NRT_STATUS nrt_load_collectives(const void *neff_bytes, size_t size, int32_t vnc,
                                int32_t vnc_count, uint32_t ctx_device_id,
                                uint32_t ctx_device_count, nrt_model_t **model);

/** Releases a model's device and host resources. The handle is dead afterwards. */
NRT_STATUS nrt_unload(nrt_model_t *model);

/** Number of NeuronCores the model occupies (deprecated name). */
NRT_STATUS nrt_get_model_nc_count(const nrt_model_t *model, uint32_t *nc_count);

/** Number of logical NeuronCores the model occupies (runtime 2.29 and later). */
NRT_STATUS nrt_get_model_vnc_count(const nrt_model_t *model, uint32_t *vnc_count);

/** Creates the global collectives communicator before loading NEFFs with sub-worlds. */
NRT_STATUS nrt_build_global_comm(int32_t vnc, uint32_t g_device_id, uint32_t g_device_count);

/* ------------------------------------------------------------------------------------------ */
/* Tensor sets                                                                                */
/* ------------------------------------------------------------------------------------------ */

/** Creates an empty tensor set. */
NRT_STATUS nrt_allocate_tensor_set(nrt_tensor_set_t **result);

/** Frees a tensor set (not its tensors) and writes NULL into *tensor_set. */
void nrt_destroy_tensor_set(nrt_tensor_set_t **tensor_set);

/** Inserts or replaces the entry for tensor_name; the name is copied. */
NRT_STATUS nrt_add_tensor_to_tensor_set(nrt_tensor_set_t *tensor_set, const char *tensor_name,
                                        nrt_tensor_t *tensor);

/** Looks up tensor_name; NRT_FAILURE (and *tensor untouched) when it is not in the set. */
NRT_STATUS nrt_get_tensor_from_tensor_set(nrt_tensor_set_t *tensor_set,
                                          const char *tensor_name, nrt_tensor_t **tensor);

/* ------------------------------------------------------------------------------------------ */
/* Execution                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/**
 * Runs the model once. Inputs and outputs are matched by set key against the model's tensor
 * names. Several threads may execute the same model; the runtime pipelines them.
 */
NRT_STATUS nrt_execute(nrt_model_t *model, const nrt_tensor_set_t *input_set,
                       nrt_tensor_set_t *output_set);

/** Runs the model repeat_count times, each run consuming the previous run's outputs. */
NRT_STATUS nrt_execute_repeat(nrt_model_t *model, const nrt_tensor_set_t *input_set,
                              nrt_tensor_set_t *output_set, int repeat_count);

/* ------------------------------------------------------------------------------------------ */
/* Tensors                                                                                    */
/* ------------------------------------------------------------------------------------------ */

/**
 * Allocates size bytes on logical core vnc (relative to the visible cores; -1 for host
 * placement). name is optional and only used in logs. NRT_RESOURCE when memory runs out.
 */
NRT_STATUS nrt_tensor_allocate(nrt_tensor_placement_t tensor_placement, int vnc, size_t size,
                               const char *name, nrt_tensor_t **tensor);

/** Frees a tensor and writes NULL into *tensor. Attached caller buffers are left alone. */
void nrt_tensor_free(nrt_tensor_t **tensor);

/** Copies bytes [offset, offset + size) of the tensor into buf. */
NRT_STATUS nrt_tensor_read(const nrt_tensor_t *tensor, void *buf, size_t offset, size_t size);

/** Copies size bytes from buf into the tensor, starting at offset. */
NRT_STATUS nrt_tensor_write(nrt_tensor_t *tensor, const void *buf, size_t offset, size_t size);

/**
 * Copies size bytes between tensors. Two device tensors must live on the same NeuronCore,
 * otherwise NRT_INVALID.
 */
NRT_STATUS nrt_tensor_copy(const nrt_tensor_t *src, size_t src_offset, nrt_tensor_t *dst,
                           size_t dst_offset, size_t size);

/** Size of the tensor in bytes, returned directly. */
size_t nrt_tensor_get_size(const nrt_tensor_t *tensor);

/** Sets size bytes starting at offset to the byte value. */
NRT_STATUS nrt_tensor_memset(nrt_tensor_t *tensor, uint64_t offset, int value, size_t size);

/** Creates a tensor without storage, to be given a buffer with nrt_tensor_attach_buffer. */
NRT_STATUS nrt_tensor_allocate_empty(const char *name, nrt_tensor_t **tensor);

/**
 * Makes the tensor use caller memory of size bytes; storage it owned before is released.
 * The library never takes ownership: the buffer must outlive the tensor.
 */
NRT_STATUS nrt_tensor_attach_buffer(nrt_tensor_t *tensor, void *buffer, size_t size);

/** Creates a zero-copy view of size bytes at offset, sharing the source's storage. */
NRT_STATUS nrt_tensor_allocate_slice(const nrt_tensor_t *tensor_source, size_t offset,
                                     size_t size, const char *name,
                                     nrt_tensor_t **tensor_slice);

/** Virtual address of the tensor's storage, or NULL. */
void *nrt_tensor_get_va(const nrt_tensor_t *tensor);

/* ------------------------------------------------------------------------------------------ */
/* Experimental: model tensor information and host-driven collectives                        */
/* ------------------------------------------------------------------------------------------ */

/**
 * Allocates a description of every model input and output. Free it with
 * nrt_free_model_tensor_info, exactly once.
 */
NRT_STATUS nrt_get_model_tensor_info(nrt_model_t *model, nrt_tensor_info_array_t **tensor_info);

/** Frees an array returned by nrt_get_model_tensor_info. */
NRT_STATUS nrt_free_model_tensor_info(nrt_tensor_info_array_t *tensor_info);

/**
 * Fills the model's placement information; info_size_in is the caller's struct size and the
 * library writes the number of bytes it filled into *info_size_out.
 */
NRT_STATUS nrt_get_model_info(const nrt_model_t *model, nrt_model_info_t *info,
                              size_t info_size_in, size_t *info_size_out);

/** Blocks until every rank of the world (g_device_count ranks) has reached the barrier. */
NRT_STATUS nrt_barrier(int32_t vnc, uint32_t g_device_id, uint32_t g_device_count);

/**
 * Gathers rank_input_size bytes of input from every rank into output, which holds
 * g_device_count * rank_input_size bytes, in rank order.
 */
NRT_STATUS nrt_all_gather(int32_t vnc, uint32_t g_device_id, uint32_t g_device_count,
                          uint32_t rank_input_size, void *input, void *output);

#ifdef __cplusplus
}
#endif

#endif /* NEURON_SYS_NRT_API_H */
