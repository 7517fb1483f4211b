/* Fuzz target: http_date_parse() takes any bytes (as a C string) without
 * reading past the terminator, and whatever the fixed-layout path accepts
 * curl_getdate reads as the same instant. */
#include <curl/curl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_date.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[64]; /* the header field's capacity in http.c */
    size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
    memcpy(text, data, n);
    text[n] = '\0';
    int64_t when = http_date_parse(text);
    REQUIRE(when >= -1);
    /* A 29-character value in the fixed layout: both parsers must agree. */
    if (when >= 0 && strlen(text) == 29 && memcmp(text + 25, " GMT", 4) == 0 &&
        text[3] == ',' && text[5] >= '0' && text[5] <= '9') {
        time_t theirs = curl_getdate(text, NULL);
        REQUIRE(theirs == -1 || (int64_t)theirs == when);
    }
    return 0;
}
