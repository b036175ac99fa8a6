/* zmr.core._kernels: the data plane's per-pair work in C, one call per block or column.
 *
 * A plain app's map yields Python (str, value) tuples. Turning a block of them into columns from Python
 * costs a C call per pair for each step (type checks, str.encode, len, xxh3, the value array), about
 * 0.25 us a pair in all. `pair_columns` does those steps in one call: it checks the block, writes the
 * keys' UTF-8 and the values into column buffers, hashes each key with xxh3 (the hash
 * `zmr.core.partition.partition_of` uses, so a key lands in the same partition on every path) and files
 * the rows by partition, stably. `var_order`, `same_keys` and `take_bytes` are the sort, the
 * equal-neighbour flags and the gather of a column of byte strings (`zmr.core.columns`), which numpy
 * could only do a word of every key at a time. Each caller falls back to numpy passes where this module
 * was not built, with the same answers. xxhash.h beside this file is xxHash's own header (BSD 2-Clause).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define XXH_INLINE_ALL
#include "xxhash.h"

/* The value kinds, as zmr.core.columns numbers them. */
enum { KIND_STR = 3, KIND_INT = 4, KIND_FLOAT = 5 };

typedef struct {
    const char *ptr;
    Py_ssize_t len;
} Text;

/* A str's UTF-8, surrogates kept as `str.encode("utf-8", "surrogatepass")` keeps them. The common case
 * borrows the str's own (cached) UTF-8; a str with a lone surrogate is encoded into a bytes object that
 * `keep` holds until the block is written. 0 on success, -1 with an exception set. */
static int
utf8_of(PyObject *text, Text *out, PyObject *keep)
{
    out->ptr = PyUnicode_AsUTF8AndSize(text, &out->len);
    if (out->ptr != NULL)
        return 0;
    if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError))
        return -1;
    PyErr_Clear();
    PyObject *raw = PyUnicode_AsEncodedString(text, "utf-8", "surrogatepass");
    if (raw == NULL)
        return -1;
    int failed = PyList_Append(keep, raw);
    Py_DECREF(raw);
    if (failed)
        return -1;
    out->ptr = PyBytes_AS_STRING(raw);
    out->len = PyBytes_GET_SIZE(raw);
    return 0;
}

static PyObject *
new_buffer(Py_ssize_t size, char **data)
{
    PyObject *buffer = PyByteArray_FromStringAndSize(NULL, size);
    if (buffer != NULL)
        *data = PyByteArray_AS_STRING(buffer);
    return buffer;
}

PyDoc_STRVAR(pair_columns_doc,
"pair_columns(block, n)\n--\n\n"
"A list of (str, value) tuples as columns filed by partition, or None if it is not one: every item an\n"
"exact tuple of two, every key an exact str, every value an exact str, float or int within 64 bits, all\n"
"values of one kind.\n\n"
"With n > 1 the rows are filed stably by xxh3_64(key's UTF-8) % n; with n == 1 they keep their order\n"
"in one partition; with n == 0 they keep their order and no hash is computed (an app's own partitioner\n"
"files them).\n\n"
"Returns (value_kind, key_data, key_offsets, value_data, value_offsets, counts): bytearrays of the keys'\n"
"UTF-8, their int64 offsets (rows + 1), the values (int64 or float64; UTF-8 for str), the values' int64\n"
"offsets (str values only, else None), and the rows of each partition (a list of max(n, 1) ints).");

