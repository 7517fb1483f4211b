/* Private: bounded extraction of the fields of an error body: S3- and
 * Azure-style XML (<Error><Code>..</Code><Message>..</Message>
 * <RequestId>..</RequestId>) or the GCS JSON API's {"error": {"message",
 * "errors": [{"reason"}]}} (reason becomes the code).
 * Not a general XML parser: it looks only for these elements, never reads
 * past `len`, and copies at most the destination sizes. */
#ifndef S3DL_S3_ERROR_H
#define S3DL_S3_ERROR_H

#include <stddef.h>

struct s3_error_fields {
    char code[64];
    char message[256];
    char request_id[128];
};

/* Fills `out` (fields "" when absent).  Returns 1 if the body contains an
 * <Error> element or is a JSON object with an "error" member, else 0. */
int s3_error_parse(const char *body, size_t len, struct s3_error_fields *out);

/* Non-zero if the document's root element is <Error> (after an optional
 * XML declaration and whitespace): a 200 reply that is really an error,
 * as opposed to a DeleteResult that lists per-key <Error> children. */
int s3_error_is_root(const char *body, size_t len);

#endif
