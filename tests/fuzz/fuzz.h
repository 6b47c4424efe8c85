/* fuzz.h - shared by the libFuzzer targets in this directory.
 *
 * Each target is one file fuzz_<name>.c defining LLVMFuzzerTestOneInput;
 * `make fuzz` links it with the certfleet objects built by clang under
 * ASan+UBSan into build/fuzz/fuzz_<name>.  Seeds live in corpus/<name>/. */
#ifndef CF_FUZZ_H
#define CF_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* data as a NUL-terminated string (caller frees); embedded NULs stay and
 * end the string early, as they would for a C caller. */
static inline char *fuzz_str(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

#endif