static PyObject *
pair_columns(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *block;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "O!n:pair_columns", &PyList_Type, &block, &n))
        return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "n must be >= 0");
        return NULL;
    }
    Py_ssize_t rows = PyList_GET_SIZE(block), parts_n = n > 1 ? n : 1;
    PyObject *result = NULL, *keep = NULL, *key_data = NULL, *key_offsets = NULL;
    PyObject *value_data = NULL, *value_offsets = NULL, *counts_list = NULL;
    Text *keys = NULL, *texts = NULL;
    int64_t *numbers = NULL;   /* int64 or float64 values, row by row */
    uint32_t *part_of = NULL;
    Py_ssize_t *counts = NULL, *key_bytes = NULL, *text_bytes = NULL, *row_at = NULL, *key_at = NULL,
               *text_at = NULL;
    int kind = 0;
    int columnable = 1;

    keep = PyList_New(0);
    keys = PyMem_Malloc(sizeof(Text) * (rows ? rows : 1));
    part_of = PyMem_Malloc(sizeof(uint32_t) * (rows ? rows : 1));
    counts = PyMem_Calloc(parts_n, sizeof(Py_ssize_t));
    key_bytes = PyMem_Calloc(parts_n, sizeof(Py_ssize_t));
    text_bytes = PyMem_Calloc(parts_n, sizeof(Py_ssize_t));
    row_at = PyMem_Malloc(sizeof(Py_ssize_t) * parts_n);
    key_at = PyMem_Malloc(sizeof(Py_ssize_t) * parts_n);
    text_at = PyMem_Malloc(sizeof(Py_ssize_t) * parts_n);
    if (!keep || !keys || !part_of || !counts || !key_bytes || !text_bytes || !row_at || !key_at || !text_at) {
        PyErr_NoMemory();
        goto done;
    }

    /* Pass 1: check every item, find each key's UTF-8, partition and each value. */
    for (Py_ssize_t i = 0; i < rows; i++) {
        PyObject *item = PyList_GET_ITEM(block, i);
        if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 2) {
            columnable = 0;
            break;
        }
        PyObject *key = PyTuple_GET_ITEM(item, 0), *value = PyTuple_GET_ITEM(item, 1);
        if (!PyUnicode_CheckExact(key)) {
            columnable = 0;
            break;
        }
        if (kind == 0) {
            if (PyLong_CheckExact(value))
                kind = KIND_INT;
            else if (PyFloat_CheckExact(value))
                kind = KIND_FLOAT;
            else if (PyUnicode_CheckExact(value))
                kind = KIND_STR;
            else {
                columnable = 0;
                break;
            }
            if (kind == KIND_STR)
                texts = PyMem_Malloc(sizeof(Text) * rows);
            else
                numbers = PyMem_Malloc(sizeof(int64_t) * rows);
            if (texts == NULL && numbers == NULL) {
                PyErr_NoMemory();
                goto done;
            }
        }
        if (utf8_of(key, &keys[i], keep) < 0)
            goto done;
        uint32_t p = 0;
        if (n > 1)
            p = (uint32_t)(XXH3_64bits(keys[i].ptr, (size_t)keys[i].len) % (uint64_t)n);
        part_of[i] = p;
        counts[p]++;
        key_bytes[p] += keys[i].len;
        if (kind == KIND_INT) {
            if (!PyLong_CheckExact(value)) {
                columnable = 0;
                break;
            }
            int overflow = 0;
            long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
            if (overflow) {   /* past 64 bits */
                columnable = 0;
                break;
            }
            if (number == -1 && PyErr_Occurred())
                goto done;
            numbers[i] = (int64_t)number;
        }
        else if (kind == KIND_FLOAT) {
            if (!PyFloat_CheckExact(value)) {
                columnable = 0;
                break;
            }
            double number = PyFloat_AS_DOUBLE(value);
            memcpy(&numbers[i], &number, sizeof number);
        }
        else {
            if (!PyUnicode_CheckExact(value)) {
                columnable = 0;
                break;
            }
            if (utf8_of(value, &texts[i], keep) < 0)
                goto done;
            text_bytes[p] += texts[i].len;
        }
    }
    if (!columnable || rows == 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }

    /* Where each partition starts, in rows and in bytes. */
    Py_ssize_t all_keys = 0, all_texts = 0, all_rows = 0;
    for (Py_ssize_t p = 0; p < parts_n; p++) {
        row_at[p] = all_rows;
        key_at[p] = all_keys;
        text_at[p] = all_texts;
        all_rows += counts[p];
        all_keys += key_bytes[p];
        all_texts += text_bytes[p];
    }
    char *kdata = NULL, *koff_raw = NULL, *vdata = NULL, *voff_raw = NULL;
    key_data = new_buffer(all_keys, &kdata);
    key_offsets = new_buffer((rows + 1) * (Py_ssize_t)sizeof(int64_t), &koff_raw);
    value_data = new_buffer(kind == KIND_STR ? all_texts : rows * (Py_ssize_t)sizeof(int64_t), &vdata);
    if (kind == KIND_STR)
        value_offsets = new_buffer((rows + 1) * (Py_ssize_t)sizeof(int64_t), &voff_raw);
    if (!key_data || !key_offsets || !value_data || (kind == KIND_STR && !value_offsets))
        goto done;
    int64_t *koff = (int64_t *)koff_raw, *voff = (int64_t *)voff_raw, *vnum = (int64_t *)vdata;

    /* Pass 2: each row to its partition's next place. */
    for (Py_ssize_t i = 0; i < rows; i++) {
        uint32_t p = part_of[i];
        Py_ssize_t r = row_at[p]++;
        koff[r] = key_at[p];
        memcpy(kdata + key_at[p], keys[i].ptr, (size_t)keys[i].len);
        key_at[p] += keys[i].len;
        if (kind == KIND_STR) {
            voff[r] = text_at[p];
            memcpy(vdata + text_at[p], texts[i].ptr, (size_t)texts[i].len);
            text_at[p] += texts[i].len;
        }
        else
            vnum[r] = numbers[i];
    }
    koff[rows] = all_keys;
    if (kind == KIND_STR)
        voff[rows] = all_texts;

    counts_list = PyList_New(parts_n);
    if (counts_list == NULL)
        goto done;
    for (Py_ssize_t p = 0; p < parts_n; p++) {
        PyObject *count = PyLong_FromSsize_t(counts[p]);
        if (count == NULL)
            goto done;
        PyList_SET_ITEM(counts_list, p, count);
    }
    result = Py_BuildValue("(iOOOOO)", kind, key_data, key_offsets, value_data,
                           value_offsets ? value_offsets : Py_None, counts_list);

