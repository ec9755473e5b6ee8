/*
 * run_neff.c: the documented libnrt flow in plain C, against the project's clean-room header.
 * Built and run by neuron-mock/tests/c_abi.rs against the installed mock (-lnrt).
 *
 *   run_neff NEFF_FILE
 *
 * The NEFF computes c = a + b over f32 vectors; this program fills a and b, executes, and
 * checks every element of c. Prints "OK" and exits 0 on success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nrt_api.h"

#define CHECK(call)                                                                       \
    do {                                                                                  \
        NRT_STATUS status_ = (call);                                                      \
        if (status_ != NRT_SUCCESS) {                                                     \
            fprintf(stderr, "%s:%d: %s failed: %s (%d)\n", __FILE__, __LINE__, #call,     \
                    nrt_get_status_as_str(status_), (int)status_);                        \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

#define EXPECT(cond)                                                                      \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);           \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)

static void *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc((size_t)len);
    EXPECT(buf && fread(buf, 1, (size_t)len, f) == (size_t)len);
    fclose(f);
    *size = (size_t)len;
    return buf;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s NEFF_FILE\n", argv[0]);
        return 2;
    }

    /* Before init: version and core counts work, everything else does not. */
    nrt_version_t version;
    CHECK(nrt_get_version(&version, sizeof(version)));
    EXPECT(version.rt_major == 2);
    uint32_t cores = 0;
    CHECK(nrt_get_total_vnc_count(&cores));
    EXPECT(cores == 2);
    nrt_tensor_t *early = NULL;
    EXPECT(nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, 4, "x", &early) == NRT_UNINITIALIZED);

    CHECK(nrt_init(NRT_FRAMEWORK_TYPE_NO_FW, "", ""));

    size_t neff_size = 0;
    void *neff = read_file(argv[1], &neff_size);
    nrt_model_t *model = NULL;
    CHECK(nrt_load(neff, neff_size, 0, -1, &model));
    free(neff); /* the runtime keeps no reference to the bytes */

    nrt_tensor_info_array_t *info = NULL;
    CHECK(nrt_get_model_tensor_info(model, &info));
    EXPECT(info->tensor_count == 3);

    nrt_tensor_set_t *inputs = NULL, *outputs = NULL;
    CHECK(nrt_allocate_tensor_set(&inputs));
    CHECK(nrt_allocate_tensor_set(&outputs));
    nrt_tensor_t *tensors[3] = {NULL, NULL, NULL};
    size_t elements = 0;
    for (uint64_t i = 0; i < info->tensor_count; i++) {
        const nrt_tensor_info_t *t = &info->tensor_array[i];
        /* Runtime 2.30+ numbering (the mock reports 2.31 by default). */
        EXPECT(t->dtype == NRT_DTYPE_FLOAT32);
        EXPECT(t->ndim == 1);
        elements = t->shape[0];
        EXPECT(t->size == elements * sizeof(float));
        CHECK(nrt_tensor_allocate(NRT_TENSOR_PLACEMENT_DEVICE, 0, t->size, t->name, &tensors[i]));
        if (t->usage == NRT_TENSOR_USAGE_INPUT) {
            float *values = malloc(t->size);
            for (size_t j = 0; j < elements; j++) {
                values[j] = (float)(i + 1) * (float)j; /* a = j, b = 2j */
            }
            CHECK(nrt_tensor_write(tensors[i], values, 0, t->size));
            free(values);
            CHECK(nrt_add_tensor_to_tensor_set(inputs, t->name, tensors[i]));
        } else {
            CHECK(nrt_add_tensor_to_tensor_set(outputs, t->name, tensors[i]));
        }
    }

    CHECK(nrt_execute(model, inputs, outputs));

    nrt_tensor_t *result = NULL;
    CHECK(nrt_get_tensor_from_tensor_set(outputs, "c", &result));
    EXPECT(nrt_tensor_get_size(result) == elements * sizeof(float));
    float *c = malloc(elements * sizeof(float));
    CHECK(nrt_tensor_read(result, c, 0, elements * sizeof(float)));
    for (size_t j = 0; j < elements; j++) {
        if (c[j] != 3.0f * (float)j) {
            fprintf(stderr, "c[%zu] = %f, expected %f\n", j, c[j], 3.0f * (float)j);
            return 1;
        }
    }
    free(c);

    /* Out-of-bounds reads are refused, not performed. */
    float spare[2];
    EXPECT(nrt_tensor_read(result, spare, elements * sizeof(float), sizeof(spare)) == NRT_INVALID);

    nrt_vnc_memory_stats_t stats;
    size_t written = 0;
    CHECK(nrt_get_vnc_memory_stats(0, &stats, sizeof(stats), &written));
    EXPECT(stats.bytes_used > 0 && written == sizeof(stats));

    for (int i = 0; i < 3; i++) {
        nrt_tensor_free(&tensors[i]);
        EXPECT(tensors[i] == NULL);
    }
    nrt_destroy_tensor_set(&inputs);
    nrt_destroy_tensor_set(&outputs);
    EXPECT(inputs == NULL && outputs == NULL);
    CHECK(nrt_free_model_tensor_info(info));
    CHECK(nrt_unload(model));
    CHECK(nrt_get_vnc_memory_stats(0, &stats, sizeof(stats), &written));
    EXPECT(stats.bytes_used == 0);
    nrt_close();
    EXPECT(nrt_allocate_tensor_set(&inputs) == NRT_CLOSED);

    printf("OK\n");
    return 0;
}
