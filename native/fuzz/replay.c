/* Runs a fuzz target without libFuzzer: every file in the corpus
 * directories given on the command line, then a fixed number of
 * pseudo-random inputs, so the fuzzers' checks run in ordinary CI. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    uint8_t buf[65536];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    return 1;
}

int main(int argc, char **argv)
{
    int files = 0;
    for (int i = 1; i < argc; i++) {
        DIR *dir = opendir(argv[i]);
        if (!dir)
            continue;
        struct dirent *entry;
        while ((entry = readdir(dir)) != NULL) {
            if (entry->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", argv[i], entry->d_name);
            files += replay_file(path);
        }
        closedir(dir);
    }
    uint64_t state = 0x9E3779B97F4A7C15ull;
    enum { RANDOM_INPUTS = 200000 };
    for (int i = 0; i < RANDOM_INPUTS; i++) {
        uint8_t buf[32];
        for (size_t j = 0; j < sizeof(buf); j += 8) {
            state ^= state << 13; /* xorshift64: fixed seed, same inputs every run */
            state ^= state >> 7;
            state ^= state << 17;
            memcpy(buf + j, &state, 8);
        }
        LLVMFuzzerTestOneInput(buf, (size_t)(state % (sizeof(buf) + 1)));
    }
    printf("replayed %d corpus files and %d random inputs\n", files, RANDOM_INPUTS);
    return 0;
}