done:
    Py_XDECREF(keep);
    Py_XDECREF(key_data);
    Py_XDECREF(key_offsets);
    Py_XDECREF(value_data);
    Py_XDECREF(value_offsets);
    Py_XDECREF(counts_list);
    PyMem_Free(keys);
    PyMem_Free(texts);
    PyMem_Free(numbers);
    PyMem_Free(part_of);
    PyMem_Free(counts);
    PyMem_Free(key_bytes);
    PyMem_Free(text_bytes);
    PyMem_Free(row_at);
    PyMem_Free(key_at);
    PyMem_Free(text_at);
    return result;
}

/* ------------------------------------------------------------------ the order of a column of bytes */

typedef struct {
    uint64_t prefix;   /* the key's first 8 bytes, big-endian, zero-padded */
    int64_t row;
} Ranked;

typedef struct {
    const uint8_t *data;
    const int64_t *offsets;
} Keys;

static inline uint64_t
prefix_of(const Keys *keys, int64_t row)
{
    int64_t start = keys->offsets[row], length = keys->offsets[row + 1] - start;
    uint8_t word[8] = {0};
    memcpy(word, keys->data + start, (size_t)(length < 8 ? length : 8));
    uint64_t prefix = 0;
    for (int k = 0; k < 8; k++)
        prefix = (prefix << 8) | word[k];
    return prefix;
}

/* Keys a and b, whose first 8 bytes are equal, by the rest of their bytes, then their lengths (a prefix
 * sorts first); 0 when the keys are equal. */
static inline int
compare_rest(const Keys *keys, int64_t a, int64_t b)
{
    int64_t la = keys->offsets[a + 1] - keys->offsets[a], lb = keys->offsets[b + 1] - keys->offsets[b];
    int64_t common = la < lb ? la : lb;
    if (common > 8) {
        int c = memcmp(keys->data + keys->offsets[a] + 8, keys->data + keys->offsets[b] + 8, (size_t)(common - 8));
        if (c)
            return c;
    }
    return la == lb ? 0 : (la < lb ? -1 : 1);
}

/* Whether the key of b sorts strictly before the key of a. */
static inline int
before(const Keys *keys, const Ranked *b, const Ranked *a)
{
    return b->prefix != a->prefix ? b->prefix < a->prefix : compare_rest(keys, b->row, a->row) < 0;
}

/* Keys a and b by their bytes, then their lengths, then their rows: a total order, so any sort by it
 * is stable. */
static inline int
compare_keys(const Keys *keys, int64_t a, int64_t b)
{
    int c = compare_rest(keys, a, b);
    return c ? c : (a < b ? -1 : (a > b));
}

