/* Private: HTTP client settings shared by a batch's requests (see the
 * public s3dl_client_* functions).  Frozen at first use so the engine
 * thread can read them without locks. */
#ifndef S3DL_CLIENT_H
#define S3DL_CLIENT_H

#include <pthread.h>
#include <stdatomic.h>

#include "s3dlio.h"
#include "sigv4.h"

struct s3dl_client {
    _Atomic int refs;
    uint64_t serial;         /* unique per client: HTTP handles remember whose settings they hold */
    pthread_mutex_t mutex;   /* guards options until frozen */
    int frozen;
    char *access_key;
    char *secret_key;
    char *session_token;
    char *region;
    char *service;
    char *ca_bundle;
    int verify_tls;
    long connect_timeout_ms;
    long request_timeout_ms;
    long low_speed_timeout_ms;
    int max_attempts;
    int signed_payload;
    int checksum;            /* S3DL_CHECKSUM_* */
    int dialect;             /* S3DL_DIALECT_* */
    int can_sign;            /* credentials present: signer is ready */
    struct sigv4_signer signer;
    /* Retry budget (token bucket), shared by the HTTP lanes. */
    _Atomic int retry_tokens;
};

/* The settings used for HTTP items of a batch without a client. */
struct s3dl_client *client_default(void);

void client_ref(struct s3dl_client *client);
void client_unref(struct s3dl_client *client);

/* Fixes the options and prepares the signer; called at submit. */
s3dl_status client_freeze(struct s3dl_client *client);

#endif
