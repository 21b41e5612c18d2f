/* shipper._native: the per-line hot path in C, for the common form of every input.
 *
 * Each function does exactly what a Python loop of the shipper does for the lines in the
 * exact form Docker writes (and records in the plain form nearly every record has), over a
 * whole chunk or batch, and stops at the first item that is not in that form, returning its
 * position: the Python code handles that one item and calls again. So the Python code stays
 * the definition of every behaviour, and this file only has to agree with it on the common
 * form, which the differential tests (tests/unit/test_native.py) check over random input.
 *
 *   scan_frames    logs API multiplexed frames  -> LogRecords   (docker/frames.py)
 *   scan_jsonfile  json-file lines              -> LogRecords   (docker/jsonfile.py)
 *   scan_cri       CRI log file lines           -> LogRecords   (cri/parser.py)
 *   encode_joined  plain LogRecords             -> bulk entries, concatenated
 *                                                               (pipeline/encoder.py)
 *   redaction_candidates  messages -> which ones a redaction preset could match
 *                                                               (pipeline/redact.py)
 *   batch_facts    LogRecords -> timestamps, their range, per-stream counts, any flags
 *                                                               (sources/batch_facts.py)
 *
 * The contract with the Python code: records are built and read as plain tuples, by position,
 * in the order of LogRecord's fields (shipper/model.py), and the other arguments are tuples
 * and lists of a fixed layout (the record context and run state of shipper/lines, the entry
 * parts of encoder.py, batch_facts' result). RECORD_FIELDS names the fields in the order this
 * file uses them; LAYOUT_VERSION numbers the layouts: change it here and in shipper/native.py
 * whenever one changes. shipper/native.py checks both, and runs each function on a tiny input,
 * when it loads this module, and runs the pure-Python path instead if anything disagrees
 * (e.g. a stale build left from an older checkout).
 *
 * Why C: at ~100-byte lines the interpreter's per-line overhead (tens of bytecodes for each
 * of decode, encode and the redaction prefilter) was most of the shipper's CPU; here it is a
 * few hundred nanoseconds. Nothing here does I/O, keeps state between calls, or releases the
 * GIL; run counters live in a list the caller owns.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* ---- shared: the run counters and the record ------------------------------------------- */

#define LAYOUT_VERSION 1
/* LogRecord's fields, in the order append_record writes them and the readers read them. */
enum { F_CONTAINER_ID, F_TIMESTAMP_NS, F_STREAM, F_SEQ, F_MESSAGE, F_FLAGS, F_FIELDS, F_SIZE, N_FIELDS };
static const char *const RECORD_FIELDS[N_FIELDS] = {
    "container_id", "timestamp_ns", "stream", "seq", "message", "flags", "fields", "size",
};

/* state list: [stdout run ts, stdout run count, stderr run ts, stderr run count, newest ts];
 * a run ts of -1 means "no run yet" (the Python side's sentinel too). */
typedef struct {
    long long ts[2];
    long long count[2];
    long long newest;
} RunState;

/* 0 loaded; 1 a value is beyond 64 bits (a timestamp after 2262, which only the Python code
 * handles: the caller then takes no line); -1 an error. */
static int state_load(PyObject *state, RunState *rs) {
    if (!PyList_Check(state) || PyList_GET_SIZE(state) != 5) {
        PyErr_SetString(PyExc_TypeError, "state must be a list of 5 ints");
        return -1;
    }
    long long v[5];
    for (int i = 0; i < 5; i++) {
        int overflow;
        v[i] = PyLong_AsLongLongAndOverflow(PyList_GET_ITEM(state, i), &overflow);
        if (v[i] == -1 && PyErr_Occurred()) return -1;
        if (overflow) return 1;
    }
    rs->ts[0] = v[0];
    rs->count[0] = v[1];
    rs->ts[1] = v[2];
    rs->count[1] = v[3];
    rs->newest = v[4];
    return 0;
}

static int state_store(PyObject *state, const RunState *rs) {
    long long v[5] = {rs->ts[0], rs->count[0], rs->ts[1], rs->count[1], rs->newest};
    for (int i = 0; i < 5; i++) {
        PyObject *n = PyLong_FromLongLong(v[i]);
        if (n == NULL) return -1;
        if (PyList_SetItem(state, i, n) < 0) return -1; /* steals n */
    }
    return 0;
}

/* The seq of a line of `stream` (0 stdout, 1 stderr) stamped `ts`, updating the runs. */
static long long next_seq(RunState *rs, int stream, long long ts) {
    long long seq;
    if (ts == rs->ts[stream]) {
        seq = rs->count[stream]++;
    } else {
        seq = 0;
        rs->ts[stream] = ts;
        rs->count[stream] = 1;
    }
    if (ts > rs->newest) rs->newest = ts;
    return seq;
}

/* ctx: (LogRecord type, container_id, "stdout", "stderr", ()) */
typedef struct {
    PyTypeObject *type;
    PyObject *container_id;
    PyObject *streams[2];
    PyObject *empty;
} RecordContext;

static int context_load(PyObject *ctx, RecordContext *rc) {
    if (!PyTuple_Check(ctx) || PyTuple_GET_SIZE(ctx) != 5 || !PyType_Check(PyTuple_GET_ITEM(ctx, 0)) ||
        !PyType_IsSubtype((PyTypeObject *)PyTuple_GET_ITEM(ctx, 0), &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "ctx must be (record type, container id, stdout, stderr, ())");
        return -1;
    }
    rc->type = (PyTypeObject *)PyTuple_GET_ITEM(ctx, 0);
    rc->container_id = PyTuple_GET_ITEM(ctx, 1);
    rc->streams[0] = PyTuple_GET_ITEM(ctx, 2);
    rc->streams[1] = PyTuple_GET_ITEM(ctx, 3);
    rc->empty = PyTuple_GET_ITEM(ctx, 4);
    return 0;
}

/* Appends LogRecord(container_id, ts, stream, seq, message, (), None, size); steals message. */
static int append_record(PyObject *out, const RecordContext *rc, long long ts, int stream,
                         long long seq, PyObject *message, Py_ssize_t size) {
    PyObject *ts_obj = PyLong_FromLongLong(ts);
    PyObject *seq_obj = PyLong_FromLongLong(seq);
    PyObject *size_obj = PyLong_FromSsize_t(size);
    PyObject *record = NULL;
    if (ts_obj && seq_obj && size_obj) record = rc->type->tp_alloc(rc->type, N_FIELDS);
    if (record == NULL) {
        Py_XDECREF(ts_obj);
        Py_XDECREF(seq_obj);
        Py_XDECREF(size_obj);
        Py_DECREF(message);
        return -1;
    }
    /* What tuple.__new__(LogRecord, (...)) builds, without the intermediate tuple. */
    Py_INCREF(rc->container_id);
    PyTuple_SET_ITEM(record, F_CONTAINER_ID, rc->container_id);
    PyTuple_SET_ITEM(record, F_TIMESTAMP_NS, ts_obj);
    Py_INCREF(rc->streams[stream]);
    PyTuple_SET_ITEM(record, F_STREAM, rc->streams[stream]);
    PyTuple_SET_ITEM(record, F_SEQ, seq_obj);
    PyTuple_SET_ITEM(record, F_MESSAGE, message);
    Py_INCREF(rc->empty);
    PyTuple_SET_ITEM(record, F_FLAGS, rc->empty);
    Py_INCREF(Py_None);
    PyTuple_SET_ITEM(record, F_FIELDS, Py_None);
    PyTuple_SET_ITEM(record, F_SIZE, size_obj);
    int rv = PyList_Append(out, record);
    Py_DECREF(record);
    return rv;
}

