/* S3 error bodies: fields extracted within bounds, and the 200-with-error
 * rule applied only when <Error> is the root element. */
#include <string.h>

#include "check.h"
#include "s3_error.h"

int main(void)
{
    struct s3_error_fields f;
    const char *body = "<?xml version=\"1.0\"?>\n<Error><Code>NoSuchKey</Code><Message>gone\r\n"
                       "now</Message><RequestId>R1</RequestId></Error>";
    CHECK_EQ_INT(s3_error_parse(body, strlen(body), &f), 1);
    CHECK(strcmp(f.code, "NoSuchKey") == 0);
    CHECK(strcmp(f.message, "gone  now") == 0); /* control characters flattened */
    CHECK(strcmp(f.request_id, "R1") == 0);
    CHECK(s3_error_is_root(body, strlen(body)));

    const char *delete_result = "<?xml version=\"1.0\"?><DeleteResult><Error><Key>k</Key>"
                                "<Code>AccessDenied</Code></Error></DeleteResult>";
    CHECK(!s3_error_is_root(delete_result, strlen(delete_result)));
    CHECK_EQ_INT(s3_error_parse(delete_result, strlen(delete_result), &f), 1);

    /* Truncated bodies: nothing read past the length, fields left empty. */
    CHECK_EQ_INT(s3_error_parse(body, 25, &f), 0); /* cut inside "<Error>" */
    CHECK_EQ_INT(s3_error_parse("<Error><Code>Slow", 17, &f), 1);
    CHECK(f.code[0] == '\0');
    CHECK(!s3_error_is_root("<?xml", 5));
    CHECK(!s3_error_is_root("", 0));

    /* A code longer than the field is truncated, still terminated. */
    char big[600] = "<Error><Code>";
    memset(big + 13, 'A', 300);
    strcpy(big + 313, "</Code></Error>");
    CHECK_EQ_INT(s3_error_parse(big, strlen(big), &f), 1);
    CHECK_EQ_INT(strlen(f.code), sizeof(f.code) - 1);

    /* GCS JSON errors: the reason is the code; escapes reduced. */
    const char *gcs = "{\"error\": {\"code\": 404, \"message\": \"No such object: b/\\\"k\\\"\",\n"
                      " \"errors\": [{\"message\": \"x\", \"domain\": \"global\", "
                      "\"reason\": \"notFound\"}]}}";
    CHECK_EQ_INT(s3_error_parse(gcs, strlen(gcs), &f), 1);
    CHECK(strcmp(f.code, "notFound") == 0);
    CHECK(strcmp(f.message, "No such object: b/\"k\"") == 0);
    /* Cut anywhere: never past the length, always terminated. */
    for (size_t cut = 0; cut < strlen(gcs); cut++) {
        s3_error_parse(gcs, cut, &f);
        CHECK(strlen(f.code) < sizeof(f.code) && strlen(f.message) < sizeof(f.message));
    }
    CHECK_EQ_INT(s3_error_parse("[\"error\"]", 9, &f), 0); /* not an object */
    CHECK_EQ_INT(s3_error_parse("{\"error\": \"x\"}", 14, &f), 1);
    CHECK(f.code[0] == '\0' && f.message[0] == '\0');
    return check_report("test_s3_error");
}
