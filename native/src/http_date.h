/* HTTP dates (Last-Modified): seconds since the epoch. */
#ifndef S3DL_HTTP_DATE_H
#define S3DL_HTTP_DATE_H

#include <stdint.h>

/* The time a Last-Modified value names, in seconds since 1970, or -1 when
 * it is not a date.  IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), which
 * every object store sends, is parsed directly; the obsolete forms go to
 * curl_getdate. */
int64_t http_date_parse(const char *text);

#endif