/* ---- timestamps --------------------------------------------------------------------------- */

static const int64_t NS = 1000000000LL;
static const int64_t SECONDS_BEFORE_10000 = 253402300800LL; /* 10000-01-01T00:00:00Z */

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int64_t *m, int64_t *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yoe + era * 400 + (*m <= 2);
}

static int two_digits(const unsigned char *p, int *out) {
    if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9') return -1;
    *out = (p[0] - '0') * 10 + (p[1] - '0');
    return 0;
}

/* "YYYY-MM-DDTHH:MM:SS" (19 bytes) -> epoch seconds; -1 when it is not exactly that form with
 * a real date in 1970..2261 and seconds 0..59 (the Python parser decides everything else; from
 * 2262 on, nanoseconds since the epoch no longer fit in 64 bits). */
static int64_t parse_second(const unsigned char *p) {
    int c1, c2, mo, d, h, mi, s;
    if (p[4] != '-' || p[7] != '-' || p[10] != 'T' || p[13] != ':' || p[16] != ':') return -1;
    if (two_digits(p, &c1) || two_digits(p + 2, &c2) || two_digits(p + 5, &mo) ||
        two_digits(p + 8, &d) || two_digits(p + 11, &h) || two_digits(p + 14, &mi) ||
        two_digits(p + 17, &s))
        return -1;
    int y = c1 * 100 + c2;
    if (y < 1970 || y > 2261 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 59) return -1;
    static const int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int dim = month_days[mo - 1];
    if (mo == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))) dim = 29;
    if (d > dim) return -1;
    return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s;
}

/* ---- UTF-8 and JSON strings --------------------------------------------------------------- */

/* Length of the strictly valid UTF-8 sequence (2-4 bytes) at p, or 0 (overlong, surrogate,
 * beyond U+10FFFF, truncated): what both orjson and CPython's strict decoder accept. */
static Py_ssize_t utf8_sequence(const unsigned char *p, const unsigned char *end) {
    unsigned char c = p[0];
    if (c >= 0xC2 && c <= 0xDF) {
        if (end - p >= 2 && (p[1] & 0xC0) == 0x80) return 2;
        return 0;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return 0;
        if (c == 0xE0 && p[1] < 0xA0) return 0; /* overlong */
        if (c == 0xED && p[1] >= 0xA0) return 0; /* surrogate */
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        if (c == 0xF0 && p[1] < 0x90) return 0;  /* overlong */
        if (c == 0xF4 && p[1] >= 0x90) return 0; /* beyond U+10FFFF */
        return 4;
    }
    return 0;
}

static int hex4(const unsigned char *p, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    *out = v;
    return 0;
}

/* The JSON string whose opening quote is at p[-1]: decoded into buf (if not NULL; it needs
 * room for as many bytes as the raw string has), its UTF-8 length into *len and whether it is
 * all ASCII into *ascii. Returns the position after the closing quote, or NULL if the string
 * is not one orjson accepts (raw control character, bad escape, lone surrogate, invalid UTF-8,
 * no closing quote before end). */
/* Eight bytes at a time (SWAR): messages are mostly long runs that need no escaping, and a
 * test per byte was most of the time spent on them. `has_less(v, n)` is non-zero iff some byte
 * of v is below n (n <= 128), `has_byte(v, b)` iff some byte equals b: exact for "some byte",
 * whatever the others hold. */
#define SWAR_ONES 0x0101010101010101ULL
#define SWAR_HIGHS 0x8080808080808080ULL

