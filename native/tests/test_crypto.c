/* HMAC-SHA256 (built here on a fetched SHA-256) against RFC 4231's test
 * cases, short and longer-than-a-block keys, and SHA-256 of "abc". */
#include <string.h>

#include "check.h"
#include "crypto.h"

static int hmac_hex_is(const void *key, size_t key_len, const void *data, size_t len,
                       const char *want)
{
    uint8_t mac[CRYPTO_SHA256_LEN];
    char hex[2 * CRYPTO_SHA256_LEN + 1];
    if (crypto_hmac_sha256(key, key_len, data, len, mac) != 0)
        return 0;
    crypto_hex(mac, sizeof(mac), hex);
    return strcmp(hex, want) == 0;
}

int main(void)
{
    uint8_t key20[20], key131[131];
    memset(key20, 0x0b, sizeof(key20));
    memset(key131, 0xaa, sizeof(key131));
    /* RFC 4231 test case 1. */
    CHECK(hmac_hex_is(key20, 20, "Hi There", 8,
                      "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"));
    /* Test case 2: a key shorter than the output. */
    CHECK(hmac_hex_is("Jefe", 4, "what do ya want for nothing?", 28,
                      "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
    /* Test case 6: a key longer than the block, hashed first. */
    const char *msg6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    CHECK(hmac_hex_is(key131, 131, msg6, strlen(msg6),
                      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"));
    /* An empty key and empty data are valid HMAC inputs. */
    CHECK(hmac_hex_is("", 0, "", 0,
                      "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"));
    char hex[CRYPTO_SHA256_HEX_LEN + 1];
    CHECK(crypto_sha256_hex("abc", 3, hex) == 0);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    return check_report("test_crypto");
}