/* Sort ranked[0..n) (rows of one prefix) by compare_keys: insertion sort for a few, merge sort above. */
static void
sort_tied(const Keys *keys, Ranked *ranked, Ranked *scratch, Py_ssize_t n)
{
    if (n <= 16) {
        for (Py_ssize_t i = 1; i < n; i++) {
            Ranked item = ranked[i];
            Py_ssize_t j = i;
            while (j > 0 && compare_keys(keys, ranked[j - 1].row, item.row) > 0) {
                ranked[j] = ranked[j - 1];
                j--;
            }
            ranked[j] = item;
        }
        return;
    }
    Py_ssize_t half = n / 2;
    sort_tied(keys, ranked, scratch, half);
    sort_tied(keys, ranked + half, scratch, n - half);
    memcpy(scratch, ranked, sizeof(Ranked) * (size_t)half);
    Py_ssize_t i = 0, j = half, k = 0;
    while (i < half && j < n)
        ranked[k++] = compare_keys(keys, scratch[i].row, ranked[j].row) <= 0 ? scratch[i++] : ranked[j++];
    while (i < half)
        ranked[k++] = scratch[i++];
}

/* Merge the sorted runs of `from` that start at starts[0..runs) (starts[runs] == its end) pairwise into
 * `to`, level by level, stably (a row of the left run goes first on equal keys); returns the buffer that
 * holds the result. starts is rewritten. */
static Ranked *
merge_runs(const Keys *keys, Ranked *from, Ranked *to, Py_ssize_t *starts, Py_ssize_t runs)
{
    while (runs > 1) {
        Py_ssize_t merged = 0;
        for (Py_ssize_t r = 0; r < runs; r += 2) {
            Py_ssize_t lo = starts[r], mid = starts[r + 1], hi = r + 2 <= runs ? starts[r + 2] : mid;
            Py_ssize_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                to[k++] = before(keys, &from[j], &from[i]) ? from[j++] : from[i++];
            memcpy(to + k, from + i, sizeof(Ranked) * (size_t)(mid - i));
            k += mid - i;
            memcpy(to + k, from + j, sizeof(Ranked) * (size_t)(hi - j));
            starts[merged++] = lo;
        }
        starts[merged] = starts[runs];
        runs = merged;
        Ranked *swap = from;
        from = to;
        to = swap;
    }
    return from;
}

/* Stable LSD radix sort of *ranked by prefix, a byte a pass, with each pass's counts given; a pass in
 * which every row has the same byte is skipped. *ranked ends as the sorted buffer, *other the spare. */
static void
radix_sort(Ranked **ranked, Ranked **other, Py_ssize_t (*counts)[256], Py_ssize_t rows)
{
    for (int pass = 0; pass < 8; pass++) {
        Py_ssize_t *count = counts[pass], at = 0;
        int one_bucket = 0;
        for (int b = 0; b < 256; b++)
            if (count[b] == rows)
                one_bucket = 1;
        if (one_bucket)
            continue;
        for (int b = 0; b < 256; b++) {
            Py_ssize_t c = count[b];
            count[b] = at;
            at += c;
        }
        Ranked *from = *ranked, *to = *other;
        for (Py_ssize_t i = 0; i < rows; i++)
            to[count[(from[i].prefix >> (8 * pass)) & 0xFF]++] = from[i];
        *ranked = to;
        *other = from;
    }
}

/* The key column's data and offsets from two buffers, checked: n + 1 non-decreasing offsets within the
 * data. 0 on success, -1 with an exception set. */
static int
keys_of(Py_buffer *data, Py_buffer *offsets, Keys *keys, Py_ssize_t *rows)
{
    if (offsets->len % (Py_ssize_t)sizeof(int64_t) || offsets->len < (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "offsets must be n + 1 int64s");
        return -1;
    }
    keys->data = data->buf;
    keys->offsets = offsets->buf;
    *rows = offsets->len / (Py_ssize_t)sizeof(int64_t) - 1;
    for (Py_ssize_t i = 0; i < *rows; i++) {
        if (keys->offsets[i] < 0 || keys->offsets[i + 1] < keys->offsets[i] || keys->offsets[i + 1] > data->len) {
            PyErr_SetString(PyExc_ValueError, "offsets must rise within the data");
            return -1;
        }
    }
    return 0;
}