static inline uint64_t load8(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t has_less(uint64_t v, unsigned char n) {
    return (v - SWAR_ONES * n) & ~v & SWAR_HIGHS;
}

static inline uint64_t has_byte(uint64_t v, unsigned char b) {
    uint64_t x = v ^ (SWAR_ONES * b);
    return (x - SWAR_ONES) & ~x & SWAR_HIGHS;
}

/* Some byte that orjson escapes: a control character, a quote or a backslash. */
static inline uint64_t needs_escape8(uint64_t v) {
    return has_less(v, 0x20) | has_byte(v, '"') | has_byte(v, '\\');
}

static const unsigned char *json_string(const unsigned char *p, const unsigned char *end,
                                        unsigned char *buf, Py_ssize_t *len, int *ascii) {
    unsigned char *w = buf;
    Py_ssize_t n = 0;
    int all_ascii = 1;
    while (p < end) {
        unsigned char c = *p;
        if (c == '"') {
            *len = n;
            *ascii = all_ascii;
            return p + 1;
        }
        if (c < 0x20) return NULL;
        if (c < 0x80 && c != '\\') {
            /* a run of plain ASCII: copy it whole */
            const unsigned char *start = p;
            while (end - p >= 8) {
                uint64_t v = load8(p);
                if ((needs_escape8(v) | (v & SWAR_HIGHS)) != 0) break;
                p += 8;
            }
            while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\') p++;
            if (w) {
                memcpy(w, start, (size_t)(p - start));
                w += p - start;
            }
            n += p - start;
            continue;
        }
        if (c >= 0x80) {
            Py_ssize_t k = utf8_sequence(p, end);
            if (k == 0) return NULL;
            if (w) {
                memcpy(w, p, (size_t)k);
                w += k;
            }
            n += k;
            p += k;
            all_ascii = 0;
            continue;
        }
        /* an escape */
        if (end - p < 2) return NULL;
        unsigned char e = p[1];
        unsigned char simple = 0;
        switch (e) {
        case '"': simple = '"'; break;
        case '\\': simple = '\\'; break;
        case '/': simple = '/'; break;
        case 'b': simple = '\b'; break;
        case 'f': simple = '\f'; break;
        case 'n': simple = '\n'; break;
        case 'r': simple = '\r'; break;
        case 't': simple = '\t'; break;
        case 'u': break;
        default: return NULL;
        }
        if (e != 'u') {
            if (w) *w++ = simple;
            n++;
            p += 2;
            continue;
        }
        unsigned cp;
        if (end - p < 6 || hex4(p + 2, &cp)) return NULL;
        p += 6;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return NULL; /* lone low surrogate */
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            unsigned low;
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &low) || low < 0xDC00 ||
                low > 0xDFFF)
                return NULL; /* no low surrogate after a high one */
            p += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
        }
        unsigned char tmp[4];
        int k;
        if (cp < 0x80) {
            tmp[0] = (unsigned char)cp;
            k = 1;
        } else if (cp < 0x800) {
            tmp[0] = (unsigned char)(0xC0 | (cp >> 6));
            tmp[1] = (unsigned char)(0x80 | (cp & 0x3F));
            k = 2;
        } else if (cp < 0x10000) {
            tmp[0] = (unsigned char)(0xE0 | (cp >> 12));
            tmp[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            tmp[2] = (unsigned char)(0x80 | (cp & 0x3F));
            k = 3;
        } else {
            tmp[0] = (unsigned char)(0xF0 | (cp >> 18));
            tmp[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
            tmp[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
            tmp[3] = (unsigned char)(0x80 | (cp & 0x3F));
            k = 4;
        }
        if (cp >= 0x80) all_ascii = 0;
        if (w) {
            memcpy(w, tmp, (size_t)k);
            w += k;
        }
        n += k;
    }
    return NULL;
}

/* A str from UTF-8 bytes already known to be valid. */
static PyObject *make_str(const unsigned char *s, Py_ssize_t n, int ascii) {
    if (ascii) {
        PyObject *str = PyUnicode_New(n, 127);
        if (str == NULL) return NULL;
        memcpy(PyUnicode_DATA(str), s, (size_t)n);
        return str;
    }
    return PyUnicode_DecodeUTF8((const char *)s, n, "strict");
}

/* Strict UTF-8 of raw bytes: 1 all ASCII, 0 valid, -1 invalid. Eight ASCII bytes at a time
 * (messages are mostly ASCII). */
static int utf8_check(const unsigned char *p, const unsigned char *end) {
    int ascii = 1;
    while (p < end) {
        if (end - p >= 8 && (load8(p) & SWAR_HIGHS) == 0) {
            p += 8;
            continue;
        }
        if (*p < 0x80) {
            p++;
            continue;
        }
        Py_ssize_t k = utf8_sequence(p, end);
        if (k == 0) return -1;
        p += k;
        ascii = 0;
    }
    return ascii;
}

/* ---- scan_frames ------------------------------------------------------------------------ */

static int parse_ll(PyObject *obj, long long *out) {
    *out = PyLong_AsLongLong(obj);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* scan_frames(data, pos, out, ctx, max_size, state) -> position of the first frame not taken
 * (a frame not in the exact form `<header><30-byte timestamp> <valid UTF-8 text>\n`, or an
 * incomplete frame). The fast loop of LogStreamDecoder._feed_multiplexed. */
static PyObject *scan_frames(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 6 || !PyBytes_Check(args[0]) || !PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "scan_frames(data, pos, out, ctx, max_size, state)");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t end = PyBytes_GET_SIZE(args[0]);
    long long pos_ll, max_size;
    RecordContext rc;
    RunState rs;
    if (parse_ll(args[1], &pos_ll) || parse_ll(args[4], &max_size) || context_load(args[3], &rc))
        return NULL;
    int loaded = state_load(args[5], &rs);
    if (loaded < 0) return NULL;
    Py_ssize_t pos = (Py_ssize_t)pos_ll;
    if (pos < 0 || pos > end) {
        PyErr_SetString(PyExc_ValueError, "pos out of range");
        return NULL;
    }
    if (loaded == 1) return PyLong_FromSsize_t(pos);
    const unsigned char *cached_second = NULL; /* the 19 bytes last parsed, and their epoch */
    int64_t cached_epoch = -1;
    int failed = 0;
    while (end - pos >= 8) {
        const unsigned char *h = data + pos;
        uint32_t size = ((uint32_t)h[4] << 24) | ((uint32_t)h[5] << 16) | ((uint32_t)h[6] << 8) | h[7];
        Py_ssize_t frame_end = pos + 8 + (Py_ssize_t)size;
        if (frame_end > end) break;
        if (!(size > 31 && (long long)size <= max_size && data[frame_end - 1] == '\n' && h[38] == ' ' &&
              h[37] == 'Z' && h[27] == '.'))
            break;
        int64_t epoch;
        if (cached_second != NULL && memcmp(cached_second, h + 8, 19) == 0) {
            epoch = cached_epoch;
        } else {
            epoch = parse_second(h + 8);
            if (epoch < 0) break;
            cached_second = h + 8;
            cached_epoch = epoch;
        }
        int64_t fraction = 0;
        int digits_ok = 1;
        for (int i = 28; i < 37; i++) {
            if (h[i] < '0' || h[i] > '9') {
                digits_ok = 0;
                break;
            }
            fraction = fraction * 10 + (h[i] - '0');
        }
        if (!digits_ok) break;
        const unsigned char *text = h + 39;
        Py_ssize_t text_len = frame_end - 1 - (pos + 39);
        int ascii = utf8_check(text, text + text_len);
        if (ascii < 0) break;
        PyObject *message = make_str(text, text_len, ascii);
        if (message == NULL) {
            failed = 1;
            break;
        }
        int64_t ts = epoch * NS + fraction;
        int stream = h[0] == 2 ? 1 : 0;
        long long seq = next_seq(&rs, stream, ts);
        if (append_record(args[2], &rc, ts, stream, seq, message, (Py_ssize_t)size - 32) < 0) {
            failed = 1;
            break;
        }
        pos = frame_end;
    }
    if (failed || state_store(args[5], &rs) < 0) return NULL;
    return PyLong_FromSsize_t(pos);
}

/* ---- scan_jsonfile ---------------------------------------------------------------------- */

/* Skips `"attrs":{"k":"v",...}` (string values only, as the json-file driver writes them),
 * validating every string as json_string does; returns the position after `}` or NULL. */
static const unsigned char *skip_attrs(const unsigned char *p, const unsigned char *end) {
    static const char key[] = "\"attrs\":{";
    size_t key_len = sizeof(key) - 1;
    if ((size_t)(end - p) < key_len || memcmp(p, key, key_len) != 0) return NULL;
    p += key_len;
    Py_ssize_t len;
    int ascii;
    if (p < end && *p == '}') return p + 1;
    for (;;) {
        if (p >= end || *p != '"') return NULL;
        p = json_string(p + 1, end, NULL, &len, &ascii);
        if (p == NULL || p >= end || *p != ':') return NULL;
        p++;
        if (p >= end || *p != '"') return NULL;
        p = json_string(p + 1, end, NULL, &len, &ascii);
        if (p == NULL || p >= end) return NULL;
        if (*p == '}') return p + 1;
        if (*p != ',') return NULL;
        p++;
    }
}

static const int64_t FRACTION_SCALE[10] = {
    1000000000LL, 100000000LL, 10000000LL, 1000000LL, 100000LL, 10000LL, 1000LL, 100LL, 10LL, 1LL};

/* scan_jsonfile(data, pos, out, ctx, since_ns, max_bytes, tty, state) -> the position of the
 * first line not taken. data[pos:] must end with a newline. A line is taken when it is exactly
 * `{"log":"...","stream":"stdout|stderr",["attrs":{...},]"time":"<RFC 3339 UTC>"}` and either
 * stamped before since_ns (skipped) or a complete message of at most max_bytes (a record).
 * The fast loop of JsonFileDecoder._entries. */
static PyObject *scan_jsonfile(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 8 || !PyBytes_Check(args[0]) || !PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "scan_jsonfile(data, pos, out, ctx, since_ns, max_bytes, tty, state)");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    const unsigned char *end = data + PyBytes_GET_SIZE(args[0]);
    long long pos_ll, since, max_bytes;
    RecordContext rc;
    RunState rs;
    if (parse_ll(args[1], &pos_ll) || parse_ll(args[4], &since) || parse_ll(args[5], &max_bytes) ||
        context_load(args[3], &rc))
        return NULL;
    int loaded = state_load(args[7], &rs);
    if (loaded < 0) return NULL;
    int tty = PyObject_IsTrue(args[6]);
    if (tty < 0) return NULL;
    if (pos_ll < 0 || pos_ll > (long long)(end - data)) {
        PyErr_SetString(PyExc_ValueError, "pos out of range");
        return NULL;
    }
    if (loaded == 1) return PyLong_FromLongLong(pos_ll);
    const unsigned char *line = data + pos_ll;
    unsigned char *buf = NULL;
    Py_ssize_t buf_size = 0;
    const unsigned char *cached_second = NULL;
    int64_t cached_epoch = -1;
    int failed = 0;
    static const char log_key[] = "{\"log\":\"";
    static const char stream_key[] = "\"stream\":\"";
    static const char time_key[] = "\"time\":\"";
    while (line < end) {
        const unsigned char *nl = memchr(line, '\n', (size_t)(end - line));
        if (nl == NULL) break;
        const unsigned char *p = line;
        if (nl - p < 8 || memcmp(p, log_key, 8) != 0) break;
        p += 8;
        if (buf_size < nl - p) {
            PyMem_Free(buf);
            buf_size = (nl - p) * 2 + 256;
            buf = PyMem_Malloc((size_t)buf_size);
            if (buf == NULL) {
                PyErr_NoMemory();
                failed = 1;
                break;
            }
        }
        Py_ssize_t log_len;
        int ascii;
        p = json_string(p, nl, buf, &log_len, &ascii);
        if (p == NULL || nl - p < 11 || p[0] != ',' || memcmp(p + 1, stream_key, 10) != 0) break;
        p += 11;
        int stream;
        if (nl - p >= 8 && memcmp(p, "stdout\",", 8) == 0) stream = 0;
        else if (nl - p >= 8 && memcmp(p, "stderr\",", 8) == 0) stream = 1;
        else break;
        p += 8;
        if (nl - p >= 9 && p[0] == '"' && p[1] == 'a') {
            p = skip_attrs(p, nl);
            if (p == NULL || p >= nl || *p != ',') break;
            p++;
        }
        if (nl - p < 8 || memcmp(p, time_key, 8) != 0) break;
        p += 8;
        /* the time: YYYY-MM-DDTHH:MM:SS[.d{1,9}]Z, then "} and the newline */
        if (nl - p < 22) break;
        const unsigned char *t = p;
        int64_t epoch;
        if (cached_second != NULL && memcmp(cached_second, t, 19) == 0) {
            epoch = cached_epoch;
        } else {
            epoch = parse_second(t);
            if (epoch < 0) break;
            cached_second = t;
            cached_epoch = epoch;
        }
        p = t + 19;
        int64_t nanos = 0;
        if (*p == '.') {
            p++;
            const unsigned char *digits = p;
            int64_t value = 0;
            while (p < nl && *p >= '0' && *p <= '9' && p - digits < 10) value = value * 10 + (*p++ - '0');
            Py_ssize_t n_digits = p - digits;
            if (n_digits < 1 || n_digits > 9) break;
            nanos = value * FRACTION_SCALE[n_digits];
        }
        if (nl - p != 3 || p[0] != 'Z' || p[1] != '"' || p[2] != '}') break;
        int64_t ts = epoch * NS + nanos;
        if (ts < since) {
            line = nl + 1;
            continue;
        }
        if (log_len == 0 || buf[log_len - 1] != '\n') break; /* a partial: the Python path */
        Py_ssize_t size = log_len - 1;
        if (tty && size > 0 && buf[size - 1] == '\r') size--;
        if (size > max_bytes) break;
        PyObject *message = make_str(buf, size, ascii);
        if (message == NULL) {
            failed = 1;
            break;
        }
        long long seq = next_seq(&rs, stream, ts);
        if (append_record(args[2], &rc, ts, stream, seq, message, size) < 0) {
            failed = 1;
            break;
        }
        line = nl + 1;
    }
    PyMem_Free(buf);
    if (failed || state_store(args[7], &rs) < 0) return NULL;
    return PyLong_FromSsize_t(line - data);
}

