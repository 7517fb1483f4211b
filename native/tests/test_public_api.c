/* The public API as a user links it: versions agree, every status has a
 * name, and NULL or nonsense arguments return errors instead of crashing. */
#include <string.h>

#include "check.h"
#include "s3dlio.h"

int main(void)
{
    CHECK_EQ_INT(s3dl_version_number(), S3DL_VERSION_NUM);
    CHECK_EQ_INT(S3DL_VERSION_NUM,
                 S3DL_VERSION_MAJOR * 10000 + S3DL_VERSION_MINOR * 100 + S3DL_VERSION_PATCH);
    CHECK(strcmp(s3dl_version_string(), "0.1.0") == 0 || s3dl_version_string()[0] != '\0');
    for (int s = S3DL_OK; s <= S3DL_E_INTERNAL; s++)
        CHECK(strcmp(s3dl_strerror((s3dl_status)s), "unknown status") != 0);
    CHECK(strcmp(s3dl_strerror((s3dl_status)9999), "unknown status") == 0);
    CHECK(strcmp(s3dl_strerror((s3dl_status)-1), "unknown status") == 0);

    CHECK_EQ_INT(s3dl_engine_new(NULL), S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_engine_setopt(NULL, S3DL_ENGINE_IO_THREADS, 1), S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_engine_notify_fd(NULL), -1);
    CHECK_EQ_INT(s3dl_engine_poll_completions(NULL, NULL, 5), 0);
    s3dl_engine_free(NULL);
    CHECK_EQ_INT(s3dl_batch_new(NULL, NULL), S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_batch_submit(NULL), S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_batch_wait(NULL, 0), S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_batch_add(NULL, S3DL_OP_GET, "/x", 0, 0, NULL, 0, 0, NULL),
                 S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_batch_take_results(NULL, 0, NULL, NULL, NULL, NULL),
                 S3DL_E_INVALID_ARGUMENT);
    s3dl_batch_free(NULL);
    s3dl_free(NULL);

    s3dl_engine *e = NULL;
    CHECK_EQ_INT(s3dl_engine_new(&e), S3DL_OK);
    CHECK_EQ_INT(s3dl_engine_setopt(e, (s3dl_engine_option)77, 1), S3DL_E_INVALID_ARGUMENT);
    s3dl_batch *b = NULL;
    CHECK_EQ_INT(s3dl_batch_new(e, &b), S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_add(b, S3DL_OP_GET, NULL, 0, 0, NULL, 0, 0, NULL),
                 S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_batch_setopt(b, S3DL_BATCH_MAX_IN_FLIGHT, 0), S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_batch_take_results(b, 1, NULL, NULL, NULL, NULL), S3DL_E_INVALID_ARGUMENT);
    s3dl_detail d;
    CHECK_EQ_INT(s3dl_batch_detail(b, 0, &d), S3DL_E_INVALID_ARGUMENT);
    const char *block = NULL;
    size_t block_len = 0;
    CHECK_EQ_INT(s3dl_batch_response_headers(b, 0, &block, &block_len), S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_batch_add(b, S3DL_OP_GET, "http://127.0.0.1:9/x", 0, 0, NULL, 0,
                                S3DL_F_KEEP_HEADERS, NULL), S3DL_OK);
    CHECK_EQ_INT(s3dl_batch_response_headers(b, 0, &block, &block_len), S3DL_E_STATE);
    int64_t times[3];
    CHECK_EQ_INT(s3dl_batch_timings(b, 1, times), S3DL_E_STATE);
    CHECK_EQ_INT(s3dl_batch_timings(b, 2, times), S3DL_E_INVALID_ARGUMENT);
    char *rows = NULL;
    size_t rows_len = 0;
    uint64_t row_sizes[1] = {0};
    CHECK_EQ_INT(s3dl_batch_format_log(b, 1, 0, "1", "c", "u", 1, NULL, 0, row_sizes, &rows,
                                       &rows_len), S3DL_E_STATE);
    CHECK_EQ_INT(s3dl_batch_format_log(NULL, 1, 0, "1", "c", "u", 1, NULL, 0, row_sizes, &rows,
                                       &rows_len), S3DL_E_INVALID_ARGUMENT);
    s3dl_batch_free(b);

    s3dl_client *c = NULL;
    CHECK_EQ_INT(s3dl_client_new(&c), S3DL_OK);
    CHECK_EQ_INT(s3dl_client_setopt_int(c, S3DL_CLIENT_DIALECT, S3DL_DIALECT_AZURE), S3DL_OK);
    CHECK_EQ_INT(s3dl_client_setopt_int(c, S3DL_CLIENT_DIALECT, 3), S3DL_E_INVALID_ARGUMENT);
    CHECK_EQ_INT(s3dl_client_setopt_int(c, S3DL_CLIENT_DIALECT, -1), S3DL_E_INVALID_ARGUMENT);
    s3dl_client_free(c);
    s3dl_engine_free(e);

    char line[64];
    s3dl_log_level level;
    s3dl_log_set_level(S3DL_LOG_OFF);
    while (s3dl_log_pop(&level, line, sizeof(line))) {
    }
    CHECK_EQ_INT(s3dl_log_pop(&level, NULL, 0), 0);
    CHECK_EQ_INT(s3dl_crc32c(0, "123456789", 9), 0xE3069283u);
    return check_report("test_public_api");
}
