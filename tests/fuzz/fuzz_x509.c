/* PEM and X.509 input: certificates and chains read back from the store
 * or a host, and private keys. */
#include "fuzz.h"

#include "cf.h"
#include "util.h"
#include "x509.h"

/* Raw bytes as a PEM block of the given label, so mutations reach the DER
 * parsers instead of stopping at the base64 armour. */
static char *armour(const char *label, const uint8_t *data, size_t size)
{
    char *b64 = cf_b64(data, size);
    char *pem = cf_asprintf("-----BEGIN %s-----\n%s\n-----END %s-----\n", label, b64, label);
    free(b64);
    return pem;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* first byte 'D': DER of a certificate, 'K': of a private key;
     * anything else: the input is PEM text itself */
    char *text;
    if (size && data[0] == 'D')
        text = armour("CERTIFICATE", data + 1, size - 1);
    else if (size && data[0] == 'K')
        text = armour("PRIVATE KEY", data + 1, size - 1);
    else
        text = fuzz_str(data, size);
    char err[CF_ERRLEN];
    struct cf_cert_info ci;
    memset(&ci, 0, sizeof ci);
    if (cf_x509_parse(text, 0, &ci, err) == 0) {
        char *id = NULL;
        if (cf_x509_ari_certid(&ci, &id, err) == 0)
            free(id);
        cf_x509_is_placeholder(&ci);
        cf_cert_info_release(&ci);
    }
    char *leaf = NULL, *chain = NULL;
    if (cf_x509_split_chain(text, &leaf, &chain, err) == 0) {
        free(leaf);
        free(chain);
    }
    EVP_PKEY *k = NULL;
    if (cf_x509_key_read(text, strlen(text), &k, err) == 0)
        EVP_PKEY_free(k);
    char kt[CF_KEYTYPE_LEN];
    cf_x509_key_type(text, kt, err);
    free(text);
    return 0;
}