/* ---- scan_cri --------------------------------------------------------------------------- */

/* The timestamp that starts a CRI line at p, up to the space after it (before nl):
 * `YYYY-MM-DDTHH:MM:SS`, an optional `.` with 1 to 9 digits, then `Z` or `±HH:MM` (any two
 * digits each, as the Python rule takes them) -> nanoseconds since the epoch, UTC, in *ts.
 * Returns the position of that space, or NULL when the line does not start in exactly that
 * form (the Python rule then decides: no or more than 9 digits, years outside 1970..2261, a
 * second of 60, lower-case letters, ...). `cache` holds the 19 bytes last parsed and their
 * epoch second: lines come many to a second. */
typedef struct {
    const unsigned char *second;
    int64_t epoch;
} SecondCache;

static const unsigned char *cri_timestamp(const unsigned char *p, const unsigned char *nl,
                                          SecondCache *cache, int64_t *ts) {
    if (nl - p < 21) return NULL; /* the 19 bytes, a zone and the space */
    int64_t epoch;
    if (cache->second != NULL && memcmp(cache->second, p, 19) == 0) {
        epoch = cache->epoch;
    } else {
        epoch = parse_second(p);
        if (epoch < 0) return NULL;
        cache->second = p;
        cache->epoch = epoch;
    }
    const unsigned char *q = p + 19;
    int64_t nanos = 0;
    if (*q == '.') {
        const unsigned char *digits = ++q;
        int64_t value = 0;
        while (q < nl && *q >= '0' && *q <= '9' && q - digits < 10) value = value * 10 + (*q++ - '0');
        Py_ssize_t n_digits = q - digits;
        if (n_digits < 1 || n_digits > 9) return NULL;
        nanos = value * FRACTION_SCALE[n_digits];
    }
    int64_t offset = 0;
    if (q < nl && *q == 'Z') {
        q++;
    } else if (nl - q >= 6 && (*q == '+' || *q == '-') && q[3] == ':') {
        int hours, minutes;
        if (two_digits(q + 1, &hours) || two_digits(q + 4, &minutes)) return NULL;
        offset = (int64_t)hours * 3600 + (int64_t)minutes * 60;
        if (*q == '-') offset = -offset;
        q += 6;
    } else {
        return NULL;
    }
    if (q >= nl || *q != ' ') return NULL;
    /* At most 2261-12-31T23:59:59.999999999 plus 99:99 hours: still within 64 bits. */
    *ts = (epoch - offset) * NS + nanos;
    return q;
}