static int
same_key(const Keys *keys, int64_t a, int64_t b)
{
    int64_t la = keys->offsets[a + 1] - keys->offsets[a];
    return la == keys->offsets[b + 1] - keys->offsets[b]
        && memcmp(keys->data + keys->offsets[a], keys->data + keys->offsets[b], (size_t)la) == 0;
}

PyDoc_STRVAR(var_order_doc,
"var_order(data, offsets)\n--\n\n"
"The stable order of a column of byte strings (uint8 data, int64 offsets n + 1) by their bytes, a\n"
"prefix first, and whether each row of that order has the key of the row before it. Returns (perm,\n"
"same): bytearrays of n int64s and n - 1 bools.\n\n"
"Rows that come as a few long sorted runs (as a merge round puts them together) are merged, run with\n"
"run; others are sorted by an LSD radix sort of each key's first 8 bytes (passes where every key has the\n"
"same byte are skipped), then by the rest of the bytes within each run of equal first 8 bytes that\n"
"needs it.");

static PyObject *
var_order(PyObject *module, PyObject *args)
{
    (void)module;
    Py_buffer data, offsets;
    if (!PyArg_ParseTuple(args, "y*y*:var_order", &data, &offsets))
        return NULL;
    PyObject *result = NULL, *perm_buffer = NULL, *same_buffer = NULL;
    Ranked *ranked = NULL, *other = NULL;
    Py_ssize_t (*counts)[256] = NULL;
    Py_ssize_t *starts = NULL;
    Keys keys;
    Py_ssize_t rows;
    if (keys_of(&data, &offsets, &keys, &rows) < 0)
        goto done;
    ranked = PyMem_Malloc(sizeof(Ranked) * (size_t)(rows ? rows : 1));
    other = PyMem_Malloc(sizeof(Ranked) * (size_t)(rows ? rows : 1));
    counts = PyMem_Calloc(8, sizeof *counts);
    if (!ranked || !other || !counts) {
        PyErr_NoMemory();
        goto done;
    }
    int needs_rest = 0;   /* a key longer than 8 bytes, or one that ends in zero bytes */
    Py_ssize_t runs = rows > 0;   /* ascending runs of the rows as they come */
    for (Py_ssize_t i = 0; i < rows; i++) {
        ranked[i].prefix = prefix_of(&keys, i);
        ranked[i].row = i;
        int64_t length = keys.offsets[i + 1] - keys.offsets[i];
        if (length > 8 || (length > 0 && keys.data[keys.offsets[i + 1] - 1] == 0))
            needs_rest = 1;
        if (i > 0 && before(&keys, &ranked[i], &ranked[i - 1]))
            runs++;
    }
    if (runs <= 256 && runs * 32 <= rows) {
        /* A few long runs (a reducer's merge round puts sorted pieces together): merge them, log2(runs)
         * passes, where a radix sort would take up to 8. */
        starts = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(runs + 1));
        if (!starts) {
            PyErr_NoMemory();
            goto done;
        }
        Py_ssize_t r = 0;
        starts[r++] = 0;
        for (Py_ssize_t i = 1; i < rows; i++)
            if (before(&keys, &ranked[i], &ranked[i - 1]))
                starts[r++] = i;
        starts[r] = rows;
        Ranked *sorted = merge_runs(&keys, ranked, other, starts, runs);
        other = sorted == ranked ? other : ranked;
        ranked = sorted;
    }
    else {
        for (Py_ssize_t i = 0; i < rows; i++)
            for (int pass = 0; pass < 8; pass++)
                counts[pass][(ranked[i].prefix >> (8 * pass)) & 0xFF]++;
        radix_sort(&ranked, &other, counts, rows);
        if (needs_rest) {
            for (Py_ssize_t start = 0; start < rows;) {
                Py_ssize_t end = start + 1;
                while (end < rows && ranked[end].prefix == ranked[start].prefix)
                    end++;
                if (end - start > 1)
                    sort_tied(&keys, ranked + start, other, end - start);
                start = end;
            }
        }
    }
    char *perm_raw = NULL, *same_raw = NULL;
    perm_buffer = new_buffer(rows * (Py_ssize_t)sizeof(int64_t), &perm_raw);
    same_buffer = new_buffer(rows > 0 ? rows - 1 : 0, &same_raw);
    if (!perm_buffer || !same_buffer)
        goto done;
    int64_t *perm = (int64_t *)perm_raw;
    for (Py_ssize_t i = 0; i < rows; i++)
        perm[i] = ranked[i].row;
    for (Py_ssize_t i = 1; i < rows; i++)
        same_raw[i - 1] = (char)(ranked[i].prefix == ranked[i - 1].prefix
                                 && same_key(&keys, ranked[i].row, ranked[i - 1].row));
    result = PyTuple_Pack(2, perm_buffer, same_buffer);

