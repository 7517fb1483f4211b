/*
 * copy_file: copies one local file to another through an s3dlio batch --
 * a GET, then an atomic PUT (temporary name + rename).
 *
 *   cc copy_file.c $(pkg-config --cflags --libs s3dlio) -o copy_file
 *   ./copy_file /abs/src /abs/dst
 */
#include <s3dlio.h>
#include <stdio.h>

static int fail(const char *what, s3dl_status st)
{
    fprintf(stderr, "%s: %s\n", what, s3dl_strerror(st));
    return 1;
}

/* Runs a one-item batch; on success the GET result (if any) is moved out. */
static s3dl_status run_one(s3dl_engine *engine, s3dl_op op, const char *path, const void *data,
                           size_t len, void **alloc, uint8_t **out, uint64_t *out_len)
{
    s3dl_batch *batch = NULL;
    s3dl_status st = s3dl_batch_new(engine, &batch);
    if (st != S3DL_OK)
        return st;
    st = s3dl_batch_add(batch, op, path, 0, 0, data, len, S3DL_F_MKDIRS, NULL);
    if (st == S3DL_OK)
        st = s3dl_batch_submit(batch);
    if (st == S3DL_OK)
        st = s3dl_batch_wait(batch, -1);
    s3dl_status item = S3DL_OK;
    if (st == S3DL_OK)
        st = s3dl_batch_take_results(batch, 1, &item, alloc, out, out_len);
    if (st == S3DL_OK && item != S3DL_OK) {
        s3dl_detail detail;
        if (s3dl_batch_detail(batch, 0, &detail) == S3DL_OK)
            fprintf(stderr, "%s\n", detail.message);
        st = item;
    }
    s3dl_batch_free(batch);
    return st;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s SRC DST (absolute paths)\n", argv[0]);
        return 2;
    }
    if (s3dl_version_number() != S3DL_VERSION_NUM) {
        fprintf(stderr, "header %d and library %u differ\n", S3DL_VERSION_NUM,
                s3dl_version_number());
        return 1;
    }
    s3dl_engine *engine = NULL;
    s3dl_status st = s3dl_engine_new(&engine);
    if (st != S3DL_OK)
        return fail("engine", st);
    void *alloc = NULL;
    uint8_t *data = NULL;
    uint64_t len = 0;
    st = run_one(engine, S3DL_OP_GET, argv[1], NULL, 0, &alloc, &data, &len);
    if (st == S3DL_OK)
        st = run_one(engine, S3DL_OP_PUT, argv[2], data, (size_t)len, NULL, NULL, NULL);
    if (st == S3DL_OK)
        printf("copied %llu bytes, crc32c %08x, s3dlio %s\n", (unsigned long long)len,
               s3dl_crc32c(0, data, (size_t)len), s3dl_version_string());
    s3dl_free(alloc); /* ownership of GET results passes to the caller */
    s3dl_engine_free(engine);
    return st == S3DL_OK ? 0 : fail("copy", st);
}