/* scan_cri(data, pos, out, ctx, since_ns, max_bytes, state) -> the position of the first line
 * not taken. data[pos:] must end with a newline. A line is taken when it is exactly
 * `<timestamp> stdout|stderr F <message>` (see cri_timestamp) with a message of valid UTF-8 of
 * at most max_bytes: a whole line in one part, which makes a record when the assembler holds
 * no line (the caller's duty), as LineAssembler.add_part makes it. Its seq is counted even when
 * it is stamped before since_ns, and then it makes no record: CriDecoder drops those records
 * after joining. Everything else (a `P` part, a tag with a `:`, a message too long, ...) stops
 * the scan. The fast loop of CriDecoder.feed (shipper/cri/parser.py). */
static PyObject *scan_cri(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 7 || !PyBytes_Check(args[0]) || !PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "scan_cri(data, pos, out, ctx, since_ns, max_bytes, state)");
        return NULL;
    }
    const unsigned char *data = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    const unsigned char *end = data + PyBytes_GET_SIZE(args[0]);
    long long pos_ll, since, max_bytes;
    RecordContext rc;
    RunState rs;
    if (parse_ll(args[1], &pos_ll) || parse_ll(args[4], &since) || parse_ll(args[5], &max_bytes) ||
        context_load(args[3], &rc))
        return NULL;
    int loaded = state_load(args[6], &rs);
    if (loaded < 0) return NULL;
    if (pos_ll < 0 || pos_ll > (long long)(end - data)) {
        PyErr_SetString(PyExc_ValueError, "pos out of range");
        return NULL;
    }
    if (loaded == 1) return PyLong_FromLongLong(pos_ll);
    const unsigned char *line = data + pos_ll;
    SecondCache cache = {NULL, -1};
    int failed = 0;
    while (line < end) {
        const unsigned char *nl = memchr(line, '\n', (size_t)(end - line));
        if (nl == NULL) break;
        int64_t ts;
        const unsigned char *p = cri_timestamp(line, nl, &cache, &ts);
        /* then " stdout F " or " stderr F ": the space ending the tag must be there */
        if (p == NULL || nl - p < 10 || p[7] != ' ' || p[8] != 'F' || p[9] != ' ') break;
        int stream;
        if (memcmp(p, " stdout", 7) == 0) stream = 0;
        else if (memcmp(p, " stderr", 7) == 0) stream = 1;
        else break;
        const unsigned char *text = p + 10;
        Py_ssize_t size = nl - text;
        if (size > max_bytes) break;
        int ascii = utf8_check(text, nl);
        if (ascii < 0) break;
        long long seq = next_seq(&rs, stream, ts);
        if (ts >= since) {
            PyObject *message = make_str(text, size, ascii);
            if (message == NULL || append_record(args[2], &rc, ts, stream, seq, message, size) < 0) {
                failed = 1;
                break;
            }
        }
        line = nl + 1;
    }
    if (failed || state_store(args[6], &rs) < 0) return NULL;
    return PyLong_FromSsize_t(line - data);
}

/* ---- encode_plain ----------------------------------------------------------------------- */

static const char HEX[] = "0123456789abcdef";

/* Bytes orjson writes for one character below 0x80 (0: the character itself). */
static const unsigned char ESCAPE[128] = {
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u',
    'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u', 'u',
    0,   0,   '"', 0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
    0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   '\\', 0,  0,   0,
};

static Py_ssize_t escaped_length(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t total = n;
    Py_ssize_t i = 0;
    while (i < n) {
        if (n - i >= 8 && !needs_escape8(load8(s + i))) {
            i += 8;
            continue;
        }
        Py_ssize_t stop = n - i >= 8 ? i + 8 : n;
        for (; i < stop; i++) {
            unsigned char c = s[i];
            if (c < 0x80 && ESCAPE[c]) total += ESCAPE[c] == 'u' ? 5 : 1;
        }
    }
    return total;
}

static char *write_escaped(char *w, const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        Py_ssize_t run = i;
        while (n - run >= 8 && !needs_escape8(load8(s + run))) run += 8;
        while (run < n && (s[run] >= 0x80 || !ESCAPE[s[run]])) run++;
        memcpy(w, s + i, (size_t)(run - i));
        w += run - i;
        if (run == n) break;
        unsigned char c = s[run];
        *w++ = '\\';
        if (ESCAPE[c] == 'u') {
            memcpy(w, "u00", 3);
            w[3] = HEX[c >> 4];
            w[4] = HEX[c & 15];
            w += 5;
        } else {
            *w++ = (char)ESCAPE[c];
        }
        i = run + 1;
    }
    return w;
}

static char *write_hex(char *w, unsigned long long v, int min_digits) {
    char tmp[16];
    int n = 0;
    do {
        tmp[n++] = HEX[v & 15];
        v >>= 4;
    } while (v);
    while (n < min_digits) tmp[n++] = '0';
    while (n) *w++ = tmp[--n];
    return w;
}

static int bytes_part(PyObject *parts, Py_ssize_t i, const char **s, Py_ssize_t *n) {
    PyObject *b = PyTuple_GET_ITEM(parts, i);
    if (!PyBytes_Check(b)) {
        PyErr_SetString(PyExc_TypeError, "parts must be bytes");
        return -1;
    }
    *s = PyBytes_AS_STRING(b);
    *n = PyBytes_GET_SIZE(b);
    return 0;
}

/* parts: (action head, id middle stdout, id middle stderr, tail stdout, tail stderr, "stdout",
 * "stderr"), see `ContainerDocument.native_parts` in pipeline/encoder.py. */
typedef struct {
    const char *head, *mid[2], *tail[2];
    Py_ssize_t head_n, mid_n[2], tail_n[2];
    PyObject *streams[2];
} EntryParts;

