/* See retry.h. */
#include "retry.h"

#include <curl/curl.h>
#include <string.h>
#include <strings.h>

#define BUDGET_MAX 500
#define COST_RETRY 5
#define COST_TIMEOUT 10
#define BACKOFF_CAP_MS 20000

static int code_is(const char *code, const char *const *list)
{
    if (!code || !*code)
        return 0;
    for (; *list; list++)
        if (strcmp(code, *list) == 0)
            return 1;
    return 0;
}

static const char *const throttling_codes[] = {
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
    "TooManyRequestsException", "ProvisionedThroughputExceededException",
    "TransactionInProgressException", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "LimitExceededException", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
    "EC2ThrottledException",
    "ServerBusy",                                       /* Azure */
    "rateLimitExceeded", "userRateLimitExceeded",        /* GCS (sometimes with 403) */
    NULL};

static const char *const transient_codes[] = {
    "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable",
    "OperationAborted",
    "OperationTimedOut",                                /* Azure */
    "backendError", "internalError",                     /* GCS */
    NULL};

enum retry_class retry_classify(const struct attempt_outcome *o)
{
    switch (o->curl_code) {
    case CURLE_OK:
        break;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR:
        return RETRY_TRANSIENT;
    default:
        return RETRY_NONE; /* our own write cap, TLS verification, bad URL ... */
    }
    if (code_is(o->error_code, throttling_codes) || o->http_status == 429)
        return RETRY_THROTTLED;
    if (code_is(o->error_code, transient_codes))
        return RETRY_TRANSIENT;
    if (o->http_status == 408 || o->http_status == 500 || o->http_status == 502 ||
        o->http_status == 504)
        return RETRY_TRANSIENT;
    if (o->http_status == 503)
        return RETRY_THROTTLED;
    return RETRY_NONE;
}

s3dl_status retry_final_status(const struct attempt_outcome *o)
{
    switch (o->curl_code) {
    case CURLE_OK: break;
    case CURLE_OPERATION_TIMEDOUT: return S3DL_E_TIMEOUT;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL: return S3DL_E_INVALID_ARGUMENT;
    case CURLE_OUT_OF_MEMORY: return S3DL_E_NOMEM;
    case CURLE_ABORTED_BY_CALLBACK: return S3DL_E_CANCELLED;
    default: return S3DL_E_NETWORK;
    }
    long s = o->http_status;
    if (s >= 200 && s < 300)
        return S3DL_OK;
    const char *code = o->error_code ? o->error_code : "";
    if (s == 404 || strcmp(code, "NoSuchKey") == 0 || strcmp(code, "NoSuchBucket") == 0)
        return S3DL_E_NOT_FOUND;
    if (code_is(code, throttling_codes)) /* GCS rate limits may come as 403 */
        return S3DL_E_THROTTLED;
    if (s == 401 || s == 403)
        return S3DL_E_PERMISSION;
    if (s == 412 || strcmp(code, "BucketAlreadyExists") == 0 ||
        strcmp(code, "BucketAlreadyOwnedByYou") == 0 ||
        strcmp(code, "BlobAlreadyExists") == 0 ||       /* Azure create-only PUT */
        strcmp(code, "ContainerAlreadyExists") == 0 ||
        (s == 409 && strcasecmp(code, "conflict") == 0))  /* GCS bucket exists */
        return S3DL_E_EXISTS; /* other 409s (BucketNotEmpty, ...) are plain HTTP errors */
    if (s == 416)
        return S3DL_E_RANGE;
    if (retry_classify(o) == RETRY_THROTTLED)
        return S3DL_E_THROTTLED;
    if (strcmp(code, "BadDigest") == 0 || strcmp(code, "InvalidDigest") == 0 ||
        strcmp(code, "XAmzContentSHA256Mismatch") == 0)
        return S3DL_E_CHECKSUM;
    if (s == 400 && (strcmp(code, "InvalidBucketName") == 0 || strcmp(code, "InvalidArgument") == 0 ||
                     strcmp(code, "KeyTooLongError") == 0))
        return S3DL_E_INVALID_ARGUMENT;
    return S3DL_E_HTTP;
}

int64_t retry_delay_ms(enum retry_class cls, int attempt, int64_t retry_after_ms, uint64_t random)
{
    int64_t base = cls == RETRY_THROTTLED ? 500 : 100;
    int64_t ceiling = base;
    for (int i = 1; i < attempt && ceiling < BACKOFF_CAP_MS; i++)
        ceiling *= 2;
    if (ceiling > BACKOFF_CAP_MS)
        ceiling = BACKOFF_CAP_MS;
    int64_t delay = (int64_t)(random % (uint64_t)(ceiling + 1));
    if (retry_after_ms > BACKOFF_CAP_MS)
        retry_after_ms = BACKOFF_CAP_MS;
    return delay < retry_after_ms ? retry_after_ms : delay;
}

int retry_budget_take(_Atomic int *tokens, const struct attempt_outcome *o)
{
    int cost = o->curl_code == CURLE_OPERATION_TIMEDOUT ? COST_TIMEOUT : COST_RETRY;
    int have = atomic_load_explicit(tokens, memory_order_relaxed);
    do {
        if (have < cost)
            return 0;
    } while (!atomic_compare_exchange_weak_explicit(tokens, &have, have - cost,
                                                    memory_order_relaxed, memory_order_relaxed));
    return 1;
}

void retry_budget_refund(_Atomic int *tokens)
{
    int have = atomic_load_explicit(tokens, memory_order_relaxed);
    while (have < BUDGET_MAX &&
           !atomic_compare_exchange_weak_explicit(tokens, &have, have + 1, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}
