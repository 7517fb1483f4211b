/* Private: the one place that decides whether a failed HTTP attempt is
 * retried, and how long to wait.  Classification follows botocore's
 * standard mode and aws-c-s3 (see docs/defaults.md). */
#ifndef S3DL_RETRY_H
#define S3DL_RETRY_H

#include <stdatomic.h>
#include <stdint.h>

#include "s3dlio.h"

enum retry_class {
    RETRY_NONE = 0,       /* success, or fatal: report as is */
    RETRY_TRANSIENT = 1,  /* connection trouble, 5xx, RequestTimeout */
    RETRY_THROTTLED = 2   /* 429, 503 SlowDown and friends */
};

/* Inputs known about one finished attempt. */
struct attempt_outcome {
    int curl_code;          /* CURLcode; 0 = the transfer completed */
    long http_status;       /* 0 when no response arrived */
    const char *error_code; /* service error code ("SlowDown"), "" when none */
};

/* Classifies an attempt (a pure function). */
enum retry_class retry_classify(const struct attempt_outcome *outcome);

/* The status an attempt ends with if it is not retried. */
s3dl_status retry_final_status(const struct attempt_outcome *outcome);

/* Full-jitter exponential backoff: a uniform delay in [0, min(cap,
 * base * 2^(attempt-1))] ms, base 100 ms for transient errors and 500 ms for
 * throttling, cap 20 s; never less than a server's Retry-After (ms, 0 when
 * absent), itself capped at 20 s.  `random` is a uniform 64-bit value. */
int64_t retry_delay_ms(enum retry_class cls, int attempt, int64_t retry_after_ms,
                       uint64_t random);

/* Retry budget (botocore's quota): a retry costs 5 tokens (10 after a
 * timeout); a success refunds 1.  Returns 1 and takes the tokens, or 0 when
 * the budget is spent (then the error is reported at once). */
int retry_budget_take(_Atomic int *tokens, const struct attempt_outcome *outcome);
void retry_budget_refund(_Atomic int *tokens);

#endif