static int entry_parts_load(PyObject *parts, EntryParts *ep) {
    if (!PyTuple_Check(parts) || PyTuple_GET_SIZE(parts) != 7) {
        PyErr_SetString(PyExc_TypeError, "parts must be a tuple of 7");
        return -1;
    }
    if (bytes_part(parts, 0, &ep->head, &ep->head_n) || bytes_part(parts, 1, &ep->mid[0], &ep->mid_n[0]) ||
        bytes_part(parts, 2, &ep->mid[1], &ep->mid_n[1]) || bytes_part(parts, 3, &ep->tail[0], &ep->tail_n[0]) ||
        bytes_part(parts, 4, &ep->tail[1], &ep->tail_n[1]))
        return -1;
    ep->streams[0] = PyTuple_GET_ITEM(parts, 5);
    ep->streams[1] = PyTuple_GET_ITEM(parts, 6);
    return 0;
}

/* What one plain record's entry is made of. `text` points into the message's UTF-8, which
 * lives as long as the record (the caller's list holds it). */
typedef struct {
    long long ts, seq;
    int stream;
    const char *text;
    Py_ssize_t text_n, size;
} PlainEntry;

static const char STAMP_HEAD[] = "\"}}\n{\"@timestamp\":\"";
static const char MESSAGE_HEAD[] = "Z\",\"message\":\"";

static int hex_digits(unsigned long long v) {
    int n = 1;
    while (v >>= 4) n++;
    return n;
}

/* 1 and *e filled in if the record is plain: no flags or fields, a Docker stream, a message
 * with valid UTF-8, a time in 1970..9999 and a seq >= 0. 0 for any other (the Python path
 * decides), with no exception set. */
static int plain_entry(PyObject *record, const EntryParts *ep, PlainEntry *e) {
    if (!PyTuple_Check(record) || PyTuple_GET_SIZE(record) != N_FIELDS) return 0;
    PyObject *flags = PyTuple_GET_ITEM(record, F_FLAGS);
    if (PyTuple_GET_ITEM(record, F_FIELDS) != Py_None || !PyTuple_Check(flags) || PyTuple_GET_SIZE(flags)) return 0;
    PyObject *stream_obj = PyTuple_GET_ITEM(record, F_STREAM);
    if (stream_obj == ep->streams[0]) e->stream = 0;
    else if (stream_obj == ep->streams[1]) e->stream = 1;
    else if (PyUnicode_Check(stream_obj) && PyUnicode_Compare(stream_obj, ep->streams[0]) == 0) e->stream = 0;
    else if (PyUnicode_Check(stream_obj) && PyUnicode_Compare(stream_obj, ep->streams[1]) == 0) e->stream = 1;
    else {
        PyErr_Clear(); /* a failed comparison is "not plain" too */
        return 0;
    }
    PyObject *ts_obj = PyTuple_GET_ITEM(record, F_TIMESTAMP_NS), *seq_obj = PyTuple_GET_ITEM(record, F_SEQ);
    PyObject *message = PyTuple_GET_ITEM(record, F_MESSAGE);
    if (!PyLong_CheckExact(ts_obj) || !PyLong_CheckExact(seq_obj) || !PyUnicode_CheckExact(message)) return 0;
    int overflow;
    e->ts = PyLong_AsLongLongAndOverflow(ts_obj, &overflow);
    if (overflow || e->ts < 0 || e->ts / NS >= SECONDS_BEFORE_10000) return 0;
    e->seq = PyLong_AsLongLongAndOverflow(seq_obj, &overflow);
    if (overflow || e->seq < 0) return 0;
    e->text = PyUnicode_AsUTF8AndSize(message, &e->text_n);
    if (e->text == NULL) {
        PyErr_Clear(); /* a lone surrogate: the Python path decides */
        return 0;
    }
    e->size = ep->head_n + 16 + ep->mid_n[e->stream] + hex_digits((unsigned long long)e->seq) +
              (Py_ssize_t)sizeof(STAMP_HEAD) - 1 + 19 + 1 + 9 + (Py_ssize_t)sizeof(MESSAGE_HEAD) - 1 +
              escaped_length((const unsigned char *)e->text, e->text_n) + 2 + ep->tail_n[e->stream];
    return 1;
}

/* "YYYY-MM-DDTHH:MM:SS" of the last second written, kept across the entries of one call. */
typedef struct {
    int64_t second;
    char date[19];
} DateCache;

/* Writes the entry, exactly e->size bytes, as encode_records writes it with its template:
 *   <action head><ts %016x><id middle><seq %x>"}}\n{"@timestamp":"<YYYY-MM-DDTHH:MM:SS>.<ns
 *   %09d>Z","message":<message as orjson writes it>,<tail> */
static char *write_entry(char *w, const EntryParts *ep, const PlainEntry *e, DateCache *dc) {
    int64_t second = e->ts / NS, nanos = e->ts % NS;
    if (second != dc->second) {
        int64_t y, m, d;
        civil_from_days(second / 86400, &y, &m, &d);
        int64_t rest = second % 86400;
        int fields[6] = {(int)y, (int)m, (int)d, (int)(rest / 3600), (int)(rest / 60 % 60), (int)(rest % 60)};
        /* the year in 4 digits (1970..9999), the rest in 2 */
        char *date = dc->date;
        date[0] = (char)('0' + fields[0] / 1000);
        date[1] = (char)('0' + fields[0] / 100 % 10);
        date[2] = (char)('0' + fields[0] / 10 % 10);
        date[3] = (char)('0' + fields[0] % 10);
        for (int f = 1; f < 6; f++) {
            date[1 + 3 * f] = "--T::"[f - 1];
            date[2 + 3 * f] = (char)('0' + fields[f] / 10);
            date[3 + 3 * f] = (char)('0' + fields[f] % 10);
        }
        dc->second = second;
    }
    int stream = e->stream;
    memcpy(w, ep->head, (size_t)ep->head_n);
    w += ep->head_n;
    w = write_hex(w, (unsigned long long)e->ts, 16);
    memcpy(w, ep->mid[stream], (size_t)ep->mid_n[stream]);
    w += ep->mid_n[stream];
    w = write_hex(w, (unsigned long long)e->seq, 1);
    memcpy(w, STAMP_HEAD, sizeof(STAMP_HEAD) - 1);
    w += sizeof(STAMP_HEAD) - 1;
    memcpy(w, dc->date, 19);
    w += 19;
    *w++ = '.';
    for (int k = 8; k >= 0; k--) {
        w[k] = (char)('0' + nanos % 10);
        nanos /= 10;
    }
    w += 9;
    memcpy(w, MESSAGE_HEAD, sizeof(MESSAGE_HEAD) - 1);
    w += sizeof(MESSAGE_HEAD) - 1;
    w = write_escaped(w, (const unsigned char *)e->text, e->text_n);
    *w++ = '"';
    *w++ = ',';
    memcpy(w, ep->tail[stream], (size_t)ep->tail_n[stream]);
    return w + ep->tail_n[stream];
}

