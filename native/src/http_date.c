/* Last-Modified parsing.  curl_getdate accepts every historical format by
 * tokenising with sscanf, which cost about 1% of the CPU of a small GET;
 * the fixed IMF-fixdate layout is read here in a few comparisons. */
#include "http_date.h"

#include <curl/curl.h>
#include <string.h>

static int two_digits(const char *p, int *out)
{
    if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9')
        return 0;
    *out = (p[0] - '0') * 10 + (p[1] - '0');
    return 1;
}

/* Days from 1970-01-01 to year-month-day in the proleptic Gregorian
 * calendar (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int64_t parse_fixdate(const char *s)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    /* "Sun, 06 Nov 1994 08:49:37 GMT": 29 characters at fixed places. */
    if (strlen(s) != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' ||
        s[16] != ' ' || s[19] != ':' || s[22] != ':' || memcmp(s + 25, " GMT", 4) != 0)
        return -1;
    int day, hour, minute, second, century, year2;
    if (!two_digits(s + 5, &day) || !two_digits(s + 12, &century) ||
        !two_digits(s + 14, &year2) || !two_digits(s + 17, &hour) ||
        !two_digits(s + 20, &minute) || !two_digits(s + 23, &second))
        return -1;
    int month = 0;
    while (month < 12 && memcmp(months + 3 * month, s + 8, 3) != 0)
        month++;
    if (month == 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
        return -1;
    int64_t days = days_from_civil(century * 100 + year2, month + 1, day);
    return days * 86400 + hour * 3600 + minute * 60 + second;
}

int64_t http_date_parse(const char *text)
{
    int64_t when = parse_fixdate(text);
    if (when >= 0)
        return when;
    time_t other = curl_getdate(text, NULL);
    return other > 0 ? (int64_t)other : -1;
}