done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    Py_XDECREF(perm_buffer);
    Py_XDECREF(same_buffer);
    PyMem_Free(ranked);
    PyMem_Free(other);
    PyMem_Free(counts);
    PyMem_Free(starts);
    return result;
}

PyDoc_STRVAR(same_keys_doc,
"same_keys(data, offsets)\n--\n\n"
"Whether each row of a sorted column of byte strings (uint8 data, int64 offsets n + 1) has the key of\n"
"the row before it: a bytearray of n - 1 bools.");

static PyObject *
same_keys(PyObject *module, PyObject *args)
{
    (void)module;
    Py_buffer data, offsets;
    if (!PyArg_ParseTuple(args, "y*y*:same_keys", &data, &offsets))
        return NULL;
    PyObject *result = NULL;
    Keys keys;
    Py_ssize_t rows;
    char *same = NULL;
    if (keys_of(&data, &offsets, &keys, &rows) == 0 && (result = new_buffer(rows > 0 ? rows - 1 : 0, &same)))
        for (Py_ssize_t i = 1; i < rows; i++)
            same[i - 1] = (char)same_key(&keys, i, i - 1);
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    return result;
}

PyDoc_STRVAR(take_bytes_doc,
"take_bytes(data, offsets, index)\n--\n\n"
"The rows at `index` (int64s) of a column of byte strings (uint8 data, int64 offsets n + 1), in its\n"
"order, as (data, offsets): two bytearrays, of the rows' bytes and of their int64 offsets.");

static PyObject *
take_bytes(PyObject *module, PyObject *args)
{
    (void)module;
    Py_buffer data, offsets, index;
    if (!PyArg_ParseTuple(args, "y*y*y*:take_bytes", &data, &offsets, &index))
        return NULL;
    PyObject *result = NULL, *out_data = NULL, *out_offsets = NULL;
    Keys keys;
    Py_ssize_t rows, taken = index.len / (Py_ssize_t)sizeof(int64_t), size = 0;
    const int64_t *at = index.buf;
    if (keys_of(&data, &offsets, &keys, &rows) < 0)
        goto done;
    if (index.len % (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "index must be int64s");
        goto done;
    }
    for (Py_ssize_t i = 0; i < taken; i++) {
        if (at[i] < 0 || at[i] >= rows) {
            PyErr_SetString(PyExc_IndexError, "index out of range");
            goto done;
        }
        size += keys.offsets[at[i] + 1] - keys.offsets[at[i]];
    }
    char *raw = NULL, *offsets_raw = NULL;
    out_data = new_buffer(size, &raw);
    out_offsets = new_buffer((taken + 1) * (Py_ssize_t)sizeof(int64_t), &offsets_raw);
    if (!out_data || !out_offsets)
        goto done;
    int64_t *bounds = (int64_t *)offsets_raw, written = 0;
    for (Py_ssize_t i = 0; i < taken; i++) {
        int64_t start = keys.offsets[at[i]], length = keys.offsets[at[i] + 1] - start;
        bounds[i] = written;
        memcpy(raw + written, keys.data + start, (size_t)length);
        written += length;
    }
    bounds[taken] = written;
    result = PyTuple_Pack(2, out_data, out_offsets);

done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&index);
    Py_XDECREF(out_data);
    Py_XDECREF(out_offsets);
    return result;
}

static PyMethodDef methods[] = {
    {"pair_columns", pair_columns, METH_VARARGS, pair_columns_doc},
    {"var_order", var_order, METH_VARARGS, var_order_doc},
    {"same_keys", same_keys, METH_VARARGS, same_keys_doc},
    {"take_bytes", take_bytes, METH_VARARGS, take_bytes_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "zmr.core._kernels",
    "Compiled kernels of zmr's data plane (see zmr/native/kernels.c); optional: numpy passes do the same.",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__kernels(void)
{
    return PyModule_Create(&module);
}