/* encode_joined(records, pos, out, lengths, parts) -> the index of the first record not
 * encoded (one that `plain_entry` refuses). Appends the entries of the records it encodes to
 * `out` as ONE bytes object, their concatenation (nothing if it encodes none), and each
 * entry's length to `lengths`. The disk buffer stores a batch's entries as one block: writing them into it
 * directly saves a bytes object per entry and the join that followed (two passes over the
 * records, the first to size the block). */
static PyObject *encode_joined(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    EntryParts ep;
    if (nargs != 5 || !PyList_Check(args[0]) || !PyList_Check(args[2]) || !PyList_Check(args[3]) ||
        !PyTuple_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError, "encode_joined(records, pos, out, lengths, parts)");
        return NULL;
    }
    long long pos_ll;
    if (parse_ll(args[1], &pos_ll) || entry_parts_load(args[4], &ep)) return NULL;
    PyObject *records = args[0], *lengths = args[3];
    Py_ssize_t first = pos_ll < 0 ? 0 : (Py_ssize_t)pos_ll;
    Py_ssize_t count = PyList_GET_SIZE(records);
    if (first >= count) return PyLong_FromSsize_t(first);
    PlainEntry *entries = PyMem_Malloc(sizeof(PlainEntry) * (size_t)(count - first));
    if (entries == NULL) return PyErr_NoMemory();
    Py_ssize_t n = 0, total = 0;
    while (first + n < count && plain_entry(PyList_GET_ITEM(records, first + n), &ep, &entries[n])) {
        if (entries[n].size > PY_SSIZE_T_MAX - total) break; /* cannot be one bytes object */
        total += entries[n].size;
        n++;
    }
    PyObject *data = NULL;
    if (n > 0) {
        data = PyBytes_FromStringAndSize(NULL, total);
        if (data == NULL) goto fail;
        char *w = PyBytes_AS_STRING(data);
        DateCache dc = {-1, {0}};
        for (Py_ssize_t k = 0; k < n; k++) {
            w = write_entry(w, &ep, &entries[k], &dc);
            PyObject *length = PyLong_FromSsize_t(entries[k].size);
            if (length == NULL) goto fail;
            int rv = PyList_Append(lengths, length);
            Py_DECREF(length);
            if (rv < 0) goto fail;
        }
        if (PyList_Append(args[2], data) < 0) goto fail;
        Py_DECREF(data);
    }
    PyMem_Free(entries);
    return PyLong_FromSsize_t(first + n);
fail:
    Py_XDECREF(data);
    PyMem_Free(entries);
    return NULL;
}

/* ---- redaction_candidates --------------------------------------------------------------- */

/* Up to 32 needles, searched in one pass: for each byte, the needles that may start there,
 * and for each byte, the needles whose second byte it may be. Most positions of ordinary text
 * start some needle ('p', 's', 't', ...) but few start one of their bigrams: the AND of the two
 * masks rejects them with two lookups instead of a compare per needle. */
typedef struct {
    const unsigned char *bytes[32];
    Py_ssize_t len[32];
    int fold[32];
    uint32_t starting[256];
    uint32_t second[256]; /* one-byte needles have their bit set for every byte */
    uint32_t single;      /* the one-byte needles */
} Needles;

static unsigned char fold_ascii(unsigned char c) { return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c; }

static int needles_load(Needles *nd, PyObject *lower, PyObject *exact) {
    memset(nd->starting, 0, sizeof(nd->starting));
    memset(nd->second, 0, sizeof(nd->second));
    nd->single = 0;
    int count = 0;
    PyObject *sets[2] = {lower, exact};
    for (int set = 0; set < 2; set++) {
        for (Py_ssize_t k = 0; k < PyTuple_GET_SIZE(sets[set]); k++) {
            PyObject *needle = PyTuple_GET_ITEM(sets[set], k);
            if (!PyBytes_Check(needle) || PyBytes_GET_SIZE(needle) == 0 || count == 32) {
                PyErr_SetString(PyExc_TypeError, "needles must be at most 32 non-empty bytes");
                return -1;
            }
            const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(needle);
            nd->bytes[count] = b;
            nd->len[count] = PyBytes_GET_SIZE(needle);
            nd->fold[count] = set == 0;
            nd->starting[b[0]] |= 1u << count;
            if (set == 0 && b[0] >= 'a' && b[0] <= 'z') nd->starting[b[0] - 32] |= 1u << count;
            if (nd->len[count] == 1) {
                nd->single |= 1u << count;
                for (int c = 0; c < 256; c++) nd->second[c] |= 1u << count;
            } else {
                nd->second[b[1]] |= 1u << count;
                if (set == 0 && b[1] >= 'a' && b[1] <= 'z') nd->second[b[1] - 32] |= 1u << count;
            }
            count++;
        }
    }
    return 0;
}

/* Whether a needle occurs in s[0:n] (lower needles: ignoring ASCII case), or, with cards, a
 * card-like run of digits starts: 8 digits, or 4 digits, a space or dash, 4 digits (what
 * _BatchPrefilter's shape search looks for). One pass for both. */
static int any_candidate(const Needles *nd, const unsigned char *s, Py_ssize_t n, int cards) {
    Py_ssize_t run = 0; /* digits in a row */
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (cards) {
            if (c >= '0' && c <= '9') {
                if (++run >= 8) return 1;
                if (run >= 4 && i + 5 < n && (s[i + 1] == ' ' || s[i + 1] == '-')) {
                    int ok = 1;
                    for (int j = 2; j <= 5; j++)
                        if (s[i + j] < '0' || s[i + j] > '9') ok = 0;
                    if (ok) return 1;
                }
            } else {
                run = 0;
            }
        }
        uint32_t m = nd->starting[c];
        if (!m) continue;
        m &= i + 1 < n ? nd->second[s[i + 1]] : nd->single;
        while (m) {
            int k = __builtin_ctz(m);
            m &= m - 1;
            Py_ssize_t len = nd->len[k];
            if (i + len > n) continue;
            const unsigned char *needle = nd->bytes[k];
            Py_ssize_t j = 2; /* the first two bytes matched (masks) */
            if (len < 2) return 1;
            if (nd->fold[k]) {
                while (j < len && fold_ascii(s[i + j]) == needle[j]) j++;
            } else {
                while (j < len && s[i + j] == needle[j]) j++;
            }
            if (j == len) return 1;
        }
    }
    return 0;
}

/* Whether a message that is not ASCII holds a character that the ASCII-only checks above
 * would miss: one whose lower case has ASCII letters (U+0130, U+212A), or (cards) a decimal
 * digit of another script, which the Python patterns' \d matches. */
static int unicode_surprise(PyObject *message, int cards) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(message);
    int kind = PyUnicode_KIND(message);
    const void *data = PyUnicode_DATA(message);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (c < 0x80) continue;
        if (c == 0x130 || c == 0x212A) return 1;
        if (cards && Py_UNICODE_ISDECIMAL(c)) return 1;
    }
    return 0;
}

/* redaction_candidates(messages, lower_needles, exact_needles, cards) -> indexes, in order, of
 * the messages some preset could match: every message in which a needle occurs (lower
 * needles: ignoring ASCII case), or, with cards, a card-like run of digits. A superset of what
 * the Python prefilter (_presets_prefilter) says, message by message. */
static PyObject *redaction_candidates(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 4 || !PyList_Check(args[0]) || !PyTuple_Check(args[1]) || !PyTuple_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "redaction_candidates(messages, lower_needles, exact_needles, cards)");
        return NULL;
    }
    int cards = PyObject_IsTrue(args[3]);
    if (cards < 0) return NULL;
    Needles needles;
    if (needles_load(&needles, args[1], args[2]) < 0) return NULL;
    PyObject *result = PyList_New(0);
    if (result == NULL) return NULL;
    Py_ssize_t count = PyList_GET_SIZE(args[0]);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *message = PyList_GET_ITEM(args[0], i);
        int candidate = 0;
        Py_ssize_t n = 0;
        const unsigned char *s = NULL;
        if (!PyUnicode_Check(message)) {
            candidate = 1;
        } else {
            s = (const unsigned char *)PyUnicode_AsUTF8AndSize(message, &n);
            if (s == NULL) {
                PyErr_Clear();
                candidate = 1; /* lone surrogates: let the Python checks see it */
            } else if (!PyUnicode_IS_ASCII(message) && unicode_surprise(message, cards)) {
                candidate = 1;
            }
        }
        if (!candidate) candidate = any_candidate(&needles, s, n, cards);
        if (candidate) {
            PyObject *index = PyLong_FromSsize_t(i);
            if (index == NULL || PyList_Append(result, index) < 0) {
                Py_XDECREF(index);
                Py_DECREF(result);
                return NULL;
            }
            Py_DECREF(index);
        }
    }
    return result;
}

/* ---- batch_facts ------------------------------------------------------------------------ */

/* batch_facts(records, stderr) -> (timestamps, oldest, newest, stderr lines, stdout bytes,
 * stderr bytes, flagged), what sources/batch_facts.py computes in several passes: every
 * record's timestamp in order, their least and greatest, the lines and `size` bytes of the
 * records whose stream equals `stderr` and the bytes of the others, and whether any record has
 * flags. None for an empty list or a record that is not a tuple of N_FIELDS with int timestamp
 * and size within 64 bits and a tuple of flags: the Python code answers then. */
static PyObject *batch_facts(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 2 || !PyList_Check(args[0]) || !PyUnicode_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "batch_facts(records, stderr)");
        return NULL;
    }
    PyObject *records = args[0], *stderr_name = args[1];
    Py_ssize_t count = PyList_GET_SIZE(records);
    if (count == 0) Py_RETURN_NONE;
    PyObject *timestamps = PyList_New(count);
    if (timestamps == NULL) return NULL;
    long long oldest = 0, newest = 0, stderr_lines = 0, stdout_bytes = 0, stderr_bytes = 0;
    int flagged = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *record = PyList_GET_ITEM(records, i);
        if (!PyTuple_Check(record) || PyTuple_GET_SIZE(record) != N_FIELDS) goto python;
        PyObject *ts_obj = PyTuple_GET_ITEM(record, F_TIMESTAMP_NS), *size_obj = PyTuple_GET_ITEM(record, F_SIZE);
        PyObject *stream = PyTuple_GET_ITEM(record, F_STREAM), *flags = PyTuple_GET_ITEM(record, F_FLAGS);
        if (!PyLong_CheckExact(ts_obj) || !PyLong_CheckExact(size_obj) || !PyTuple_Check(flags))
            goto python;
        int overflow;
        long long ts = PyLong_AsLongLongAndOverflow(ts_obj, &overflow);
        if (overflow) goto python;
        long long size = PyLong_AsLongLongAndOverflow(size_obj, &overflow);
        if (overflow || size < 0 || size > (1LL << 40)) goto python;
        if (i == 0 || ts < oldest) oldest = ts;
        if (i == 0 || ts > newest) newest = ts;
        int is_stderr;
        if (stream == stderr_name) {
            is_stderr = 1;
        } else if (PyUnicode_Check(stream)) {
            is_stderr = PyUnicode_Compare(stream, stderr_name) == 0;
        } else {
            goto python; /* not a str: Python's == decides */
        }
        if (is_stderr) {
            stderr_lines++;
            stderr_bytes += size;
        } else {
            stdout_bytes += size;
        }
        if (PyTuple_GET_SIZE(flags)) flagged = 1;
        Py_INCREF(ts_obj);
        PyList_SET_ITEM(timestamps, i, ts_obj);
    }
    return Py_BuildValue("(NLLLLLO)", timestamps, oldest, newest, stderr_lines, stdout_bytes,
                         stderr_bytes, flagged ? Py_True : Py_False);
python:
    Py_DECREF(timestamps); /* items not yet set are NULL: list dealloc skips them */
    Py_RETURN_NONE;
}

/* ---- module ----------------------------------------------------------------------------- */

static PyMethodDef methods[] = {
    {"scan_frames", (PyCFunction)(void (*)(void))scan_frames, METH_FASTCALL, NULL},
    {"scan_jsonfile", (PyCFunction)(void (*)(void))scan_jsonfile, METH_FASTCALL, NULL},
    {"scan_cri", (PyCFunction)(void (*)(void))scan_cri, METH_FASTCALL, NULL},
    {"encode_joined", (PyCFunction)(void (*)(void))encode_joined, METH_FASTCALL, NULL},
    {"redaction_candidates", (PyCFunction)(void (*)(void))redaction_candidates, METH_FASTCALL, NULL},
    {"batch_facts", (PyCFunction)(void (*)(void))batch_facts, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "shipper._native", "The shipper's per-line hot path in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    PyObject *fields = PyTuple_New(N_FIELDS);
    if (fields == NULL) goto fail;
    for (int i = 0; i < N_FIELDS; i++) {
        PyObject *name = PyUnicode_FromString(RECORD_FIELDS[i]);
        if (name == NULL) {
            Py_DECREF(fields);
            goto fail;
        }
        PyTuple_SET_ITEM(fields, i, name);
    }
    int rv = PyModule_AddObjectRef(m, "RECORD_FIELDS", fields);
    Py_DECREF(fields);
    if (rv < 0 || PyModule_AddIntConstant(m, "LAYOUT_VERSION", LAYOUT_VERSION) < 0) goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
